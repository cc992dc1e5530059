"""Reads of the DuckLake change feed of `labels`, for flywheel_core.flywheel.changes.

Each function returns rows of `CHANGE_COLUMNS` (the first three preceded by a snapshot id for the
change feed) and raises duckdb.Error when the lake cannot answer that way (expired snapshots, no
time travel), so the caller can fall back to the next, coarser read.
"""

from __future__ import annotations

from typing import Any

import duckdb

__all__ = ["CHANGE_COLUMNS", "all_label_rows", "catalog_and_schema", "feed", "time_travel_diff"]

CHANGE_COLUMNS = "s2_level, s2_cells, install_date, created_at, prompt_geometry"


def catalog_and_schema(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    """The attached lake's catalog alias and schema, as `ducklake_table_changes` wants them."""
    row = con.execute("SELECT current_database(), current_schema()").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def feed(con: duckdb.DuckDBPyConnection, start: int, end: int) -> list[tuple[Any, ...]]:
    """(snapshot_id, *CHANGE_COLUMNS) of every `labels` row change in snapshots [start, end]."""
    alias, schema = catalog_and_schema(con)
    return con.execute(
        f"SELECT snapshot_id, {CHANGE_COLUMNS} FROM ducklake_table_changes(?, ?, 'labels', ?, ?)",
        [alias, schema, start, end],
    ).fetchall()


def time_travel_diff(con: duckdb.DuckDBPyConnection, since: int) -> list[tuple[Any, ...]]:
    """CHANGE_COLUMNS of the rows that differ between the table at snapshot `since` and now
    (both sides of a change), compared with status and geometry too."""
    cols = f"{CHANGE_COLUMNS}, status, geometry"
    then = f"labels AT (VERSION => {int(since)})"  # DuckDB takes no parameter here
    rows = con.execute(
        f"(SELECT {cols} FROM labels EXCEPT ALL SELECT {cols} FROM {then}) UNION ALL "
        f"(SELECT {cols} FROM {then} EXCEPT ALL SELECT {cols} FROM labels)"
    ).fetchall()
    return [r[:5] for r in rows]


def all_label_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """CHANGE_COLUMNS of every label: the read of last resort (everything changed)."""
    return con.execute(f"SELECT {CHANGE_COLUMNS} FROM labels").fetchall()
