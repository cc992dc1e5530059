"""Passwords and keys come from the environment and never show up in logs, errors or reprs."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest

from flywheel_core.labels.ingest import import_label_file
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import LakeAttachError, lake_connection, open_lake
from flywheel_core.lake.secrets import scrub
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_tests.fixtures.s3 import FAKE_SECRET
from flywheel_tests.labels.samples import H3_RES, S2_LEVEL, sample_file


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc.args)


@pytest.mark.postgres
def test_postgres_password_never_leaks(
    postgres_server, postgres_catalog: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = postgres_server.password
    caplog.set_level(logging.DEBUG)
    resource = DuckLakeResource(catalog=postgres_catalog, data_path=str(tmp_path / "files"))
    with resource.connect() as con:
        _, result = import_label_file(
            con, sample_file(tmp_path), s2_level=S2_LEVEL, h3_resolution=H3_RES
        )
        assert result.n_inserted == 4
    wrong_port = postgres_catalog.replace(f"port={postgres_server.port}", "port=1")
    assert wrong_port != postgres_catalog
    with pytest.raises(LakeAttachError) as info:
        open_lake(LakeConfig(catalog=wrong_port, data_path=str(tmp_path / "files")))
    message = str(info.value)
    assert "could not attach DuckLake postgres catalog" in message
    assert "port=1" in message  # still says where it tried
    assert any("opening lake postgres catalog" in r.getMessage() for r in caplog.records)
    for text in (
        _log_text(caplog),
        _error_text(info.value),
        repr(resource),
        str(resource),
        repr(resource.config()),
    ):
        assert password not in text


@pytest.mark.postgres
def test_wrong_password_error_is_redacted(
    postgres_server, postgres_catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "not-the-password-42")
    with pytest.raises(LakeAttachError, match="authentication failed") as info:
        open_lake(LakeConfig(catalog=postgres_catalog, data_path=str(tmp_path / "files")))
    text = _error_text(info.value)
    assert "not-the-password-42" not in text
    assert postgres_server.password not in text


def test_s3_secret_stays_out_of_logs_and_secret_listing(
    s3_env: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = LakeConfig(catalog=f"duckdb:{tmp_path / 'cat.ducklake'}", data_path=s3_env)
    with lake_connection(config) as con:
        listing = con.execute("SELECT secret_string FROM duckdb_secrets()").fetchall()
        assert listing and FAKE_SECRET not in str(listing)
    assert FAKE_SECRET not in _log_text(caplog)
    assert FAKE_SECRET not in repr(DuckLakeResource(catalog=config.catalog, data_path=s3_env))


def test_scrub_removes_passwords_and_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "s3cr3t-value")
    text = scrub("at 'host=h password=abc' and s3cr3t-value and PASSWORD='x y'")
    assert "abc" not in text and "s3cr3t-value" not in text and "x y" not in text
