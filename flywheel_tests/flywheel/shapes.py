"""Hand-made squares laid out in metres around one point (Munich, the tiny world's cell)."""

from __future__ import annotations

import math

from shapely.geometry import MultiPolygon, Point, Polygon

LON, LAT = 11.58, 48.14


def at(east_m: float, north_m: float) -> tuple[float, float]:
    dlat = north_m / 111_320.0
    dlon = east_m / (111_320.0 * math.cos(math.radians(LAT)))
    return LON + dlon, LAT + dlat


def box_m(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """Rectangle from (x0, y0) to (x1, y1), in metres east/north of (LON, LAT)."""
    return Polygon([at(x0, y0), at(x1, y0), at(x1, y1), at(x0, y1)])


def square(x0: float, y0: float, size: float) -> Polygon:
    return box_m(x0, y0, x0 + size, y0 + size)


def multi(*parts: Polygon) -> MultiPolygon:
    return MultiPolygon(list(parts))


def point_m(x: float, y: float) -> Point:
    return Point(*at(x, y))
