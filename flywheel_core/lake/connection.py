"""Open a DuckLake connection: pinned extensions, secrets from the environment, migrations.

Each call gets its own in-memory DuckDB with the lake attached, so a connection never shares
transaction state with another. A DuckDB-file catalog admits one process at a time, so attaching
waits (with backoff) for a lock held by another run instead of failing straight away.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from flywheel_core.lake.config import LakeConfig, LakeConfigError
from flywheel_core.lake.extensions import load_extension
from flywheel_core.lake.migrations import migrate
from flywheel_core.lake.secrets import create_s3_secret, scrub

__all__ = ["LakeAttachError", "LakeConfig", "LakeConfigError", "lake_connection", "open_lake"]

log = logging.getLogger(__name__)

_ECHO = re.compile(r'Failed to attach DuckLake MetaData "[^"]*" at path \+ "[^"]*"\s*')
_LOCK_MARKERS = ("could not set lock", "conflicting lock", "unique file handle conflict")


class LakeAttachError(RuntimeError):
    """The lake could not be attached; the message is redacted (see LakeConfig.describe)."""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _attach_sql(config: LakeConfig) -> str:
    if config.kind == "postgres":
        target = f"postgres:{config.target}"
    else:
        path = config.resolved_catalog_path()
        assert path is not None
        target = f"sqlite:{path}" if config.kind == "sqlite" else str(path)
    return (
        f"ATTACH {_quote('ducklake:' + target)} AS {config.alias} "
        f"(DATA_PATH {_quote(config.resolved_data_path())}, "
        f"DATA_INLINING_ROW_LIMIT {int(config.inline_row_limit)})"
    )


def _prepare(con: duckdb.DuckDBPyConnection, config: LakeConfig) -> None:
    load_extension(con, "ducklake")
    if config.kind == "sqlite":
        load_extension(con, "sqlite_scanner")
    elif config.kind == "postgres":
        load_extension(con, "postgres_scanner")
    if config.data_on_s3:
        load_extension(con, "httpfs")
        create_s3_secret(con)
    catalog_path = config.resolved_catalog_path()
    if catalog_path is not None:
        catalog_path.parent.mkdir(parents=True, exist_ok=True)
    if not config.data_on_s3 and "://" not in config.data_path:
        Path(config.resolved_data_path()).mkdir(parents=True, exist_ok=True)


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    message = str(exc).lower()
    return any(marker in message for marker in _LOCK_MARKERS)


def _reason(exc: duckdb.Error, config: LakeConfig) -> str:
    """DuckDB's attach error without the echoed connection string (and any secret in it)."""
    text = str(exc).replace(config.target, "<catalog>")
    text = _ECHO.sub("", text).replace(' at "<catalog>"', "")
    return " ".join(scrub(text).split())


def _attach(con: duckdb.DuckDBPyConnection, config: LakeConfig, lock_timeout_s: float) -> None:
    sql = _attach_sql(config)
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.1
    waited = False
    while True:
        try:
            con.execute(sql)
        except duckdb.Error as exc:
            locked = _is_lock_conflict(exc)
            if locked and time.monotonic() + delay < deadline:
                if not waited:
                    log.info("lake %s is locked by another process; waiting", config.describe())
                    waited = True
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            reason = _reason(exc, config)
            if locked:
                reason = f"still locked after {lock_timeout_s:.0f} s: {reason}"
            raise LakeAttachError(
                f"could not attach DuckLake {config.describe()}: {reason}"
            ) from None
        if waited:
            log.info("lake %s lock acquired", config.describe())
        return


def open_lake(config: LakeConfig, *, lock_timeout_s: float = 60.0) -> duckdb.DuckDBPyConnection:
    """A new DuckDB connection with the lake attached as `config.alias`, in use and migrated."""
    log.debug("opening lake %s", config.describe())
    con = duckdb.connect()
    try:
        _prepare(con, config)
        _attach(con, config, lock_timeout_s)
        con.execute(f"USE {config.alias}")
        migrate(con)
    except BaseException:
        con.close()
        raise
    return con


@contextlib.contextmanager
def lake_connection(
    config: LakeConfig, *, lock_timeout_s: float = 60.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """`open_lake` that closes the connection (releasing a DuckDB catalog's file lock) on exit."""
    con = open_lake(config, lock_timeout_s=lock_timeout_s)
    try:
        yield con
    finally:
        con.close()
