"""Date-line-aware longitude ranges and the bounding-box filters built from them.

A longitude range is (west, east) in degrees, -180..180. West > east means the range crosses the
antimeridian (RFC 7946's bbox convention): (179.5, -179.5) is the 1° around ±180, not the 359°
between. A plain `xmax >= west AND xmin <= east` test gets such a range wrong both ways: a box
crossing the date line matches nothing (or everything along its latitude, when its raw bounds span
the globe). These helpers treat the stored bbox columns and the query box alike, so a stored bbox
with bbox_xmin > bbox_xmax (a label crossing the date line) is matched too.

The raw shapely bounds of a lon/lat geometry crossing the date line span nearly 360°; a geometry
(or a set of them) is taken to cross it when that is the shorter way round (`lon_range_of`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from flywheel_core.lake.quote import literal

__all__ = [
    "LABEL_BBOX_COLUMNS",
    "bbox_meets_sql",
    "box_meets",
    "box_of",
    "box_shape",
    "centroid_lonlat",
    "lon_in_range_sql",
    "lon_range_of",
    "lon_ranges_meet",
    "padded_box",
    "unwrapped",
]

LABEL_BBOX_COLUMNS = ("bbox_xmin", "bbox_ymin", "bbox_xmax", "bbox_ymax")


def _check(west: float, east: float) -> None:
    for v in (west, east):
        if not -180.0 <= float(v) <= 180.0:
            raise ValueError(f"a longitude must lie in -180..180, got {v!r}")


def _pieces(west: float, east: float) -> list[tuple[float, float]]:
    """The range as one or two non-wrapping intervals."""
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def lon_ranges_meet(a_west: float, a_east: float, b_west: float, b_east: float) -> bool:
    """Whether two longitude ranges (either may cross the date line) share a point."""
    return any(
        lo1 <= hi2 and lo2 <= hi1
        for lo1, hi1 in _pieces(a_west, a_east)
        for lo2, hi2 in _pieces(b_west, b_east)
    )


def _fold(lon: float) -> float:
    """A longitude folded into -180..180 (180 stays 180)."""
    return float(lon) if -180.0 <= lon <= 180.0 else (float(lon) + 180.0) % 360.0 - 180.0


def _geometry_range(geom: BaseGeometry) -> tuple[float, float]:
    """One geometry's range: its raw bounds, or the way round the date line when shorter."""
    x0, _, x1, _ = geom.bounds
    if x1 - x0 >= 360.0:
        return -180.0, 180.0
    if x0 < -180.0 or x1 > 180.0:  # unwrapped past ±180: fold back (west > east if it crosses)
        return _fold(x0), _fold(x1)
    if x1 - x0 <= 180.0:
        return float(x0), float(x1)
    xs = shapely.get_coordinates(geom)[:, 0]
    east = float(xs[xs < 0].max()) if (xs < 0).any() else -180.0
    west = float(xs[xs >= 0].min()) if (xs >= 0).any() else 180.0
    return (west, east) if (east + 360.0) - west < x1 - x0 else (float(x0), float(x1))


def _covering(ranges: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The shortest range covering all `ranges`: the complement of the widest gap between them."""
    merged: list[list[float]] = []
    for lo, hi in sorted(p for r in ranges for p in _pieces(*r)):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if len(merged) == 1:
        return merged[0][0], merged[0][1]
    # Gaps between neighbours, and the one round the back (through ±180).
    gaps = [(merged[i + 1][0] - merged[i][1], i + 1) for i in range(len(merged) - 1)]
    gaps.append((merged[0][0] + 360.0 - merged[-1][1], 0))
    _, after = max(gaps)
    if after == 0:
        return merged[0][0], merged[-1][1]
    return merged[after][0], merged[after - 1][1]


def lon_range_of(geometries: BaseGeometry | Iterable[BaseGeometry]) -> tuple[float, float]:
    """The shortest (west, east) covering the lon/lat geometries; west > east across ±180."""
    geoms = [geometries] if isinstance(geometries, BaseGeometry) else list(geometries)
    ranges = [_geometry_range(g) for g in geoms if g is not None and not g.is_empty]
    if not ranges:
        raise ValueError("no geometry to take a longitude range of")
    return _covering(ranges)


def box_of(geometries: BaseGeometry | Iterable[BaseGeometry] | Any) -> tuple[float, ...]:
    """(west, south, east, north) of lon/lat geometries, date-line aware (west > east across)."""
    if isinstance(geometries, np.ndarray):
        geometries = list(geometries)
    geoms = [geometries] if isinstance(geometries, BaseGeometry) else list(geometries)
    _, south, _, north = shapely.total_bounds(np.asarray(geoms, dtype=object))
    west, east = lon_range_of(geoms)
    return west, float(south), east, float(north)


def centroid_lonlat(geom: BaseGeometry) -> tuple[float, float]:
    """The centroid of a lon/lat geometry, taken east of ±180 when the geometry crosses it (a
    plain centroid of 179.9..-179.9 lies at lon 0, the other side of the Earth)."""
    west, east = _geometry_range(geom)
    if west <= east:
        c = geom.centroid
        return _fold(c.x), float(c.y)
    shifted = shapely.transform(geom, lambda xy: np.column_stack([xy[:, 0] % 360.0, xy[:, 1]]))
    c = shifted.centroid
    return (float(c.x) - 360.0 if c.x > 180.0 else float(c.x)), float(c.y)


def unwrapped(geometries: Any, box: Sequence[float]) -> np.ndarray:
    """The lon/lat geometries in a frame where `box` does not cross the date line: when it does
    (and lon 0 is outside it), every longitude < 0 moves up by 360, so a shape either side of ±180
    is one connected shape again and geometric tests (intersects, STRtree) are right."""
    geoms = np.asarray(geometries, dtype=object)
    west, _, east, _ = box
    if west <= east or lon_ranges_meet(west, east, 0.0, 0.0):
        return geoms

    def shift(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]])

    return np.asarray(shapely.transform(geoms, shift), dtype=object)


def lon_in_range_sql(column: str, west: float, east: float) -> str:
    """`column` (a point's longitude) within the range; an OR of two sides across ±180."""
    _check(west, east)
    w, e = literal(float(west)), literal(float(east))
    if west <= east:
        return f"{column} >= {w} AND {column} <= {e}"
    return f"({column} >= {w} OR {column} <= {e})"


def padded_box(box: Sequence[float], pad_lon: float, pad_lat: float | None = None) -> tuple:
    """`box` (west, south, east, north) widened by `pad_lon` degrees east and west (wrapping past
    ±180; the globe when it closes) and `pad_lat` (default `pad_lon`) north and south."""
    west, south, east, north = (float(v) for v in box)
    pad_lat = pad_lon if pad_lat is None else pad_lat
    width = east - west if west <= east else east + 360.0 - west
    if width + 2 * pad_lon >= 360.0:
        west, east = -180.0, 180.0
    else:
        west, east = west - pad_lon, east + pad_lon
        west, east = (
            (west + 360.0 if west < -180.0 else west),
            (east - 360.0 if east > 180.0 else east),
        )
    return west, max(-90.0, south - pad_lat), east, min(90.0, north + pad_lat)


def box_shape(box: Sequence[float]) -> BaseGeometry:
    """The box as a lon/lat shape: one rectangle, or the two either side of ±180."""
    west, south, east, north = (float(v) for v in box)
    if west <= east:
        return shapely.box(west, south, east, north)
    return shapely.MultiPolygon(
        [shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)]
    )


def box_meets(stored: Sequence[float], box: Sequence[float]) -> bool:
    """Whether a stored bbox (xmin, ymin, xmax, ymax) meets `box`; either may cross ±180."""
    x0, y0, x1, y1 = (float(v) for v in stored)
    west, south, east, north = (float(v) for v in box)
    return y0 <= north and y1 >= south and lon_ranges_meet(x0, x1, west, east)


def bbox_meets_sql(box: Sequence[float], columns: Sequence[str] = LABEL_BBOX_COLUMNS) -> str:
    """SQL (DuckDB or LanceDB) true when a row's stored bbox meets `box` (west, south, east,
    north); both the box and the stored bbox may cross the date line."""
    xmin, ymin, xmax, ymax = columns
    west, south, east, north = (float(v) for v in box)
    _check(west, east)
    w, s, e, n = (literal(v) for v in (west, south, east, north))
    lat = f"{ymax} >= {s} AND {ymin} <= {n}"
    wraps = f"{xmin} > {xmax}"
    if west <= east:
        # A stored bbox crossing the date line covers [xmin, 180] and [-180, xmax].
        lon = f"(({xmin} <= {xmax} AND {xmax} >= {w} AND {xmin} <= {e}) OR ({wraps} AND "
        lon += f"({xmin} <= {e} OR {xmax} >= {w})))"
    else:
        # Both ranges crossing ±180 always meet there.
        lon = f"(({xmin} <= {xmax} AND ({xmax} >= {w} OR {xmin} <= {e})) OR {wraps})"
    return f"{lat} AND {lon}"
