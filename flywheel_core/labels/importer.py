"""Read any label file into the lake's label schema, one row per usable feature.

Reading is separate from writing (flywheel_core.labels.ingest) so a file can be checked, and its
rejects shown, without touching the lake.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import shapely
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.h3index import h3_cell
from flywheel_core.geo.projection import area_m2, buffer_m
from flywheel_core.geo.s2 import cell_from_lonlat, covering
from flywheel_core.labels import columns as cols
from flywheel_core.labels.errors import LabelFileError
from flywheel_core.labels.geometry import clean_geometry
from flywheel_core.labels.ids import label_uuid
from flywheel_core.labels.readers import read_frame, to_wgs84
from flywheel_core.labels.schema import LABELS_SCHEMA

__all__ = ["LabelBatch", "LabelFileError", "Reject", "read_label_file", "source_name"]

log = logging.getLogger(__name__)

# Nothing this large is one PV installation (the biggest parks are tens of km²); it is more
# likely a region boundary, and covering it with S2 cells would take minutes.
MAX_LABEL_AREA_M2 = 1e9
_DATASET_SUFFIXES = {".zip", ".shp", ".geojson", ".json", ".gpkg", ".parquet", ".geoparquet"}


@dataclass(frozen=True)
class Reject:
    row: int  # 0-based position of the feature in the file
    reason: str


@dataclass
class LabelBatch:
    table: pa.Table
    rejects: list[Reject]
    n_read: int
    warnings: list[str] = field(default_factory=list)


def source_name(path: Path) -> str:
    """Dataset name from a file name: 'pv_uk.shp.zip' -> 'pv_uk'."""
    name = path.name
    while Path(name).suffix.lower() in _DATASET_SUFFIXES:
        name = name[: -len(Path(name).suffix)]
    return name or path.name


@dataclass
class _Columns:
    id: str | None
    date: str | None
    doi: str | None
    area: tuple[str, float] | None

    def used(self) -> set[str]:
        names = {self.id, self.date, self.doi, self.area[0] if self.area else None}
        return {n for n in names if n}


def _resolve_columns(
    frame: Any, id_column: str | None, date_column: str | None, warnings: list[str]
) -> _Columns:
    names = [c for c in frame.columns if c != frame.geometry.name]
    if id_column:
        id_col: str | None = cols.require_column(names, id_column, "--id-column")
    else:
        id_col = cols.find_column(names, cols.ID_COLUMNS)
        if id_col is not None:
            ids = [cols.id_value(v) for v in frame[id_col]]
            present = [i for i in ids if i is not None]
            if len(set(present)) < len(present):
                warnings.append(
                    f"column {id_col!r} has repeated values, so it cannot identify labels; "
                    "ids come from the geometry instead (use --id-column to force it)"
                )
                id_col = None
    if date_column:
        date_col: str | None = cols.require_column(names, date_column, "--date-column")
    else:
        date_col = cols.find_column(names, cols.DATE_COLUMNS)
    return _Columns(
        id=id_col,
        date=date_col,
        doi=cols.find_column(names, cols.DOI_COLUMNS),
        area=cols.area_column(names),
    )


def _row(
    geometry: BaseGeometry,
    attrs: dict[str, Any],
    c: _Columns,
    *,
    source: str,
    doi: str | None,
    point_buffer_m: float,
    s2_level: int,
    h3_resolution: int,
    created_at: datetime,
) -> dict[str, Any]:
    is_point = isinstance(geometry, Point)
    prompt = buffer_m(geometry, point_buffer_m) if is_point else geometry
    centroid = geometry if is_point else geometry.centroid
    source_id = cols.id_value(attrs[c.id]) if c.id else None
    xmin, ymin, xmax, ymax = prompt.bounds
    row_doi = doi or (cols.id_value(attrs[c.doi]) if c.doi else None)
    return {
        "label_id": label_uuid(source, source_id, geometry),
        "source": source,
        "source_kind": "seed",
        "source_id": source_id,
        "doi": row_doi,
        "geometry": shapely.to_wkb(geometry, output_dimension=2, byte_order=1),
        "geometry_type": "point" if is_point else "polygon",
        "prompt_geometry": shapely.to_wkb(prompt, output_dimension=2, byte_order=1),
        "area_m2": None if is_point else area_m2(geometry),
        "reported_area_m2": cols.area_value(attrs[c.area[0]], c.area[1]) if c.area else None,
        "centroid_lon": centroid.x,
        "centroid_lat": centroid.y,
        "bbox_xmin": xmin,
        "bbox_ymin": ymin,
        "bbox_xmax": xmax,
        "bbox_ymax": ymax,
        "s2_level": s2_level,
        "s2_cell": cell_from_lonlat(centroid.x, centroid.y, s2_level),
        "s2_cells": covering(prompt, s2_level),
        "h3_cell": h3_cell(centroid.x, centroid.y, h3_resolution),
        "install_date": cols.date_value(attrs[c.date]) if c.date else None,
        "confidence": 1.0,
        "round": 0,
        "model_id": None,
        "status": "active",
        "import_id": None,
        "created_at": created_at,
        "properties": cols.properties_json({k: v for k, v in attrs.items() if k not in c.used()}),
    }


def read_label_file(
    path: str | Path,
    *,
    source: str | None = None,
    doi: str | None = None,
    id_column: str | None = None,
    date_column: str | None = None,
    layer: str | None = None,
    point_buffer_m: float = 5.0,
    s2_level: int,
    h3_resolution: int,
) -> LabelBatch:
    """Labels from a GeoJSON, GeoPackage, Shapefile (or zip) or GeoParquet file, in any CRS."""
    if not (point_buffer_m > 0 and math.isfinite(point_buffer_m)):
        raise LabelFileError(
            f"the point buffer must be a positive number of metres, got {point_buffer_m}"
        )
    path = Path(path)
    warnings: list[str] = []
    frame = to_wgs84(read_frame(path, layer), path.name, warnings)
    source = source or source_name(path)
    c = _resolve_columns(frame, id_column, date_column, warnings)
    attributes = frame.drop(columns=[frame.geometry.name]).to_dict(orient="records")
    created_at = datetime.now(UTC).replace(tzinfo=None)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    notes: Counter[str] = Counter()
    for i, (geometry, attrs) in enumerate(zip(frame.geometry.values, attributes, strict=True)):
        cleaned = clean_geometry(geometry)
        if cleaned.geometry is None:
            rejects.append(Reject(i, cleaned.reason or "unusable geometry"))
            continue
        if cleaned.note:
            notes[cleaned.note.split(" (")[0]] += 1
        if (
            not isinstance(cleaned.geometry, Point)
            and area_m2(cleaned.geometry) > MAX_LABEL_AREA_M2
        ):
            rejects.append(Reject(i, "polygon larger than 1000 km² is not a PV installation"))
            continue
        rows.append(
            _row(
                cleaned.geometry,
                attrs,
                c,
                source=source,
                doi=doi,
                point_buffer_m=point_buffer_m,
                s2_level=s2_level,
                h3_resolution=h3_resolution,
                created_at=created_at,
            )
        )
    warnings.extend(f"{n} × {note}" for note, n in sorted(notes.items()))
    for message in warnings:
        log.warning("%s: %s", path.name, message)
    table = pa.Table.from_pylist(rows, schema=LABELS_SCHEMA)
    return LabelBatch(table=table, rejects=rejects, n_read=len(frame), warnings=warnings)
