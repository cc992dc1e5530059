"""The SQL of the `raster_datasets` table: reads by id, prefix or filter, and the one-row write.

`flywheel_core.rasters.registry` owns the lifecycle (which status may follow which) and the row's
Python shape; the statements live here, behind the lake package, with the shared transaction
helper, so the read of the current status and the replacing write are one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import duckdb

from flywheel_core.lake.quote import identifier
from flywheel_core.lake.transaction import transaction

__all__ = ["replace_row", "select_rows"]

TABLE = "raster_datasets"


def select_rows(
    con: duckdb.DuckDBPyConnection,
    columns: Sequence[str],
    *,
    dataset_id: str | None = None,
    prefix: str | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> tuple[list[str], list[tuple]]:
    """Column names and rows matching every filter given, oldest first (by created_at, id)."""
    clauses: list[str] = []
    args: list[Any] = []
    if dataset_id is not None:
        clauses.append("dataset_id = ?")
        args.append(dataset_id)
    if prefix is not None:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append("dataset_id LIKE ? ESCAPE '\\'")
        args.append(escaped + "%")
    for column, value in (("status", status), ("kind", kind)):
        if value:
            clauses.append(f"{column} = ?")
            args.append(value)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    order = "ORDER BY dataset_id" if prefix is not None else "ORDER BY created_at, dataset_id"
    cols = ", ".join(identifier(c) for c in columns)
    cur = con.execute(f"SELECT {cols} FROM {TABLE} {where} {order}", args)
    return [d[0] for d in cur.description], cur.fetchall()


def replace_row(
    con: duckdb.DuckDBPyConnection,
    dataset_id: str,
    columns: Sequence[str],
    build: Callable[[str | None, datetime | None], Sequence[Any]],
) -> None:
    """Replace the dataset's row in one transaction.

    `build(current_status, created_at)` sees the row as it is inside the transaction (None,
    None when there is none), may raise to refuse the write (nothing changes), and returns the
    new row's values in `columns` order.
    """
    with transaction(con):
        existing = con.execute(
            f"SELECT status, created_at FROM {TABLE} WHERE dataset_id = ?", [dataset_id]
        ).fetchall()
        current, created = existing[0] if existing else (None, None)
        values = list(build(current, created))
        con.execute(f"DELETE FROM {TABLE} WHERE dataset_id = ?", [dataset_id])
        con.execute(
            f"INSERT INTO {TABLE} ({', '.join(identifier(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            values,
        )
