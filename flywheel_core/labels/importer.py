"""Read any label file into the lake's label schema, one row per usable feature.

Reading is separate from writing (flywheel_core.labels.ingest) so a file can be checked, and its
rejects shown, without touching the lake: an import parses with the lake closed and then holds
it only for one write transaction. The steps, each over the whole file at once (shapely 2 array
functions, numpy, pyarrow; Python loops only over the few rows that need repair):

1. read the file (pyogrio / geopandas) and reproject to EPSG:4326;
2. split polygons that cross the antimeridian at ±180 (flywheel_core.geo.antimeridian);
3. clean: valid polygons and plain points pass in vectorized checks, the rest is repaired or
   rejected with a reason per row (flywheel_core.labels.geometry);
4. measure: centroid and equal-area m² (a crossing shape on its unwrapped form), reject shapes
   larger than any PV site;
5. index: prompt footprint (the polygon, or a geodesic circle around a point), bbox (xmin > xmax
   when it crosses ±180), S2 cell and covering, H3 cell, content-derived label ids;
6. attributes: source id, DOI, reported area, install date and the rest as properties JSON.

A failure here (a LabelFileError for a file that cannot be imported as a whole) leaves nothing
behind: nothing is written anywhere until the lake write of flywheel_core.labels.ingest.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo import antimeridian
from flywheel_core.geo.h3index import h3_cell
from flywheel_core.geo.projection import areas_m2, point_buffers_m
from flywheel_core.geo.s2 import covering
from flywheel_core.geo.s2_arrays import cells_from_lonlat, coverings
from flywheel_core.labels import columns as cols
from flywheel_core.labels.errors import LabelFileError
from flywheel_core.labels.geometry import clean_geometries
from flywheel_core.labels.ids import label_uuids
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


@dataclass(frozen=True)
class _Options:
    source: str
    doi: str | None
    point_buffer_m: float
    s2_level: int
    h3_resolution: int


@dataclass
class _Shapes:
    """The usable rows' geometries and what is measured from them, one array entry per row."""

    rows: np.ndarray  # positions in the file
    geometry: np.ndarray  # as stored: lon in [-180, 180], split at ±180 when crossing
    is_point: np.ndarray
    centroid_lon: np.ndarray
    centroid_lat: np.ndarray
    area: np.ndarray  # m², NaN for points


def _measure(geometry: np.ndarray, rows: np.ndarray) -> _Shapes:
    """Centroid and area of each shape, a crossing shape measured on its unwrapped form."""
    is_point = shapely.get_type_id(geometry) == 0
    measured = geometry.copy()
    wide = np.flatnonzero(np.diff(shapely.bounds(geometry)[:, [0, 2]], axis=1)[:, 0] > 180.0)
    for k in wide:
        if antimeridian.crosses(geometry[k]):
            measured[k] = antimeridian.unwrap(geometry[k])
    centroids = shapely.centroid(measured)
    lon = antimeridian.wrap_lon(shapely.get_x(centroids))
    lat = shapely.get_y(centroids)
    area = np.full(len(geometry), np.nan)
    polygons = ~is_point
    area[polygons] = areas_m2(measured[polygons], lon[polygons], lat[polygons])
    return _Shapes(rows, geometry, is_point, lon, lat, area)


def _usable_shapes(frame: Any, rejects: list[Reject], notes: Counter[str]) -> _Shapes:
    """Clean every geometry, split crossing ones at ±180, drop those too big to be one site."""
    raw = antimeridian.normalize_rings(np.asarray(frame.geometry.values, dtype=object))
    bounds = shapely.bounds(raw)
    wide = np.flatnonzero(bounds[:, 2] - bounds[:, 0] > 180.0)
    split = sum(antimeridian.crosses(raw[k]) for k in wide)
    cleaned = clean_geometries(raw)
    rejects.extend(Reject(row, reason) for row, reason in cleaned.rejects)
    for note in cleaned.notes:
        notes[note.split(" (")[0]] += 1
    rows = np.flatnonzero(np.asarray([g is not None for g in cleaned.geometries], dtype=bool))
    shapes = _measure(cleaned.geometries[rows], rows)
    too_big = np.nan_to_num(shapes.area, nan=0.0) > MAX_LABEL_AREA_M2
    rejects.extend(
        Reject(int(row), "polygon larger than 1000 km² is not a PV installation")
        for row in rows[too_big]
    )
    if split:
        notes["crosses the antimeridian: stored split at ±180"] += split
    keep = ~too_big
    return _Shapes(
        rows[keep],
        shapes.geometry[keep],
        shapes.is_point[keep],
        shapes.centroid_lon[keep],
        shapes.centroid_lat[keep],
        shapes.area[keep],
    )


def _prompts(shapes: _Shapes, buffer_m: float) -> np.ndarray:
    """The SAM prompt footprint: the polygon itself, or a geodesic circle around a point."""
    prompts = shapes.geometry.copy()
    points = shapes.is_point
    circles = point_buffers_m(shapes.centroid_lon[points], shapes.centroid_lat[points], buffer_m)
    prompts[points] = antimeridian.normalize_rings(circles)
    return prompts


def _dates(values: list[Any]) -> list[Any]:
    """`date_value` of each value, parsed once per distinct value (dates repeat a lot)."""
    seen: dict[Any, Any] = {}
    out = []
    for value in values:
        try:
            if value not in seen:
                seen[value] = cols.date_value(value)
            out.append(seen[value])
        except TypeError:  # unhashable
            out.append(cols.date_value(value))
    return out


def _attribute_columns(
    frame: Any, rows: np.ndarray, c: _Columns, doi: str | None
) -> dict[str, Any]:
    """Source id, DOI, reported area, install date and properties of the kept rows."""
    attrs = frame.drop(columns=[frame.geometry.name])
    used = c.used()

    def column(name: str | None) -> list[Any]:
        return attrs[name].iloc[rows].tolist() if name else [None] * len(rows)

    return {
        "source_id": [cols.id_value(v) for v in column(c.id)] if c.id else [None] * len(rows),
        "doi": [doi] * len(rows) if doi else [cols.id_value(v) for v in column(c.doi)],
        "reported_area_m2": (
            [cols.area_value(v, c.area[1]) for v in column(c.area[0])]
            if c.area
            else [None] * len(rows)
        ),
        "install_date": _dates(column(c.date)) if c.date else [None] * len(rows),
        "properties": cols.properties_column(attrs.iloc[rows], used),
    }


def _table(frame: Any, shapes: _Shapes, c: _Columns, o: _Options, created_at: datetime) -> pa.Table:
    """The label rows, column by column, in LABELS_SCHEMA."""
    n = len(shapes.rows)
    prompts = _prompts(shapes, o.point_buffer_m)
    bounds = antimeridian.stored_bounds(prompts)
    attrs = _attribute_columns(frame, shapes.rows, c, o.doi)
    columns: dict[str, Any] = {
        "label_id": label_uuids(o.source, attrs["source_id"], shapes.geometry),
        "source": [o.source] * n,
        "source_kind": ["seed"] * n,
        "geometry": shapely.to_wkb(shapes.geometry, output_dimension=2, byte_order=1),
        "geometry_type": np.where(shapes.is_point, "point", "polygon"),
        "prompt_geometry": shapely.to_wkb(prompts, output_dimension=2, byte_order=1),
        "area_m2": pa.array(shapes.area, pa.float64(), mask=shapes.is_point),
        "centroid_lon": shapes.centroid_lon,
        "centroid_lat": shapes.centroid_lat,
        "bbox_xmin": bounds[:, 0],
        "bbox_ymin": bounds[:, 1],
        "bbox_xmax": bounds[:, 2],
        "bbox_ymax": bounds[:, 3],
        "s2_level": [o.s2_level] * n,
        "s2_cell": cells_from_lonlat(shapes.centroid_lon, shapes.centroid_lat, o.s2_level),
        "s2_cells": coverings(prompts, o.s2_level, covering),
        "h3_cell": [
            h3_cell(x, y, o.h3_resolution)
            for x, y in zip(shapes.centroid_lon.tolist(), shapes.centroid_lat.tolist(), strict=True)
        ],
        "confidence": [1.0] * n,
        "round": [0] * n,
        "model_id": [None] * n,
        "status": ["active"] * n,
        "import_id": [None] * n,
        "created_at": [created_at] * n,
        **attrs,
    }
    return pa.table(
        {f.name: pa.array(columns[f.name], f.type) if not isinstance(columns[f.name], pa.Array)
         else columns[f.name] for f in LABELS_SCHEMA},
        schema=LABELS_SCHEMA,
    )  # fmt: skip


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
    """One label row for one clean geometry, through the same batch code as a file import.

    For callers that index a single shape (model proposals): their rows carry exactly the index
    columns an imported label of that footprint gets.
    """
    stored = antimeridian.normalize_rings(np.array([geometry], dtype=object))
    shapes = _measure(stored, np.array([0]))
    frame = gpd.GeoDataFrame([attrs] if attrs else None, geometry=list(stored), crs=4326)
    options = _Options(source, doi, point_buffer_m, s2_level, h3_resolution)
    row: dict[str, Any] = _table(frame, shapes, c, options, created_at).to_pylist()[0]
    return row


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
    created_at = datetime.now(UTC).replace(tzinfo=None)
    rejects: list[Reject] = []
    notes: Counter[str] = Counter()
    shapes = _usable_shapes(frame, rejects, notes)
    options = _Options(source, doi, point_buffer_m, s2_level, h3_resolution)
    table = _table(frame, shapes, c, options, created_at)
    rejects.sort(key=lambda r: r.row)
    warnings.extend(f"{n} × {note}" for note, n in sorted(notes.items()))
    for message in warnings:
        log.warning("%s: %s", path.name, message)
    return LabelBatch(table=table, rejects=rejects, n_read=len(frame), warnings=warnings)
