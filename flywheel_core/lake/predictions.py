"""Predicted installations in DuckLake, replaced per (model, cell, date) in one transaction."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import duckdb
from shapely import wkb

from flywheel_core.geo.h3index import h3_cell
from flywheel_core.lake.spatial_filters import box_of, centroid_lonlat
from flywheel_core.lake.transaction import transaction

NAMESPACE = uuid.UUID("0f8e4a5c-3c55-4f0b-9d1c-6a2b8e7f4d21")
COLUMNS = (
    "prediction_id",
    "model_id",
    "round",
    "s2_cell",
    "partition_date",
    "chip_id",
    "geometry",
    "score",
    "area_m2",
    "centroid_lon",
    "centroid_lat",
    "bbox_xmin",
    "bbox_ymin",
    "bbox_xmax",
    "bbox_ymax",
    "h3_cell",
    "label_id",
    "metrics",
    "created_at",
)


def prediction_row(
    geometry_wkb: bytes,
    *,
    model_id: str,
    round_no: int,
    cell: str,
    day: date,
    score: float,
    area_m2: float,
    h3_resolution: int,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    geom = wkb.loads(geometry_wkb)
    cx, cy = centroid_lonlat(geom)  # date line aware, as is the bbox (x0 > x1 across ±180)
    x0, y0, x1, y1 = box_of(geom)
    return {
        "prediction_id": str(
            uuid.uuid5(NAMESPACE, f"{model_id}|{cell}|{day}|{geometry_wkb.hex()}")
        ),
        "model_id": model_id,
        "round": round_no,
        "s2_cell": cell,
        "partition_date": day,
        "chip_id": None,
        "geometry": geometry_wkb,
        "score": score,
        "area_m2": area_m2,
        "centroid_lon": cx,
        "centroid_lat": cy,
        "bbox_xmin": x0,
        "bbox_ymin": y0,
        "bbox_xmax": x1,
        "bbox_ymax": y1,
        "h3_cell": h3_cell(cx, cy, h3_resolution),
        "label_id": None,
        "metrics": json.dumps(metrics, sort_keys=True),
        "created_at": datetime.now(UTC).replace(tzinfo=None),
    }


def replace_predictions(
    con: duckdb.DuckDBPyConnection, model_id: str, cell: str, day: date, rows: list[dict[str, Any]]
) -> int:
    """Make the (model, cell, date) predictions exactly `rows`, in one transaction."""
    wrong = [
        r
        for r in rows
        if (r["model_id"], r["s2_cell"], r["partition_date"]) != (model_id, cell, day)
    ]
    if wrong:
        raise ValueError(
            f"{len(wrong)} prediction row(s) belong to another (model, cell, date) than "
            f"({model_id}, {cell}, {day}); a replace may only carry its own rows"
        )
    with transaction(con):
        con.execute(
            "DELETE FROM predictions WHERE model_id = ? AND s2_cell = ? AND partition_date = ?",
            [model_id, cell, day],
        )
        if rows:
            placeholders = ", ".join("?" for _ in COLUMNS)
            con.executemany(
                f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                [[r[c] for c in COLUMNS] for r in rows],
            )
    return len(rows)


def predictions_for(
    con: duckdb.DuckDBPyConnection, model_id: str, cell: str, day: date
) -> list[dict[str, Any]]:
    cur = con.execute(
        "SELECT * FROM predictions WHERE model_id = ? AND s2_cell = ? AND partition_date = ? "
        "ORDER BY prediction_id",
        [model_id, cell, day],
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
