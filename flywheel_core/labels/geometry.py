"""Make a source geometry usable as a label, or say why it cannot be.

Public datasets carry self-intersecting rings, stray lines and empty features; repairing what
can be repaired (keeping only the polygonal part) and rejecting the rest per row lets one bad
feature cost one label instead of the whole import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

_LINES = ("LineString", "MultiLineString", "LinearRing")


@dataclass(frozen=True)
class Cleaned:
    geometry: Point | Polygon | MultiPolygon | None
    reason: str | None = None  # why the row is rejected (geometry is None)
    note: str | None = None  # what was changed, for the import's warnings


def _reject(reason: str) -> Cleaned:
    return Cleaned(None, reason=reason)


def _polygonal(geometry: BaseGeometry) -> Polygon | MultiPolygon | None:
    parts = [
        g
        for g in shapely.get_parts(geometry)
        if isinstance(g, Polygon | MultiPolygon) and not g.is_empty
    ]
    if not parts:
        return None
    merged = shapely.union_all(parts)
    if isinstance(merged, Polygon | MultiPolygon) and not merged.is_empty and merged.area > 0:
        return merged
    return None


def clean_geometry(geometry: BaseGeometry | None) -> Cleaned:
    """A lon/lat Point, Polygon or MultiPolygon, repaired if needed, or a reject reason."""
    if geometry is None:
        return _reject("missing geometry")
    if geometry.is_empty:
        return _reject("empty geometry")
    coords = shapely.get_coordinates(geometry)
    if not np.isfinite(coords).all():
        return _reject("non-finite coordinate (NaN or infinity)")
    lon, lat = coords[:, 0], coords[:, 1]
    if (np.abs(lon) > 180).any() or (np.abs(lat) > 90).any():
        return _reject("coordinates outside longitude [-180, 180] / latitude [-90, 90]")
    geometry = shapely.force_2d(geometry)
    kind = geometry.geom_type
    if kind == "Point":
        return Cleaned(geometry)
    if kind == "MultiPoint":
        note = "MultiPoint: kept its first point" if len(geometry.geoms) > 1 else None
        return Cleaned(geometry.geoms[0], note=note)
    if kind in _LINES:
        return _reject(f"{kind} is a line; labels must be points or polygons")
    if kind in ("Polygon", "MultiPolygon") and geometry.is_valid:
        if geometry.area > 0:
            return Cleaned(geometry)
        return _reject(f"{kind} has zero area")
    problem = explain_validity(geometry) if kind != "GeometryCollection" else "geometry collection"
    repaired = _polygonal(shapely.make_valid(geometry))
    if repaired is None:
        return _reject(f"{kind} has no usable polygon after repair ({problem})")
    return Cleaned(repaired, note=f"repaired {kind} ({problem})")


@dataclass
class CleanedBatch:
    geometries: np.ndarray  # object array; None where the row is rejected
    rejects: list[tuple[int, str]]  # (row, reason)
    notes: list[str]  # one per repaired row, for the import's warnings


_POINT, _POLYGON, _MULTIPOLYGON = 0, 3, 6


def _fast_rows(geometries: np.ndarray) -> np.ndarray:
    """Rows usable as they are: finite in-range Points, and valid Polygons with area."""
    kind = shapely.get_type_id(geometries)
    usable = ~shapely.is_missing(geometries) & ~shapely.is_empty(geometries)
    coords, index = shapely.get_coordinates(geometries, return_index=True)
    bad = ~np.isfinite(coords).all(axis=1)
    bad |= (np.abs(coords[:, 0]) > 180) | (np.abs(coords[:, 1]) > 90)
    usable[index[bad]] = False
    polygonal = usable & np.isin(kind, (_POLYGON, _MULTIPOLYGON))
    good_polygon = np.zeros(len(geometries), dtype=bool)
    if polygonal.any():
        subset = geometries[polygonal]
        good_polygon[polygonal] = shapely.is_valid(subset) & (shapely.area(subset) > 0)
    return (usable & (kind == _POINT)) | good_polygon


def clean_geometries(geometries: np.ndarray) -> CleanedBatch:
    """`clean_geometry` for a whole file: the usual rows checked in vectorized calls.

    Valid polygons and plain points (nearly every row of a real dataset) are checked with shapely
    array functions; only the rest (empty, non-finite, out of range, invalid, lines, multi-points)
    goes through `clean_geometry` one by one, so reasons and repairs are exactly its own.
    """
    raw = np.asarray(geometries, dtype=object)
    flat = shapely.force_2d(raw)
    fast = _fast_rows(flat)
    out = np.empty(len(raw), dtype=object)
    out[fast] = flat[fast]
    rejects: list[tuple[int, str]] = []
    notes: list[str] = []
    for k in np.flatnonzero(~fast):
        cleaned = clean_geometry(raw[k])
        if cleaned.geometry is None:
            rejects.append((int(k), cleaned.reason or "unusable geometry"))
            continue
        out[k] = cleaned.geometry
        if cleaned.note:
            notes.append(cleaned.note)
    return CleanedBatch(out, rejects, notes)
