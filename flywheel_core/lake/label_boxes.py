"""Reads of the active labels whose bounding box meets a lon/lat box, date-line aware.

The box is (west, south, east, north) with west > east when it crosses ±180
(flywheel_core.lake.spatial_filters), and a stored label bbox may cross it too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb

from flywheel_core.lake.spatial_filters import bbox_meets_sql

__all__ = ["active_label_prompts_in_box", "active_labels_in_box"]


def active_labels_in_box(
    con: duckdb.DuckDBPyConnection, box: Sequence[float]
) -> list[tuple[str, bytes]]:
    """(label_id, geometry WKB) of active labels, any source or date, meeting `box`."""
    return con.execute(
        f"SELECT label_id, geometry FROM labels WHERE status = 'active' AND {bbox_meets_sql(box)} "
        "ORDER BY label_id"
    ).fetchall()


def active_label_prompts_in_box(
    con: duckdb.DuckDBPyConnection, box: Sequence[float]
) -> list[tuple[bytes, dt.date | None]]:
    """(prompt_geometry WKB, install_date) of active labels meeting `box`."""
    return con.execute(
        "SELECT prompt_geometry, install_date FROM labels WHERE status = 'active' "
        f"AND {bbox_meets_sql(box)}"
    ).fetchall()
