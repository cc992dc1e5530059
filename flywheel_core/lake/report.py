"""Small reads of the labels for reports, the round loop and the CLI."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

__all__ = ["active_label_cells", "active_label_count", "active_labels_as_of"]

_COLUMNS = ("label_id", "source_kind", "geometry")


def active_labels_as_of(con: duckdb.DuckDBPyConnection, day: dt.date) -> list[dict[str, Any]]:
    """Active labels installed on or before `day` (undated ones count): label_id, source_kind,
    geometry (WKB)."""
    cur = con.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM labels WHERE status = 'active' "
        "AND (install_date IS NULL OR install_date <= ?)",
        [day],
    )
    return [dict(zip(_COLUMNS, r, strict=True)) for r in cur.fetchall()]


def active_label_count(con: duckdb.DuckDBPyConnection) -> int:
    """Active labels, any source or date: what a model's registry row says it trained on."""
    row = con.execute("SELECT count(*) FROM labels WHERE status = 'active'").fetchone()
    return int((row or (0,))[0])


def active_label_cells(con: duckdb.DuckDBPyConnection, s2_level: int) -> list[str]:
    """The S2 cells (at `s2_level`) the active labels indexed at that level cover, sorted."""
    rows = con.execute(
        "SELECT DISTINCT unnest(s2_cells) FROM labels WHERE status = 'active' AND s2_level = ?",
        [s2_level],
    ).fetchall()
    return sorted(r[0] for r in rows)
