"""One CLI error handler: a FlywheelError is one line on stderr, the traceback only with --debug.

The unreachable stores are real: a TCP port that was bound and closed again, used as the
PostgreSQL catalog's port and as the S3 endpoint, so DuckDB, libpq and LanceDB's object store
meet a real "connection refused". Each command runs as its own `flywheel` process, the way a user
runs it, with a marker password and secret key that must never be printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from flywheel_cli import main as cli_main
from flywheel_core.errors import FlywheelError, StoreUnreachableError

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-MARKER-7c1f"
SECRET = "sk-MARKER-93ab"


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _flywheel(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    script = "from flywheel_cli.main import cli; cli()"
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=180,
    )


def _env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "FLYWHEEL_DATA_DIR": str(tmp_path / "data"),
        "PGPASSWORD": PASSWORD,
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "FLYWHEEL_S3_ENDPOINT": f"127.0.0.1:{port}",
        "FLYWHEEL_S3_USE_SSL": "false",
        "PYTHONPATH": str(ROOT),
        "FLYWHEEL_DEBUG": "",
        **extra,
    }


def _cases(port: int) -> dict[str, tuple[list[str], dict[str, str], str]]:
    catalog = f"postgres:dbname=lake host=127.0.0.1 port={port} user=flywheel"
    return {
        "cells": (
            ["cells", "add", "--from-labels"],
            {"FLYWHEEL_LAKE_CATALOG": catalog},
            f"could not attach DuckLake postgres catalog dbname=lake host=127.0.0.1 port={port}",
        ),
        "search": (
            ["search", "--point", "11.58", "48.14", "--no-sheet"],
            {"FLYWHEEL_LANCEDB_URI": "s3://flywheel/lancedb"},
            "could not reach the LanceDB store s3://flywheel/lancedb",
        ),
        "embeddings": (
            ["embeddings", "qa"],
            {
                "FLYWHEEL_LANCEDB_URI": "s3://flywheel/lancedb",
                "FLYWHEEL_OBJECT_STORE": "s3://flywheel/objects",
            },
            "could not reach the LanceDB store s3://flywheel/lancedb",
        ),
    }


@pytest.mark.parametrize("case", ["cells", "search", "embeddings"])
def test_unreachable_store_prints_one_line(case, tmp_path, closed_port):
    args, extra, expected = _cases(closed_port)[case]
    env = _env(tmp_path, closed_port, **extra)
    out = _flywheel(args, env, tmp_path)
    assert out.returncode == cli_main.EXIT_ERROR, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    assert errors[0].startswith(f"error: {expected}"), errors[0]
    assert errors[0].endswith("connection refused"), errors[0]
    # Nothing but that line (INFO chatter of the libraries is quiet unless -v).
    assert [line for line in out.stderr.splitlines() if line.strip()] == errors, out.stderr
    for secret in (PASSWORD, SECRET):
        assert secret not in out.stderr + out.stdout

    debug = _flywheel(["--debug", *args], env, tmp_path)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
    assert "StoreUnreachableError" in debug.stderr or "LakeUnreachableError" in debug.stderr
    for secret in (PASSWORD, SECRET):
        assert secret not in debug.stderr + debug.stdout


def _runner_cli(exc: BaseException) -> click.Group:
    """The real `flywheel` group with one extra command raising `exc`."""

    @click.command("boom")
    def boom() -> None:
        raise exc

    cli_main.COMMANDS.setdefault("boom", ("flywheel_tests.cli.test_errors:BOOM", "test"))
    globals()["BOOM"] = boom
    return cli_main.cli


@pytest.fixture
def runner_cli():
    yield _runner_cli
    cli_main.COMMANDS.pop("boom", None)
    globals().pop("BOOM", None)


def test_flywheel_error_is_one_line_and_debug_shows_it(runner_cli, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_DEBUG", raising=False)
    cli = runner_cli(FlywheelError("the thing is wrong:\n  do this instead"))
    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == cli_main.EXIT_ERROR
    assert result.output == "error: the thing is wrong: do this instead\n"
    debug = CliRunner().invoke(cli, ["--debug", "boom"])
    assert isinstance(debug.exception, FlywheelError)  # propagates: the traceback is printed
    monkeypatch.setenv("FLYWHEEL_DEBUG", "1")
    assert isinstance(CliRunner().invoke(cli, ["boom"]).exception, FlywheelError)


def test_unconverted_connection_failure_hides_the_driver_message(runner_cli, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_DEBUG", raising=False)
    leaky = OSError(f"tcp connect error: Connection refused at http://u:{SECRET}@10.0.0.1:9000/")
    result = CliRunner().invoke(runner_cli(leaky), ["boom"])
    assert result.exit_code == cli_main.EXIT_ERROR
    assert result.output.startswith("error: could not reach a store or service")
    assert result.output.count("\n") == 1
    assert SECRET not in result.output


def test_a_bug_keeps_its_traceback(runner_cli):
    result = CliRunner().invoke(runner_cli(KeyError("bug")), ["boom"])
    assert isinstance(result.exception, KeyError)


def test_store_unreachable_is_a_connection_error():
    assert issubclass(StoreUnreachableError, ConnectionError)
    assert issubclass(StoreUnreachableError, FlywheelError)
