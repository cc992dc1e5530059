from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from flywheel_core.lake.config import LakeConfig, LakeConfigError
from flywheel_core.lake.connection import LakeAttachError, lake_connection, open_lake
from flywheel_core.lake.extensions import PACKAGES, extension_path
from flywheel_resources.ducklake import DuckLakeResource


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_every_pinned_extension_has_a_build_for_this_duckdb(name: str) -> None:
    path = extension_path(name)
    assert path.is_file()
    assert path.parent.name == f"v{duckdb.__version__}"


@pytest.mark.parametrize(
    "catalog",
    ["lake.ducklake", "mysql:db", "duckdb:", "postgres:dbname=x password=hunter2",
     "postgres:dbname=x PassWord = hunter2", "postgres:postgresql://u:hunter2@h/db"],
)  # fmt: skip
def test_bad_catalogs_are_refused_without_echoing_them(catalog: str) -> None:
    with pytest.raises(LakeConfigError) as info:
        LakeConfig(catalog=catalog, data_path="files")
    assert "hunter2" not in str(info.value)


def test_describe_keeps_only_non_secret_parts() -> None:
    config = LakeConfig(
        catalog="postgres:dbname=flywheel host=db.internal port=5433 user=flywheel sslmode=require",
        data_path="s3://bucket/lake/",
    )
    assert config.kind == "postgres"
    assert config.describe() == (
        "postgres catalog dbname=flywheel host=db.internal port=5433 (data s3://bucket/lake/)"
    )
    assert "user=" not in repr(config)
    assert config.resolved_data_path() == "s3://bucket/lake/"
    local = LakeConfig(catalog="duckdb:data/lake/c.ducklake", data_path="data/lake/files")
    assert local.describe() == "duckdb catalog data/lake/c.ducklake (data data/lake/files)"
    assert Path(local.resolved_data_path()).is_absolute()
    assert local.resolved_data_path().endswith("/")


def test_open_lake_creates_folders_and_uses_the_alias(tmp_path: Path) -> None:
    config = LakeConfig(
        catalog=f"duckdb:{tmp_path / 'a' / 'b' / 'cat.ducklake'}",
        data_path=str(tmp_path / "files"),
        alias="mylake",
    )
    with lake_connection(config) as con:
        assert con.execute("SELECT current_database()").fetchone()[0] == "mylake"
        assert con.execute("SELECT count(*) FROM mylake.labels").fetchone()[0] == 0
    assert (tmp_path / "a" / "b" / "cat.ducklake").is_file()
    assert (tmp_path / "files").is_dir()
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")  # closed on exit


def test_resource_connects_with_its_config(tmp_path: Path) -> None:
    resource = DuckLakeResource(
        catalog=f"sqlite:{tmp_path / 'cat.sqlite'}", data_path=str(tmp_path / "files")
    )
    assert resource.config().kind == "sqlite"
    assert resource.config().inline_row_limit == 0
    with resource.connect() as con:
        assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == 0


def test_resource_defaults_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_LAKE_CATALOG", "sqlite:/somewhere/cat.sqlite")
    monkeypatch.setenv("FLYWHEEL_LAKE_DATA_PATH", "s3://bucket/prefix/")
    resource = DuckLakeResource()
    assert (resource.catalog, resource.data_path) == (
        "sqlite:/somewhere/cat.sqlite",
        "s3://bucket/prefix/",
    )


def test_changed_data_path_is_a_clear_error(tmp_path: Path) -> None:
    catalog = f"duckdb:{tmp_path / 'cat.ducklake'}"
    with lake_connection(LakeConfig(catalog=catalog, data_path=str(tmp_path / "one"))) as con:
        # A lake with data files: a data path without them is an error, not a moved data/
        # folder (that case is re-pointed, see test_moved_data.py).
        con.execute("CREATE TABLE t AS SELECT 1 AS i")
    with pytest.raises(LakeAttachError, match="could not attach DuckLake duckdb catalog"):
        open_lake(LakeConfig(catalog=catalog, data_path=str(tmp_path / "two")))


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from flywheel_core.lake.config import LakeConfig
    from flywheel_core.lake.connection import open_lake
    con = open_lake(LakeConfig(catalog=sys.argv[1], data_path=sys.argv[2]))
    print("ready", flush=True)
    time.sleep(float(sys.argv[3]))
    con.close()
    """
)


def _hold_lock(config: LakeConfig, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, config.catalog, config.data_path, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.slow
def test_waits_for_a_catalog_locked_by_another_process(
    lake: LakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    holder = _hold_lock(lake, 2.0)
    try:
        caplog.set_level(logging.INFO, logger="flywheel_core.lake")
        start = time.monotonic()
        with lake_connection(lake, lock_timeout_s=30) as con:
            assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == 0
        assert time.monotonic() - start >= 0.5
        assert any("locked by another process; waiting" in r.getMessage() for r in caplog.records)
    finally:
        holder.wait(timeout=30)


def test_gives_up_on_a_lock_after_the_timeout(lake: LakeConfig) -> None:
    holder = _hold_lock(lake, 5.0)
    try:
        with pytest.raises(LakeAttachError, match="still locked after"):
            open_lake(lake, lock_timeout_s=0.5)
    finally:
        holder.kill()
        holder.wait(timeout=30)
