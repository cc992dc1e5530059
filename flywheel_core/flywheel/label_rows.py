"""Label rows for model proposals, indexed exactly as imported labels are.

The geometry, area, centroid, bbox, S2 covering and H3 columns come from the importer's own row
builder (flywheel_core.labels.importer._row, called with no source attributes), so a model label
and a seed label of the same footprint carry identical index columns. Only provenance differs.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

from shapely.geometry.base import BaseGeometry

from flywheel_core.labels import importer
from flywheel_core.labels.ids import NAMESPACE, geometry_key

__all__ = ["model_label_id", "model_label_row"]

_NO_COLUMNS = importer._Columns(id=None, date=None, doi=None, area=None)


def model_label_id(model_id: str, cell: str, day: date, round_: int, geometry: BaseGeometry) -> str:
    """uuid5 over (model, cell, date, round, normalized geometry rounded to 1e-7°)."""
    key = "\x1f".join(
        ["model", model_id, cell, day.isoformat(), str(int(round_)), geometry_key(geometry)]
    )
    return str(uuid.uuid5(NAMESPACE, key))


def model_label_row(
    geometry: BaseGeometry,
    *,
    label_id: str,
    model_id: str,
    round_: int,
    confidence: float,
    s2_level: int,
    h3_resolution: int,
    created_at: datetime,
    source_id: str | None = None,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `labels` row (LABELS_SCHEMA) for a polygon a model proposed and the rules accepted."""
    row = importer._row(
        geometry,
        {},
        _NO_COLUMNS,
        source="model",
        doi=None,
        point_buffer_m=1.0,  # unused: model labels are polygons, their prompt is the polygon
        s2_level=s2_level,
        h3_resolution=h3_resolution,
        created_at=created_at,
    )
    if row["geometry_type"] != "polygon":
        raise ValueError(f"model labels must be polygons, got {geometry.geom_type}")
    row.update(
        label_id=label_id,
        source="model",
        source_kind="model",
        source_id=source_id,
        install_date=None,
        confidence=float(confidence),
        round=int(round_),
        model_id=model_id,
        status="active",
        import_id=None,
        properties=json.dumps(properties or {}, sort_keys=True),
    )
    return row
