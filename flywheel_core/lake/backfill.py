"""The DuckLake side of the backfill: the labels it decides against, and its one write.

flywheel_core.flywheel.backfill decides (against flywheel_core.lake.label_boxes); this module
writes the accepted labels and every decision (`backfill_log`) in one transaction, so one
snapshot holds all of a partition's backfill or none of it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from flywheel_core.labels.schema import LABEL_COLUMNS, LABELS_SCHEMA
from flywheel_core.lake.quote import identifier
from flywheel_core.lake.transaction import transaction

__all__ = [
    "LOG_COLUMNS",
    "existing_ids",
    "model_decisions",
    "write_backfill",
]

LOG_COLUMNS = (
    "log_id",
    "asset",
    "s2_cell",
    "partition_date",
    "round",
    "model_id",
    "decision",
    "reason",
    "metrics",
    "run_id",
    "snapshot_id",
    "created_at",
)


def existing_ids(
    con: duckdb.DuckDBPyConnection, table: str, column: str, ids: Sequence[str]
) -> set[str]:
    """Which of `ids` are already in `table.column` (a semi join on a registered Arrow view)."""
    if not ids:
        return set()
    view = f"_flywheel_ids_{uuid.uuid4().hex}"
    con.register(view, pa.table({"id": pa.array(list(ids), pa.string())}))
    col = identifier(column)
    try:
        rows = con.execute(
            f"SELECT t.{col} FROM {identifier(table)} t SEMI JOIN {view} i ON t.{col} = i.id"
        ).fetchall()
    finally:
        con.unregister(view)
    return {r[0] for r in rows}


def _insert_labels(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    table = pa.Table.from_pylist(list(rows), schema=LABELS_SCHEMA)
    view = f"_flywheel_backfill_labels_{uuid.uuid4().hex}"
    con.register(view, table)
    try:
        con.execute(
            f"INSERT INTO labels ({', '.join(LABEL_COLUMNS)}) "
            f"SELECT {', '.join(LABEL_COLUMNS)} FROM {view}"
        )
    finally:
        con.unregister(view)


def _insert_log(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    con.executemany(
        f"INSERT INTO backfill_log ({', '.join(LOG_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in LOG_COLUMNS)})",
        [[r[c] for c in LOG_COLUMNS] for r in rows],
    )


def write_backfill(
    con: duckdb.DuckDBPyConnection,
    labels: Sequence[dict[str, Any]],
    logs: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], int]:
    """(label rows inserted, log rows inserted), in one transaction: ids already in the lake (a
    re-run, or a retracted label) are never inserted again."""
    with transaction(con):
        present = existing_ids(con, "labels", "label_id", [r["label_id"] for r in labels])
        new_labels = [r for r in labels if r["label_id"] not in present]
        _insert_labels(con, new_labels)
        logged = existing_ids(con, "backfill_log", "log_id", [r["log_id"] for r in logs])
        new_logs = [r for r in logs if r["log_id"] not in logged]
        _insert_log(con, new_logs)
    return new_labels, len(new_logs)


def model_decisions(con: duckdb.DuckDBPyConnection, model_id: str) -> tuple[int, dict[str, int]]:
    """(accepted, rejections by rule) the model's backfills logged."""
    rows = con.execute(
        "SELECT decision, metrics FROM backfill_log WHERE model_id = ?", [model_id]
    ).fetchall()
    accepted = sum(1 for d, _ in rows if d == "accepted")
    rejected = Counter(json.loads(m or "{}").get("rule") for d, m in rows if d != "accepted")
    return accepted, {str(k): v for k, v in sorted(rejected.items(), key=lambda kv: str(kv[0]))}
