"""Open a DuckLake connection: pinned extensions, secrets from the environment, migrations.

Each call gets its own in-memory DuckDB with the lake attached, so a connection never shares
transaction state with another. A DuckDB-file catalog admits one process at a time, so attaching
waits (with backoff) for a lock held by another run instead of failing straight away.

A catalog that does not answer (closed port, unknown host) raises `LakeUnreachableError`, a
`StoreUnreachableError`, so the CLI prints one line. A file catalog (DuckDB, SQLite) whose data/
folder was moved or copied is re-pointed: DuckLake stores the absolute data path it was created
with, so the new path is attached with OVERRIDE_DATA_PATH and written back into the catalog (see
`_repoint`). A PostgreSQL catalog is shared by many clients and is never re-pointed from one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from flywheel_core.errors import (
    FlywheelError,
    StoreUnreachableError,
    connection_failure,
    unreachable,
)
from flywheel_core.lake.config import LakeConfig, LakeConfigError
from flywheel_core.lake.extensions import load_extension
from flywheel_core.lake.migrations import migrate
from flywheel_core.lake.secrets import create_s3_secret, scrub

__all__ = [
    "LakeAttachError",
    "LakeConfig",
    "LakeConfigError",
    "LakeUnreachableError",
    "lake_connection",
    "open_lake",
]

log = logging.getLogger(__name__)

_ECHO = re.compile(r'Failed to attach DuckLake MetaData "[^"]*" at path \+ "[^"]*"\s*')
_LOCK_MARKERS = ("could not set lock", "conflicting lock", "unique file handle conflict")
_ANSWERED_MARKERS = ("authentication failed", "password", "does not exist", "permission denied")
_PATH_MISMATCH = "does not match existing data path"
_STORED_PATH = re.compile(r'existing data path in the catalog "([^"]*)"')
# Data files checked for under a new data path before the catalog is re-pointed to it.
_PROBE_FILES = 20


class LakeAttachError(FlywheelError, RuntimeError):
    """The lake could not be attached; the message is redacted (see LakeConfig.describe)."""


class LakeUnreachableError(StoreUnreachableError, LakeAttachError):
    """The catalog's server did not answer (a `LakeAttachError` too, for existing callers)."""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _attach_sql(config: LakeConfig, *, override: bool = False) -> str:
    if config.kind == "postgres":
        target = f"postgres:{config.target}"
    else:
        path = config.resolved_catalog_path()
        assert path is not None
        target = f"sqlite:{path}" if config.kind == "sqlite" else str(path)
    return (
        f"ATTACH {_quote('ducklake:' + target)} AS {config.alias} "
        f"(DATA_PATH {_quote(config.resolved_data_path())}, "
        f"DATA_INLINING_ROW_LIMIT {int(config.inline_row_limit)}"
        + (", OVERRIDE_DATA_PATH true)" if override else ")")
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


def _unreachable(exc: duckdb.Error) -> bool:
    """A catalog server that did not answer; a refused login or a missing database did answer."""
    text = str(exc).lower()
    return connection_failure(exc) and not any(m in text for m in _ANSWERED_MARKERS)


def _reason(exc: duckdb.Error, config: LakeConfig) -> str:
    """DuckDB's attach error without the echoed connection string (and any secret in it)."""
    text = str(exc).replace(config.target, "<catalog>")
    text = _ECHO.sub("", text).replace(' at "<catalog>"', "")
    return " ".join(scrub(text).split())


def _attach(con: duckdb.DuckDBPyConnection, config: LakeConfig, lock_timeout_s: float) -> None:
    try:
        _attach_waiting(con, config, _attach_sql(config), lock_timeout_s)
    except _DataPathMoved as moved:
        _attach_waiting(con, config, _attach_sql(config, override=True), lock_timeout_s)
        _repoint(con, config, moved.stored)


class _DataPathMoved(Exception):
    """The file catalog records another data path than the one configured (data/ was moved)."""

    def __init__(self, stored: str) -> None:
        super().__init__(stored)
        self.stored = stored


def _attach_waiting(
    con: duckdb.DuckDBPyConnection, config: LakeConfig, sql: str, lock_timeout_s: float
) -> None:
    """Run the ATTACH, waiting out another process's lock; failures become LakeAttachError."""
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
            if _PATH_MISMATCH in str(exc) and "OVERRIDE_DATA_PATH" not in sql:
                _data_path_mismatch(exc, config)
            if _unreachable(exc) and not locked:
                gone = unreachable("the catalog", exc)  # no driver text: it may echo secrets
                raise LakeUnreachableError(
                    f"could not attach DuckLake {config.describe()}: {gone}"
                ) from None
            if locked:
                reason = f"still locked after {lock_timeout_s:.0f} s: {reason}"
            raise LakeAttachError(
                f"could not attach DuckLake {config.describe()}: {reason}"
            ) from None
        if waited:
            log.info("lake %s lock acquired", config.describe())
        return


def _data_path_mismatch(exc: duckdb.Error, config: LakeConfig) -> None:
    """Raise `_DataPathMoved` for a file catalog, a LakeAttachError saying what to do otherwise."""
    found = _STORED_PATH.search(str(exc))
    stored = found.group(1) if found else "?"
    if config.kind != "postgres" and not config.data_on_s3 and "://" not in stored:
        raise _DataPathMoved(stored)
    raise LakeAttachError(
        f"could not attach DuckLake {config.describe()}: the catalog records its data at "
        f"{scrub(stored)}, not at {config.resolved_data_path()}: set FLYWHEEL_LAKE_DATA_PATH to "
        "the recorded path (a shared PostgreSQL or object-store lake is not re-pointed "
        "automatically)"
    ) from None


def _probe_paths(con: duckdb.DuckDBPyConnection, meta: str, data_path: str) -> list[Path]:
    """Where a few live data files of the catalog should be under `data_path`."""
    rows = con.execute(
        f"""
        SELECT s.path, s.path_is_relative, t.path, t.path_is_relative, f.path, f.path_is_relative
        FROM {meta}.ducklake_data_file f
        JOIN {meta}.ducklake_table t USING (table_id)
        JOIN {meta}.ducklake_schema s USING (schema_id)
        WHERE f.end_snapshot IS NULL AND t.end_snapshot IS NULL AND s.end_snapshot IS NULL
        LIMIT {_PROBE_FILES}
        """
    ).fetchall()
    out = []
    for s_path, s_rel, t_path, t_rel, f_path, f_rel in rows:
        # Each level is relative to the one above it when its flag says so (DuckLake's rule).
        schema_dir = data_path + (s_path or "") if s_rel else (s_path or "")
        table_dir = schema_dir + (t_path or "") if t_rel else (t_path or "")
        out.append(Path(table_dir + f_path if f_rel else f_path))
    return out


def _repoint(con: duckdb.DuckDBPyConnection, config: LakeConfig, stored: str) -> None:
    """Make the moved lake self-consistent: the catalog's data path becomes the configured one.

    Only when the files are really there: a data path pointing at an empty or unrelated folder
    would make every table read fail, so that is refused (and nothing is rewritten).
    """
    new_path = config.resolved_data_path()
    meta = f"__ducklake_metadata_{config.alias}"
    missing = [p for p in _probe_paths(con, meta, new_path) if not p.exists()]
    if missing:
        raise LakeAttachError(
            f"could not attach DuckLake {config.describe()}: the catalog records its data at "
            f"{stored}, and {new_path} lacks its files (e.g. {missing[0]}): point "
            "FLYWHEEL_LAKE_DATA_PATH at the folder that holds the lake's Parquet files"
        )
    con.execute(
        f"UPDATE {meta}.ducklake_metadata SET value = ? WHERE key = 'data_path' AND scope IS NULL",
        [new_path],
    )
    log.info("lake data moved: catalog data path re-pointed from %s to %s", stored, new_path)


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
