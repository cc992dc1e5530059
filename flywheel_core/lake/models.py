"""The model registry in DuckLake: what was trained on what, so a round can be reproduced.

A row's `params` carries the training config, the Lance table versions read and the W&B run id;
`training_snapshot_id` is the DuckLake snapshot the labels were at. The registry name of a round's
model is `pv-seg-<date>`; rerunning a round with identical inputs replaces its row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from flywheel_core.lake.transaction import transaction


def registry_name(day: str) -> str:
    return f"pv-seg-{day}"


def register_model(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
    """Insert (or replace, same model_id) one model row in one transaction."""
    values = {
        **row,
        "params": json.dumps(row.get("params", {}), sort_keys=True, default=str),
        "metrics": json.dumps(row.get("metrics", {}), sort_keys=True, default=str),
        "created_at": row.get("created_at") or datetime.now(UTC).replace(tzinfo=None),
    }
    cols = [
        "model_id",
        "name",
        "round",
        "architecture",
        "parent_model_id",
        "checkpoint_uri",
        "training_snapshot_id",
        "training_label_count",
        "params",
        "metrics",
        "status",
        "created_at",
    ]
    with transaction(con):
        con.execute("DELETE FROM models WHERE model_id = ?", [values["model_id"]])
        con.execute(
            f"INSERT INTO models ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            [values.get(c) for c in cols],
        )


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["params"] = json.loads(row["params"] or "{}")
    row["metrics"] = json.loads(row["metrics"] or "{}")
    return row


def latest_model(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any] | None:
    cur = con.execute(
        "SELECT * FROM models WHERE name = ? AND status = 'ready' ORDER BY created_at DESC LIMIT 1",
        [name],
    )
    rec = cur.fetchone()
    if rec is None:
        return None
    return _decode(dict(zip([d[0] for d in cur.description], rec, strict=True)))


def get_model(con: duckdb.DuckDBPyConnection, model_id: str) -> dict[str, Any] | None:
    cur = con.execute("SELECT * FROM models WHERE model_id = ?", [model_id])
    rec = cur.fetchone()
    return _decode(dict(zip([d[0] for d in cur.description], rec, strict=True))) if rec else None


def previous_model(con: duckdb.DuckDBPyConnection, day: str) -> dict[str, Any] | None:
    """The newest ready round model of the latest date before `day` (what a round fine-tunes)."""
    cur = con.execute(
        "SELECT * FROM models WHERE name LIKE 'pv-seg-%' AND name < ? AND status = 'ready' "
        "ORDER BY name DESC, created_at DESC LIMIT 1",
        [registry_name(day)],
    )
    rec = cur.fetchone()
    return _decode(dict(zip([d[0] for d in cur.description], rec, strict=True))) if rec else None
