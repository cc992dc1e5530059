"""Shapes that cross the antimeridian (lon ±180), measured as one shape and stored split.

A ring that goes from lon 179.9 to -179.9 means the short way across the date line (RFC 7946),
but planar code reads it as a band around the whole globe: centroid lon 0, bbox -179.9..179.9.
The rule here:

- a polygon *crosses* when one of its ring edges jumps more than 180° in longitude, or when it is
  a MultiPolygon already split at the line (parts touching both +180 and -180);
- it is *measured* (area, centroid, covering) on its unwrapped form: longitudes below 0 moved by
  +360, so the shape is continuous around lon 180;
- it is *stored* split at ±180 into a MultiPolygon with every longitude in [-180, 180];
- its bbox keeps lon order around the line: `xmin > xmax` (xmin near +180, xmax near -180) means
  the box covers lon >= xmin and lon <= xmax. `lon_ranges` turns such a box into its two ranges.

Shapes wider than 180° of longitude or around a pole are not handled (no PV label is either).
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

__all__ = [
    "crosses",
    "lon_ranges",
    "normalize_rings",
    "split",
    "stored_bounds",
    "unwrap",
    "unwrapped_bounds",
    "wrap_lon",
]

_WEST = box(-180.0, -90.0, 180.0, 90.0)
_EAST = box(180.0, -90.0, 540.0, 90.0)


def _ring_jumps(geometry: BaseGeometry) -> bool:
    for ring in shapely.get_rings(shapely.get_parts(geometry)):
        lon = shapely.get_coordinates(ring)[:, 0]
        if lon.size > 1 and (np.abs(np.diff(lon)) > 180.0).any():
            return True
    return False


def crosses(geometry: BaseGeometry | None) -> bool:
    """True for a polygon (or split MultiPolygon) that crosses lon ±180."""
    if geometry is None or geometry.is_empty:
        return False
    if geometry.geom_type not in ("Polygon", "MultiPolygon"):
        return False
    xmin, _, xmax, _ = geometry.bounds
    if xmax - xmin <= 180.0:
        return False  # a crossing shape spans more than 180° when read as planar
    if _ring_jumps(geometry):
        return True
    lons = shapely.get_coordinates(geometry)[:, 0]
    return bool(isinstance(geometry, MultiPolygon) and lons.max() >= 180 and lons.min() <= -180)


def unwrap(geometry: BaseGeometry) -> BaseGeometry:
    """The crossing shape made continuous: lon < 0 moved by +360, split parts merged."""
    shifted = shapely.transform(
        geometry,
        lambda c: np.column_stack([np.where(c[:, 0] < 0, c[:, 0] + 360.0, c[:, 0]), c[:, 1]]),
    )
    if not shifted.is_valid:
        shifted = shapely.make_valid(shifted)
    if isinstance(shifted, MultiPolygon) or shifted.geom_type == "GeometryCollection":
        polygons = [g for g in shapely.get_parts(shifted) if isinstance(g, Polygon | MultiPolygon)]
        shifted = shapely.union_all(polygons)
    return shifted


def split(unwrapped: BaseGeometry) -> BaseGeometry:
    """An unwrapped shape (lon in [0, 540)) cut at 180, every lon back in [-180, 180]."""
    west = shapely.intersection(unwrapped, _WEST)
    east = shapely.transform(
        shapely.intersection(unwrapped, _EAST), lambda c: c - np.array([360.0, 0.0])
    )
    parts = [
        g
        for g in (*shapely.get_parts(west), *shapely.get_parts(east))
        if isinstance(g, Polygon) and not g.is_empty and g.area > 0
    ]
    if len(parts) == 1:
        return parts[0]
    return MultiPolygon(parts)


def wrap_lon(lon: np.ndarray | float) -> np.ndarray:
    """Longitudes folded into [-180, 180)."""
    return (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0


def unwrapped_bounds(unwrapped: BaseGeometry) -> tuple[float, float, float, float]:
    """Bounds of an unwrapped shape in stored lon: xmin > xmax when the box crosses the line."""
    xmin, ymin, xmax, ymax = unwrapped.bounds
    return (
        xmin - 360.0 if xmin >= 180.0 else xmin,
        ymin,
        xmax - 360.0 if xmax > 180.0 else xmax,
        ymax,
    )


def lon_ranges(xmin: float, xmax: float) -> list[tuple[float, float]]:
    """The lon ranges a stored bbox covers: one, or two when it crosses (xmin > xmax)."""
    if xmin <= xmax:
        return [(xmin, xmax)]
    return [(xmin, 180.0), (-180.0, xmax)]


def stored_bounds(geometries: np.ndarray) -> np.ndarray:
    """(n, 4) bounds of stored shapes; a shape split at ±180 gets its crossing box (xmin > xmax)."""
    geometries = np.asarray(geometries, dtype=object)
    bounds = shapely.bounds(geometries) if geometries.size else np.zeros((0, 4))
    for k in np.flatnonzero((bounds[:, 2] - bounds[:, 0]) > 180.0):
        if crosses(geometries[k]):
            bounds[k] = unwrapped_bounds(unwrap(geometries[k]))
    return bounds


def normalize_rings(geometries: np.ndarray) -> np.ndarray:
    """Each geometry as stored: crossing ones split at ±180, the others unchanged."""
    out = np.asarray(geometries, dtype=object).copy()
    if out.size == 0:
        return out
    bounds = shapely.bounds(out)
    wide = np.flatnonzero((bounds[:, 2] - bounds[:, 0]) > 180.0)
    for k in wide:
        if crosses(out[k]):
            out[k] = split(unwrap(out[k]))
    return out
