"""Clouds and cloud shadows of one cell on one date.

Whether a cell-date is cloudy is keyed by (seed, cell, date) alone, so it does not depend on
which other cells a world holds, and the same date can be clear in one cell and cloudy in the
next. Clouds stay inside their own cell (a 10 m inset, so the blur does not leak) and are vectors
rendered into every scene that shows the cell, like its objects. Cloud shadows fall away from the
sun of the cell and date (sun.py), but only tens of metres (at most 60 m), not the kilometre a
real 1.5 km cloud base would give, so they stay in the same cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import shapely
from shapely import affinity
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.projection import reproject
from flywheel_core.geo.s2 import cell_center
from flywheel_core.world.geometry import blob
from flywheel_core.world.grid import cell_epsg, cell_polygon_utm
from flywheel_core.world.noise import key64, rng
from flywheel_core.world.sun import shadow_direction, sun_at, true_north_in_grid_deg

# (relative size, opacity) of the nested cloud levels: thin edge, body, optically thick core.
CLOUD_LEVELS: tuple[tuple[float, float], ...] = ((1.0, 0.25), (0.72, 0.6), (0.42, 0.95))
CLOUD_INSET_M = 10.0
CLOUD_SHADOW_MAX_M = 60.0


@dataclass(frozen=True)
class CellClouds:
    """Nested cloud polygons and their shadows, each with an opacity / darkening strength."""

    cell: str
    epsg: int
    levels: tuple[tuple[BaseGeometry, float], ...]
    shadows: tuple[tuple[BaseGeometry, float], ...]


def is_cloudy(cell: str, day: date, seed: int, cloudy_fraction: float) -> bool:
    u = (key64("cloudy", seed, cell, day.isoformat()) >> 11) / float(1 << 53)
    return u < cloudy_fraction


@lru_cache(maxsize=1024)
def cell_clouds(cell: str, day: date, seed: int, cloudy_fraction: float) -> CellClouds | None:
    """The cell's clouds on `day` in its own UTM zone, or None if the cell-date is clear."""
    if not is_cloudy(cell, day, seed, cloudy_fraction):
        return None
    r = rng("clouds", seed, cell, day.isoformat())
    epsg = cell_epsg(cell)
    poly = cell_polygon_utm(cell, epsg)
    inner = poly.buffer(-CLOUD_INSET_M)
    minx, miny, maxx, maxy = inner.bounds
    size = (poly.area**0.5) / 2.0
    blobs = []
    for _ in range(int(r.integers(1, 4))):
        cx, cy = float(r.uniform(minx, maxx)), float(r.uniform(miny, maxy))
        blobs.append((cx, cy, float(r.uniform(0.25, 0.6)) * size, blob(cx, cy, 1.0, r, 0.45)))
    height = float(r.uniform(35.0, 55.0))
    lon, lat = cell_center(cell)
    ux, uy = shadow_direction(sun_at(lon, lat, day), true_north_in_grid_deg(lon, lat, epsg))
    k = min(height, CLOUD_SHADOW_MAX_M / math.hypot(ux, uy))  # metres of height, capped
    vector = (ux * k, uy * k)
    levels, shadows = [], []
    for rel, opacity in CLOUD_LEVELS:
        shapes = [
            affinity.scale(shape, radius * rel, radius * rel, origin=(cx, cy))
            for cx, cy, radius, shape in blobs
        ]
        level = shapely.intersection(shapely.union_all(shapes), inner)
        levels.append((level, opacity))
        shadows.append((shapely.intersection(affinity.translate(level, *vector), inner), opacity))
    return CellClouds(cell, epsg, tuple(levels), tuple(shadows))


def clouds_in(clouds: CellClouds, epsg: int) -> CellClouds:
    if clouds.epsg == epsg:
        return clouds
    return CellClouds(
        clouds.cell,
        epsg,
        tuple((reproject(g, clouds.epsg, epsg), o) for g, o in clouds.levels),
        tuple((reproject(g, clouds.epsg, epsg), o) for g, o in clouds.shadows),
    )
