"""Reads of the DuckLake `hard_negatives` table for the next round's training data."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

CANDIDATE_COLUMNS = ("candidate_id", "reason", "round", "neighbour_uid", "distance")


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
