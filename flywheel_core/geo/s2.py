"""S2 cells: the unit of spatial partitioning.

Partitions are keyed by S2 tokens because S2 cells nest exactly (a level-15 cell has exactly one
level-13 ancestor, which is how Core-Five files are named) and have near-equal areas everywhere,
unlike lat/lon tiles.
"""

from __future__ import annotations

import math
import re

import s2sphere
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from flywheel_core.errors import FlywheelError
from flywheel_core.geo import antimeridian

_TOKEN_RE = re.compile(r"^[0-9a-f]{1,16}$")


class InvalidCellError(FlywheelError, ValueError):
    """A string that is not a usable S2 cell token, with the reason in the message."""


def cell_from_lonlat(lon: float, lat: float, level: int) -> str:
    """Token of the level-`level` cell that contains the point."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise InvalidCellError(
            f"({lon}, {lat}) is not a longitude/latitude pair: expected lon in [-180, 180] and "
            "lat in [-90, 90] (did you swap them?)"
        )
    leaf = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lon))
    return leaf.parent(level).to_token()


def parse_token(token: str, level: int | None = None) -> s2sphere.CellId:
    """Parse and check a token; `level` (when given) is the level the token must have."""
    if not isinstance(token, str) or not _TOKEN_RE.match(token):
        raise InvalidCellError(
            f"{token!r} is not an S2 cell token: tokens are 1-16 lower-case hex digits, "
            "e.g. '47a1cbd4' (get one with `flywheel cells add <lon> <lat>`)"
        )
    cid = s2sphere.CellId.from_token(token)
    if cid.id() == 0 or not cid.is_valid():
        raise InvalidCellError(f"{token!r} is not a valid S2 cell id (bad face or trailing bits)")
    if cid.to_token() != token:
        raise InvalidCellError(
            f"{token!r} is not canonical; the canonical token is {cid.to_token()!r}"
        )
    if level is not None and cid.level() != level:
        raise InvalidCellError(
            f"cell {token!r} is at S2 level {cid.level()}, but partitions use level {level} "
            f"(use its level-{level} children or ancestor; set FLYWHEEL_S2_LEVEL to change)"
        )
    return cid


def cell_level(token: str) -> int:
    return parse_token(token).level()


def parent_token(token: str, level: int) -> str:
    cid = parse_token(token)
    if level > cid.level():
        raise InvalidCellError(f"level {level} is finer than cell {token!r} (level {cid.level()})")
    return cid.parent(level).to_token()


def cell_polygon(token: str) -> Polygon:
    """The cell as a lon/lat polygon (edges are geodesics; at partition sizes they are straight).

    A cell on the antimeridian comes back continuous, with longitudes on the side of its centre
    running past ±180 (e.g. 179.99 .. 180.01), so it can be reprojected or measured as one
    shape; to intersect it with stored lon/lat data use `cell_footprint`.
    """
    cell = s2sphere.Cell(parse_token(token))
    ring = []
    for i in range(4):
        ll = s2sphere.LatLng.from_point(cell.get_vertex(i))
        ring.append((ll.lng().degrees, ll.lat().degrees))
    lons = [x for x, _ in ring]
    if max(lons) - min(lons) > 180.0:
        centre = cell.get_center()
        east = s2sphere.LatLng.from_point(centre).lng().degrees > 0
        ring = [(x + 360.0 if east and x < 0 else x - 360.0 if not east and x > 0 else x, y)
                for x, y in ring]  # fmt: skip
    return Polygon(ring)


def cell_footprint(token: str) -> Polygon | MultiPolygon:
    """The cell in stored lon/lat ([-180, 180]): split at ±180 when it lies on the antimeridian."""
    polygon = cell_polygon(token)
    xmin, _, xmax, _ = polygon.bounds
    if xmin >= -180.0 and xmax <= 180.0:
        return polygon
    return antimeridian.split(antimeridian.unwrap(polygon))


def cell_center(token: str) -> tuple[float, float]:
    ll = parse_token(token).to_lat_lng()
    return ll.lng().degrees, ll.lat().degrees


def covering(geometry: BaseGeometry, level: int) -> list[str]:
    """Tokens of every level-`level` cell the geometry touches (not only its centroid's).

    A shape split at ±180 (see flywheel_core.geo.antimeridian) is covered part by part, so its
    covering is the cells along its own stretch of the line, not a band around the globe.
    """
    if geometry.is_empty:
        return []
    if antimeridian.crosses(geometry):
        return sorted({c for part in shapely.get_parts(geometry) for c in _covering(part, level)})
    return _covering(geometry, level)


def _covering(geometry: BaseGeometry, level: int) -> list[str]:
    minx, miny, maxx, maxy = geometry.bounds
    rect = s2sphere.LatLngRect.from_point_pair(
        s2sphere.LatLng.from_degrees(miny, minx), s2sphere.LatLng.from_degrees(maxy, maxx)
    )
    coverer = s2sphere.RegionCoverer()
    coverer.min_level = level
    coverer.max_level = level
    coverer.max_cells = 1_000_000
    candidates = coverer.get_covering(rect)
    if len(candidates) <= 1:
        return sorted(c.to_token() for c in candidates) or [
            cell_from_lonlat(geometry.centroid.x, geometry.centroid.y, level)
        ]
    return sorted(
        c.to_token() for c in candidates if cell_footprint(c.to_token()).intersects(geometry)
    )


def cells_around(lon: float, lat: float, level: int, count: int) -> list[str]:
    """`count` distinct cells nearest the point, the point's own cell first.

    Walks a growing square of sample points spaced by the cell size, so neighbours come out in
    order of distance; used to lay out a demo world of adjacent cells.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    first = cell_from_lonlat(lon, lat, level)
    found = [first]
    edge_m = cell_edge_m(level)
    dlat = edge_m / 111_320.0
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    ring = 1
    while len(found) < count and ring < 64:
        samples = []
        for i in range(-ring, ring + 1):
            for j in range(-ring, ring + 1):
                if max(abs(i), abs(j)) == ring:
                    samples.append((i * i + j * j, lon + i * dlon * 0.9, lat + j * dlat * 0.9))
        for _, x, y in sorted(samples):
            tok = cell_from_lonlat(x, y, level)
            if tok not in found:
                found.append(tok)
            if len(found) == count:
                break
        ring += 1
    return found


def cell_edge_m(level: int) -> float:
    """Mean edge length of a level's cells in metres (S2 cells have near-equal areas)."""
    earth_area_m2 = 4 * math.pi * 6_371_008.8**2
    return math.sqrt(earth_area_m2 / (6 * 4**level))
