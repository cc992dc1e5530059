"""The pixel grids of a cell's scenes.

All scenes of a UTM zone share one global lattice: extents are snapped to 20 m, and 20 m is a
whole number of pixels at every resolution used (64 VHR pixels, 2 or 1 S2 pixels). That is what
makes the VHR and S2 grids of a scene align exactly, and overlapping margins of adjacent scenes
fall on the same pixels.

The delivered VHR raster may have another pixel size (`WorldSettings.gsd_m`, 0.3-1.0 m): its
grid (`SceneGrid.at_gsd`) lies on the zone-wide lattice of that size too, inside the scene's
extent; where 20 m is a whole number of such pixels (0.4, 0.5, 0.625, 0.8, 1.0 m) it is
exactly the scene's extent, otherwise it is inset by less than a pixel on each side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from rasterio.transform import Affine
from shapely.geometry import Polygon, box

from flywheel_core.geo.projection import reproject, utm_epsg
from flywheel_core.geo.s2 import cell_center, cell_polygon

VHR_GSD_M = 10.0 / 32.0  # one 10 m S2 pixel is exactly 32 x 32 VHR pixels
SNAP_M = 20.0
MARGIN_M = 20.0


@dataclass(frozen=True)
class SceneGrid:
    """A scene's extent in its UTM zone; pixel sizes derive from it."""

    cell: str
    epsg: int
    left: float
    bottom: float
    right: float
    top: float

    def shape(self, gsd_m: float = VHR_GSD_M) -> tuple[int, int]:
        return (
            round((self.top - self.bottom) / gsd_m),
            round((self.right - self.left) / gsd_m),
        )

    def transform(self, gsd_m: float = VHR_GSD_M) -> Affine:
        return Affine(gsd_m, 0.0, self.left, 0.0, -gsd_m, self.top)

    def origin_px(self, gsd_m: float = VHR_GSD_M) -> tuple[int, int]:
        """(column, row) of the top-left pixel on the zone-wide lattice; rows count southward."""
        return round(self.left / gsd_m), round(-self.top / gsd_m)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.left, self.bottom, self.right, self.top

    def box(self) -> Polygon:
        return box(*self.bounds)

    def at_gsd(self, gsd_m: float) -> SceneGrid:
        """The largest grid of `gsd_m` pixels on the zone-wide lattice inside this extent."""
        if abs(gsd_m - VHR_GSD_M) < 1e-12:
            return self
        eps = 1e-6
        col0 = math.ceil(self.left / gsd_m - eps)
        col1 = math.floor(self.right / gsd_m + eps)
        row0 = math.ceil(-self.top / gsd_m - eps)
        row1 = math.floor(-self.bottom / gsd_m + eps)
        return SceneGrid(
            cell=self.cell,
            epsg=self.epsg,
            left=round(col0 * gsd_m, 6),
            bottom=round(-row1 * gsd_m, 6),
            right=round(col1 * gsd_m, 6),
            top=round(-row0 * gsd_m, 6),
        )

    def footprint_lonlat(self) -> Polygon:
        """The raster footprint in lon/lat (straight edges: a few hundred metres bend nothing)."""
        return reproject(self.box(), self.epsg, 4326)


def cell_epsg(cell: str) -> int:
    return utm_epsg(*cell_center(cell))


@lru_cache(maxsize=1024)
def cell_polygon_utm(cell: str, epsg: int | None = None) -> Polygon:
    """The cell polygon in a UTM zone (its own by default), densified along the edges."""
    target = cell_epsg(cell) if epsg is None else epsg
    return reproject(cell_polygon(cell).segmentize(0.0005), 4326, target)


def scene_grid(cell: str) -> SceneGrid:
    """Cell bounds in its UTM zone, plus a 20 m margin, snapped outward to multiples of 20 m."""
    epsg = cell_epsg(cell)
    minx, miny, maxx, maxy = cell_polygon_utm(cell, epsg).bounds
    return SceneGrid(
        cell=cell,
        epsg=epsg,
        left=math.floor((minx - MARGIN_M) / SNAP_M) * SNAP_M,
        bottom=math.floor((miny - MARGIN_M) / SNAP_M) * SNAP_M,
        right=math.ceil((maxx + MARGIN_M) / SNAP_M) * SNAP_M,
        top=math.ceil((maxy + MARGIN_M) / SNAP_M) * SNAP_M,
    )
