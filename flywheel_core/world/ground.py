"""Background that is a function of ground position: fields and the road network.

Both are drawn from hashed jittered lattices in the UTM zone's metres, so any window of them is
the same whichever scene (or cell layout) asks: adjacent scenes agree in their margins and the
cells' objects can avoid roads they do not own. (At a UTM zone boundary two zones' backgrounds
meet without matching; objects, being vectors, still match.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, box
from shapely.geometry.base import BaseGeometry

from flywheel_core.world.landcover import FIELD_CLASSES, LandCover
from flywheel_core.world.noise import hash_uniform, key64

FIELD_SPACING_M = 70.0
ROAD_SPACING_M = 250.0
ROAD_EDGE_PROBABILITY = 0.55


@dataclass(frozen=True)
class Field:
    polygon: BaseGeometry
    cls: LandCover
    tint: float


@dataclass(frozen=True)
class Road:
    line: LineString
    width_m: float

    @property
    def surface(self) -> BaseGeometry:
        return self.line.buffer(self.width_m / 2.0, quad_segs=4)

    @property
    def angle_deg(self) -> float:
        (x0, y0), (x1, y1) = self.line.coords[0], self.line.coords[-1]
        return math.degrees(math.atan2(y1 - y0, x1 - x0))


def _lattice(bounds: tuple[float, float, float, float], spacing: float, pad: int) -> tuple:
    minx, miny, maxx, maxy = bounds
    i = np.arange(math.floor(minx / spacing) - pad, math.floor(maxx / spacing) + pad + 1)
    j = np.arange(math.floor(miny / spacing) - pad, math.floor(maxy / spacing) + pad + 1)
    return np.meshgrid(i, j)


def fields(bounds: tuple[float, float, float, float], seed: int, epsg: int) -> list[Field]:
    """Voronoi fields of a jittered 70 m lattice, clipped to `bounds`.

    Lattice points three spacings beyond the window are included, so every Voronoi cell that
    reaches the window is complete and identical to what a larger window would give.
    """
    salt = key64("fields", seed, epsg)
    ii, jj = _lattice(bounds, FIELD_SPACING_M, 3)
    ii, jj = ii.ravel(), jj.ravel()
    px = (ii + 0.15 + 0.7 * hash_uniform(ii, jj, salt)) * FIELD_SPACING_M
    py = (jj + 0.15 + 0.7 * hash_uniform(ii, jj, salt + 1)) * FIELD_SPACING_M
    kind = hash_uniform(ii, jj, salt + 2)
    tint = 0.88 + 0.24 * hash_uniform(ii, jj, salt + 3)
    window = box(*bounds)
    cells = shapely.voronoi_polygons(
        MultiPoint(np.column_stack([px, py])),
        extend_to=window.buffer(4 * FIELD_SPACING_M),
        ordered=True,
    )
    cumulative = np.cumsum([p for _, p in FIELD_CLASSES])
    classes = [c for c, _ in FIELD_CLASSES]
    out = []
    for k, poly in enumerate(cells.geoms):
        if not poly.intersects(window):
            continue
        cls = classes[
            min(int(np.searchsorted(cumulative, kind[k], side="right")), len(classes) - 1)
        ]
        out.append(Field(poly.intersection(window), cls, float(tint[k])))
    return out


def roads(bounds: tuple[float, float, float, float], seed: int, epsg: int) -> list[Road]:
    """A perturbed street grid: jittered 250 m nodes, each lattice edge paved or not by hash."""
    salt = key64("roads", seed, epsg)
    ii, jj = _lattice(bounds, ROAD_SPACING_M, 1)

    def node(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (i + 0.3 + 0.4 * hash_uniform(i, j, salt)) * ROAD_SPACING_M
        y = (j + 0.3 + 0.4 * hash_uniform(i, j, salt + 1)) * ROAD_SPACING_M
        return x, y

    window = box(*bounds)
    out = []
    for di, dj, edge_salt in ((1, 0, salt + 2), (0, 1, salt + 3)):
        x0, y0 = node(ii, jj)
        x1, y1 = node(ii + di, jj + dj)
        keep = hash_uniform(ii, jj, edge_salt) < ROAD_EDGE_PROBABILITY
        width = 5.0 + 3.0 * hash_uniform(ii, jj, edge_salt + 10)
        for k in np.flatnonzero(keep.ravel()):
            line = LineString([(x0.flat[k], y0.flat[k]), (x1.flat[k], y1.flat[k])])
            if line.buffer(width.flat[k]).intersects(window):
                out.append(Road(line, float(width.flat[k])))
    return out
