"""The DuckLake `hard_negatives` table: candidates written per partition and round, and read for
the next round's training data.

A partition and round are written in one transaction that replaces their previous candidates:
rows that did not change are left as they are (a re-run writes nothing and makes no snapshot),
rows that changed are replaced keeping their review status, rows no longer found are deleted.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from flywheel_core.lake.transaction import transaction

__all__ = ["CANDIDATE_COLUMNS", "COLUMNS", "candidates_for_cell", "count_for_date", "record"]

CANDIDATE_COLUMNS = ("candidate_id", "reason", "round", "neighbour_uid", "distance")
COLUMNS = (
    "candidate_id",
    "s2_cell",
    "partition_date",
    "round",
    "model_id",
    "prediction_id",
    "reason",
    "query_uid",
    "neighbour_uid",
    "neighbour_dataset",
    "neighbour_cell",
    "neighbour_date",
    "distance",
    "rank",
    "embedding_model_id",
    "trained",
    "status",
    "run_id",
    "created_at",
)
# A row "changed" when any of these differ; status, run and time are bookkeeping.
_CONTENT = (
    "reason",
    "query_uid",
    "neighbour_dataset",
    "neighbour_cell",
    "neighbour_date",
    "rank",
    "embedding_model_id",
    "trained",
    "model_id",
    "prediction_id",
)


class _NothingToWrite(Exception):
    """Raised inside the transaction to end it with a ROLLBACK: a no-op makes no snapshot."""


def candidates_for_cell(
    con: duckdb.DuckDBPyConnection, cell: str, before: dt.date, dataset: str = "vhr_chips"
) -> list[dict[str, Any]]:
    """Candidates recorded by rounds dated before `before` whose neighbour chip lies in `cell`
    (a reviewer's `dismissed` ones left out), nearest first."""
    cur = con.execute(
        f"SELECT {', '.join(CANDIDATE_COLUMNS)} FROM hard_negatives "
        "WHERE neighbour_cell = ? AND partition_date < ? AND neighbour_dataset = ? "
        "AND status <> 'dismissed' ORDER BY distance, candidate_id",
        [cell, before, dataset],
    )
    return [dict(zip(CANDIDATE_COLUMNS, r, strict=True)) for r in cur.fetchall()]


def count_for_date(con: duckdb.DuckDBPyConnection, day: dt.date) -> int:
    """Candidates recorded for partitions of `day` (any cell, any round)."""
    row = con.execute("SELECT count(*) FROM hard_negatives WHERE partition_date = ?", [day])
    return int((row.fetchone() or (0,))[0])


def _changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    if any(old[c] != new[c] for c in _CONTENT):
        return True
    return abs(float(old["distance"] or 0.0) - float(new["distance"] or 0.0)) > 1e-6


def _stored(con: duckdb.DuckDBPyConnection, key: list[Any]) -> dict[str, dict[str, Any]]:
    cur = con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM hard_negatives "
        "WHERE s2_cell = ? AND partition_date = ? AND round = ?",
        key,
    )
    names = [d[0] for d in cur.description]
    return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def _delete(con: duckdb.DuckDBPyConnection, key: list[Any], ids: list[str]) -> None:
    view = f"_flywheel_hn_del_{uuid.uuid4().hex}"
    con.register(view, pa.table({"id": pa.array(ids, pa.string())}))
    try:
        con.execute(
            "DELETE FROM hard_negatives WHERE s2_cell = ? AND partition_date = ? "
            f"AND round = ? AND candidate_id IN (SELECT id FROM {view})",
            key,
        )
    finally:
        con.unregister(view)


def _insert(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    con.executemany(
        f"INSERT INTO hard_negatives ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in COLUMNS)})",
        [[r[c] for c in COLUMNS] for r in rows],
    )


def record(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[dict[str, Any]],
    *,
    cell: str,
    date: dt.date,
    round: int,  # the column's name (shadows the builtin here only)
) -> tuple[int, int, int]:
    """Make the partition+round's candidates `rows`, in one transaction: (inserted, deleted,
    unchanged). Nothing changed means nothing written (no new snapshot)."""
    new = {r["candidate_id"]: r for r in rows}
    key = [cell, date, int(round)]
    try:
        with transaction(con):
            old = _stored(con, key)
            replaced = [i for i in old.keys() & new.keys() if _changed(old[i], new[i])]
            delete = sorted((old.keys() - new.keys()) | set(replaced))
            insert = [dict(new[i]) for i in sorted((new.keys() - old.keys()) | set(replaced))]
            for r in insert:  # a reviewed candidate keeps its review across a re-run
                if r["candidate_id"] in old:
                    r["status"] = old[r["candidate_id"]]["status"]
            if not delete and not insert:
                raise _NothingToWrite
            if delete:
                _delete(con, key, delete)
            if insert:
                _insert(con, insert)
    except _NothingToWrite:
        return 0, 0, len(old)
    unchanged = len(old.keys() & new.keys()) - len(replaced)
    return len(insert), len(delete), unchanged
