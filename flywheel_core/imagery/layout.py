"""The objects of one cell: buildings, greenhouses, ponds, trees and PV installations.

A cell's layout depends only on (seed, cell): it is generated from its own random stream, lies
fully inside the cell polygon (so the truth has one owner), and avoids the position-keyed road
network. A scene renders the layouts of its cell and the 8 neighbours, which is what makes
adjacent scenes agree where they overlap. Counts are per level-15 cell (≈ 6.6 ha) and scale with
the cell's area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import shapely
from shapely.geometry import MultiLineString, Point, box
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.s2 import cell_center
from flywheel_core.imagery import pv
from flywheel_core.imagery.geometry import blob, cast_shadow, local_north, shadow_vector, to_world
from flywheel_core.imagery.grid import cell_epsg, cell_polygon_utm
from flywheel_core.imagery.ground import roads
from flywheel_core.imagery.landcover import COMMERCIAL_ROOFS, RESIDENTIAL_ROOFS, LandCover
from flywheel_core.imagery.noise import rng as keyed_rng
from flywheel_core.imagery.objects import CellLayout, Installation, Surface, reprojected

INSTALL_START = date(2022, 1, 1)
INSTALL_END = date(2025, 6, 30)
LEVEL15_AREA_M2 = 65_000.0


@dataclass(frozen=True)
class _Building:
    footprint: BaseGeometry
    cx: float
    cy: float
    angle: float
    width: float  # along the local x axis (the ridge)
    depth: float
    commercial: bool


@dataclass(frozen=True)
class _Pending:
    """A PV system whose geometry is known but whose id and date are not assigned yet."""

    kind: str
    panels: pv.PanelLayout
    cx: float
    cy: float
    angle: float
    fence: BaseGeometry


def _lines_across(width: float, depth: float, step: float) -> MultiLineString:
    xs = np.arange(-width / 2 + step, width / 2, step)
    return MultiLineString([[(x, -depth / 2), (x, depth / 2)] for x in xs])


class _Builder:
    """Rejection sampling of non-overlapping objects inside the road-free part of the cell."""

    def __init__(self, cell: str, seed: int) -> None:
        self.cell, self.seed = cell, seed
        self.r = keyed_rng("layout", seed, cell)
        self.epsg = cell_epsg(cell)
        self.poly = cell_polygon_utm(cell, self.epsg)
        self.northern = cell_center(cell)[1] >= 0
        self.scale = float(np.clip(self.poly.area / LEVEL15_AREA_M2, 0.15, 4.0))
        self.roads = roads(self.poly.buffer(20.0).bounds, seed, self.epsg)
        paved = shapely.union_all([rd.surface.buffer(2.0) for rd in self.roads] or [Point()])
        self.free = self.poly.buffer(-3.0).difference(paved)
        shapely.prepare(self.free)
        self.taken: list[BaseGeometry] = []
        self.surfaces: list[Surface] = []
        self.shadows: list[BaseGeometry] = []
        self.seams: list[BaseGeometry] = []
        self.ribs: list[BaseGeometry] = []
        self.pending: list[_Pending] = []

    def count(self, lo: int, hi: int) -> int:
        return max(0, round(int(self.r.integers(lo, hi + 1)) * self.scale))

    def take(self, geom: BaseGeometry, gap: float) -> bool:
        if not self.free.contains(geom):
            return False
        if self.taken and shapely.dwithin(np.array(self.taken), geom, gap).any():
            return False
        self.taken.append(geom)
        return True

    def spot(self, near_road: bool, depth: float) -> tuple[float, float, float]:
        """A candidate centre and orientation: set back beside a road, or anywhere."""
        r = self.r
        if near_road and self.roads:
            rd = self.roads[int(r.integers(len(self.roads)))]
            p = rd.line.interpolate(float(r.uniform(0, 1)), normalized=True)
            a = math.radians(rd.angle_deg)
            side = 1 if r.random() < 0.5 else -1
            off = side * (rd.width_m / 2 + r.uniform(4.0, 12.0) + depth / 2)
            return p.x - off * math.sin(a), p.y + off * math.cos(a), rd.angle_deg
        angles = [rd.angle_deg for rd in self.roads] or [float(r.uniform(0, 90))]
        angle = angles[int(r.integers(len(angles)))] + float(r.normal(0, 4))
        minx, miny, maxx, maxy = self.poly.bounds
        return float(r.uniform(minx, maxx)), float(r.uniform(miny, maxy)), angle

    def rect(self, w: float, d: float, near_road: bool, gap: float, tries: int) -> tuple | None:
        for _ in range(tries):
            cx, cy, angle = self.spot(near_road, d)
            fp = to_world(box(-w / 2, -d / 2, w / 2, d / 2), cx, cy, angle)
            if self.take(fp, gap):
                return fp, cx, cy, angle
        return None

    def farm(self) -> None:
        """A ground-mounted farm, placed first as it needs the most room (0.3-3 ha)."""
        r = self.r
        if r.random() >= 0.5:
            return
        area = float(r.uniform(3_000.0, 30_000.0)) * min(1.0, self.scale)
        for _ in range(25):
            aspect = float(r.uniform(0.6, 1.6))
            w, d = math.sqrt(area * aspect), math.sqrt(area / aspect)
            placed = self.rect(w, d, False, 5.0, 6)
            if placed:
                fence, cx, cy, angle = placed
                panels = pv.ground(w, d, r)
                if panels is not None:
                    self.surfaces.append(
                        Surface(fence, LandCover.GRASS, float(r.uniform(1.0, 1.1)), 0)
                    )
                    self.pending.append(_Pending("ground", panels, cx, cy, angle, fence))
                return
            area = max(3_000.0, area * 0.9)

    def buildings(self) -> list[_Building]:
        out = []
        r = self.r
        for commercial, n in ((True, self.count(0, 2)), (False, self.count(8, 16))):
            for _ in range(n):
                if commercial:
                    w, d = float(r.uniform(20, 45)), float(r.uniform(25, 60))
                else:
                    w, d = float(r.uniform(10, 16)), float(r.uniform(8, 12))
                placed = self.rect(w, d, not commercial and r.random() < 0.8, 4.0, 30)
                if placed:
                    out.append(_Building(*placed, w, d, commercial))
        return out

    def roofs(self, buildings: list[_Building]) -> list[tuple[LandCover, bool]]:
        """Roof class and whether it carries PV; dark (panel-like) roofs never get panels."""
        r = self.r
        residential = [i for i, b in enumerate(buildings) if not b.commercial]
        n_pv = min(self.count(4, 8), max(0, len(residential) - 3))  # several stay without PV
        with_pv = set(r.choice(residential, n_pv, replace=False).tolist()) if n_pv else set()
        roofs = []
        for i, b in enumerate(buildings):
            cls = _choice(COMMERCIAL_ROOFS if b.commercial else RESIDENTIAL_ROOFS, r)
            wants_pv = i in with_pv or (b.commercial and r.random() < 0.6)
            if wants_pv and cls == LandCover.ROOF_DARK:
                cls = LandCover.ROOF_CONCRETE if b.commercial else LandCover.ROOF_TILE
            roofs.append((cls, wants_pv))
        plain = [i for i, (_, wants_pv) in enumerate(roofs) if not wants_pv]
        has_dark = any(roofs[i][0] == LandCover.ROOF_DARK for i in plain)
        if plain and not has_dark and r.random() < 0.8:  # most cells get a hard negative
            roofs[plain[int(r.integers(len(plain)))]] = (LandCover.ROOF_DARK, False)
        return roofs

    def paint_building(self, b: _Building, cls: LandCover, wants_pv: bool) -> None:
        r = self.r
        tint = float(r.uniform(0.9, 1.1))
        height = float(r.uniform(6, 12) if b.commercial else r.uniform(6, 9))
        self.shadows.append(cast_shadow(b.footprint, shadow_vector(height, self.northern)))
        sunny = -local_north(b.angle, self.northern)
        if b.commercial:
            self.surfaces.append(Surface(b.footprint, cls, tint, 2))
        else:  # two pitched halves, the sun-facing one brighter
            for side in (1, -1):
                y0, y1 = sorted((0.0, side * b.depth / 2))
                half = to_world(box(-b.width / 2, y0, b.width / 2, y1), b.cx, b.cy, b.angle)
                self.surfaces.append(
                    Surface(half, cls, tint * (1.08 if side == sunny else 0.92), 2)
                )
        if cls == LandCover.ROOF_DARK and r.random() < 0.6:
            seams = _lines_across(b.width, b.depth, 0.6)
            self.seams.append(to_world(seams, b.cx, b.cy, b.angle))
        if not wants_pv:
            return
        if b.commercial:
            target = float(np.clip(r.lognormal(math.log(350), 0.6), 200, 1000))
            panels = pv.commercial(b.width, b.depth, target, r)
        else:
            panels = pv.residential(b.width, b.depth, sunny, int(r.integers(12, 31)), r)
        if panels is not None:
            self.pending.append(_Pending("rooftop", panels, b.cx, b.cy, b.angle, Point()))

    def extras(self) -> None:
        """A greenhouse and a pond in some cells, tree crowns in all."""
        r = self.r
        if r.random() < 0.35 * self.scale:
            w, d = float(r.uniform(25, 50)), float(r.uniform(8, 12))
            placed = self.rect(w, d, False, 4.0, 30)
            if placed:
                fp, cx, cy, angle = placed
                self.surfaces.append(
                    Surface(fp, LandCover.GREENHOUSE, float(r.uniform(0.95, 1.05)), 2)
                )
                self.shadows.append(cast_shadow(fp, shadow_vector(3.5, self.northern)))
                self.ribs.append(to_world(_lines_across(w, d, 3.0), cx, cy, angle))
        if r.random() < 0.3:
            for _ in range(30):
                cx, cy, _angle = self.spot(False, 0.0)
                pond = blob(cx, cy, float(r.uniform(10, 25)), r)
                if self.take(pond, 3.0):
                    self.surfaces.append(
                        Surface(pond, LandCover.WATER, float(r.uniform(0.9, 1.1)), 0)
                    )
                    break
        for _ in range(self.count(6, 14) * 10):
            cx, cy, _angle = self.spot(False, 0.0)
            crown = Point(cx, cy).buffer(float(r.uniform(2.5, 6.0)), quad_segs=6)
            if self.take(crown, 1.0):
                self.surfaces.append(
                    Surface(crown, LandCover.TREES, float(r.uniform(0.85, 1.1)), 1)
                )
                vector = shadow_vector(float(r.uniform(6, 14)), self.northern)
                self.shadows.append(cast_shadow(crown, vector))

    def installation(self, k: int, p: _Pending) -> Installation:
        r = self.r

        def world(g: BaseGeometry) -> BaseGeometry:
            return to_world(g, p.cx, p.cy, p.angle)

        footprint = world(p.panels.footprint)
        ground = p.kind == "ground"
        row_vector = shadow_vector(1.6, self.northern)
        shadow = (
            shapely.union_all([cast_shadow(world(row), row_vector) for row in p.panels.rows])
            if ground
            else Point()
        )
        span = (INSTALL_END - INSTALL_START).days
        return Installation(
            install_id=f"pv-s{self.seed}-{self.cell}-{k:02d}",
            cell=self.cell,
            kind=p.kind,
            install_date=INSTALL_START + timedelta(days=int(r.integers(span + 1))),
            footprint=footprint,
            outline=p.fence if ground else shapely.oriented_envelope(footprint),
            n_panels=p.panels.n_panels,
            cls=LandCover.PV_POLY if r.random() < 0.4 else LandCover.PV_MONO,
            tint=float(r.uniform(0.92, 1.08)),
            grid=world(p.panels.grid),
            glints=world(p.panels.glints),
            shadow=shadow,
            ground=p.fence,
        )


def _choice(options: tuple[tuple[LandCover, float], ...], r: np.random.Generator) -> LandCover:
    p = np.array([w for _, w in options])
    return options[int(r.choice(len(options), p=p / p.sum()))][0]


@lru_cache(maxsize=256)
def cell_layout(cell: str, seed: int) -> CellLayout:
    """Objects of `cell` in its own UTM zone."""
    b = _Builder(cell, seed)
    b.farm()
    buildings = b.buildings()
    roofs = b.roofs(buildings)
    for building, (cls, wants_pv) in zip(buildings, roofs, strict=True):
        b.paint_building(building, cls, wants_pv)
    b.extras()
    installations = tuple(b.installation(k, p) for k, p in enumerate(b.pending))
    return CellLayout(
        cell=cell,
        epsg=b.epsg,
        surfaces=tuple(b.surfaces),
        shadows=tuple(b.shadows),
        seams=tuple(b.seams),
        ribs=tuple(b.ribs),
        installations=installations,
        n_buildings=len(buildings),
        n_dark_roofs=sum(1 for cls, _ in roofs if cls == LandCover.ROOF_DARK),
    )


@lru_cache(maxsize=256)
def layout_in(cell: str, seed: int, epsg: int) -> CellLayout:
    """The layout in another zone's coordinates (a neighbour across a UTM zone boundary)."""
    return reprojected(cell_layout(cell, seed), epsg)
