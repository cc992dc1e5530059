"""A data/ folder copied elsewhere opens there: the file catalog is re-pointed to its new place.

DuckLake stores the absolute data path a catalog was created with and refuses another one
("DATA_PATH parameter ... does not match"), so before this every run on a moved data/ failed.
The lake here is real: a catalog file and Parquet data files (inlining off), copied with
`shutil.copytree`, the original deleted, the copy opened through `open_lake`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import duckdb
import pytest

from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import LakeAttachError, lake_connection
from flywheel_core.lake.extensions import load_extension

CATALOGS = {"duckdb": "catalog.ducklake", "sqlite": "catalog.sqlite"}


def _config(root: Path, kind: str) -> LakeConfig:
    return LakeConfig(
        catalog=f"{kind}:{root / 'data' / 'lake' / CATALOGS[kind]}",
        data_path=str(root / "data" / "lake" / "files"),
    )


def _build(root: Path, kind: str) -> LakeConfig:
    config = _config(root, kind)
    with lake_connection(config) as con:
        con.execute("CREATE TABLE readings (id INTEGER, note VARCHAR)")
        con.execute("INSERT INTO readings VALUES (1, 'one'), (2, 'two')")
        con.execute("INSERT INTO readings VALUES (3, 'three')")
    assert list((root / "data" / "lake" / "files").rglob("*.parquet"))  # real data files
    return config


def _stored_path(config: LakeConfig) -> str:
    """The data path written in the catalog, read with plain DuckDB (not through DuckLake)."""
    path = config.resolved_catalog_path()
    con = duckdb.connect()
    if config.kind == "sqlite":
        load_extension(con, "sqlite_scanner")
        con.execute(f"ATTACH '{path}' AS meta (TYPE sqlite, READ_ONLY)")
    else:
        con.execute(f"ATTACH '{path}' AS meta (READ_ONLY)")
    value = con.execute(
        "SELECT value FROM meta.ducklake_metadata WHERE key = 'data_path'"
    ).fetchone()
    con.close()
    assert value is not None
    return str(value[0])


@pytest.mark.parametrize("kind", ["duckdb", "sqlite"])
def test_a_copied_data_folder_opens_and_is_self_consistent(tmp_path, kind, caplog):
    _build(tmp_path / "old", kind)
    shutil.copytree(tmp_path / "old" / "data", tmp_path / "new" / "data")
    shutil.rmtree(tmp_path / "old")
    moved = _config(tmp_path / "new", kind)

    with (
        caplog.at_level(logging.INFO, logger="flywheel_core.lake.connection"),
        lake_connection(moved) as con,
    ):
        rows = con.execute("SELECT id, note FROM readings ORDER BY id").fetchall()
        con.execute("INSERT INTO readings VALUES (4, 'four')")
    assert rows == [(1, "one"), (2, "two"), (3, "three")]
    repointed = [r.getMessage() for r in caplog.records if "re-pointed" in r.getMessage()]
    assert len(repointed) == 1
    assert str(tmp_path / "new" / "data" / "lake" / "files") in repointed[0]
    assert _stored_path(moved) == moved.resolved_data_path()

    # Self-consistent: the next open needs no override, and the new write is in the new folder.
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="flywheel_core.lake.connection"),
        lake_connection(moved) as con,
    ):
        assert con.execute("SELECT count(*) FROM readings").fetchone() == (4,)
    assert not [r for r in caplog.records if "re-pointed" in r.getMessage()]
    assert not (tmp_path / "old").exists()


def test_an_empty_data_path_is_refused_not_repointed(tmp_path):
    config = _build(tmp_path / "lake", "duckdb")
    wrong = LakeConfig(catalog=config.catalog, data_path=str(tmp_path / "elsewhere"))
    with pytest.raises(LakeAttachError, match="lacks its files") as caught, lake_connection(wrong):
        pass
    assert "FLYWHEEL_LAKE_DATA_PATH" in str(caught.value)
    assert _stored_path(config) == config.resolved_data_path()  # nothing was rewritten
    with lake_connection(config) as con:  # and the lake still opens where it is
        assert con.execute("SELECT count(*) FROM readings").fetchone() == (3,)


@pytest.mark.postgres
def test_a_postgres_catalog_is_not_repointed(tmp_path, postgres_catalog):
    config = LakeConfig(catalog=postgres_catalog, data_path=str(tmp_path / "files"))
    with lake_connection(config) as con:
        con.execute("CREATE TABLE readings (id INTEGER)")
        con.execute("INSERT INTO readings VALUES (1)")
    other = LakeConfig(catalog=postgres_catalog, data_path=str(tmp_path / "other"))
    with (
        pytest.raises(LakeAttachError, match="not re-pointed automatically"),
        lake_connection(other),
    ):
        pass
