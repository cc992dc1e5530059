"""The objects of one cell: buildings, PV installations, PV look-alikes, ponds and trees.

A cell's layout depends only on the cell and its `LayoutParams` (seed, panel mix, densities),
never on a date or on which other cells a world holds: every stage draws from its own stream
keyed by (seed, cell, purpose), everything lies fully inside the cell polygon (so the truth and
the look-alikes have one owner) and avoids the position-keyed road network. A scene renders the
layouts of its cell and the 8 neighbours, which is what makes adjacent scenes agree where they
overlap. Counts are per level-15 cell (≈ 6.6 ha) and scale with the cell's area.

Stages, in placing order (earlier ones claim space first):

1. PV: a ground-mounted farm in half the cells and ordinary buildings (houses, commercial
   halls), `install_density` x (4-8 rooftop systems, the farm's chance, commercial roofs' PV
   chance); each system's panel type is drawn from `panel_mix`.
2. Look-alikes (`DISTRACTOR_KINDS`), `distractor_density` x the expected number per level-15
   cell in `DISTRACTORS_PER_CELL`: they are placed after the PV, so their density never changes
   the truth.
3. Ponds and trees in the space left.

Heights are stored with the objects (`Caster`), not shadows: each scene casts them for its sun.
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
from flywheel_core.world import pv
from flywheel_core.world.geometry import blob, local_north, to_world
from flywheel_core.world.grid import cell_epsg, cell_polygon_utm
from flywheel_core.world.ground import roads
from flywheel_core.world.landcover import (
    CAR_COLOURS,
    COMMERCIAL_PV_ROOFS,
    COMMERCIAL_ROOFS,
    PANEL_CLASSES,
    RESIDENTIAL_ROOFS,
    LandCover,
)
from flywheel_core.world.noise import key64
from flywheel_core.world.noise import rng as keyed_rng
from flywheel_core.world.objects import (
    FRAME,
    MARKING,
    RIB,
    SEAM,
    TUBE,
    Caster,
    CellLayout,
    Detail,
    Distractor,
    Installation,
    Surface,
    reprojected,
)
from flywheel_core.world.world_settings import LayoutParams

INSTALL_START = date(2022, 1, 1)
INSTALL_END = date(2025, 6, 30)
LEVEL15_AREA_M2 = 65_000.0

DISTRACTOR_KINDS: tuple[str, ...] = (
    "dark_roof",  # dark slate / black felt roof, standing seams on some
    "bitumen_roof",  # flat black bitumen roof of a hall
    "blue_metal_roof",  # blue-painted steel, standing seams: blue > red, bright NIR
    "solar_thermal",  # 2-6 flat-plate collectors on a roof: dark blue-black, tube stripes
    "skylight",  # rows of glass roof lights on a flat commercial roof
    "greenhouse",  # bright plastic with ribs
    "car_park",  # asphalt with rows of 4.5 x 1.8 m cars (black and dark blue among them)
)
# Expected number per level-15 cell at distractor_density 1 (ESTIMATE: a peri-urban mix).
DISTRACTORS_PER_CELL: dict[str, float] = {
    "greenhouse": 0.4,
    "car_park": 0.8,
    "bitumen_roof": 0.6,
    "skylight": 0.5,
    "blue_metal_roof": 0.8,
    "dark_roof": 1.5,
    "solar_thermal": 1.2,
}
_PLACING_ORDER = (
    "greenhouse",
    "car_park",
    "bitumen_roof",
    "skylight",
    "blue_metal_roof",
    "dark_roof",
    "solar_thermal",
)
CAR_SIZE_M = (1.8, 4.5)
CAR_HEIGHT_M = 1.5
GREENHOUSE_HEIGHT_M = 3.5


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
    panel_type: str
    panels: pv.PanelLayout
    cx: float
    cy: float
    angle: float
    fence: BaseGeometry


def _lines_across(width: float, depth: float, step: float) -> MultiLineString:
    xs = np.arange(-width / 2 + step, width / 2 - 1e-9, step)
    return MultiLineString([[(x, -depth / 2), (x, depth / 2)] for x in xs])


def _choice(options: tuple[tuple[LandCover, float], ...], r: np.random.Generator) -> LandCover:
    p = np.array([w for _, w in options])
    return options[int(r.choice(len(options), p=p / p.sum()))][0]


def _aspect(angle_deg: float, side: int) -> float:
    """Downslope direction of the local +y (side 1) or -y (side -1) roof half, grid degrees."""
    return (-angle_deg + (0.0 if side > 0 else 180.0)) % 360.0


class _Builder:
    """Rejection sampling of non-overlapping objects inside the road-free part of the cell."""

    def __init__(self, cell: str, params: LayoutParams) -> None:
        self.cell, self.params, self.seed = cell, params, params.seed
        self.epsg = cell_epsg(cell)
        self.poly = cell_polygon_utm(cell, self.epsg)
        self.northern = cell_center(cell)[1] >= 0
        self.scale = float(np.clip(self.poly.area / LEVEL15_AREA_M2, 0.15, 4.0))
        self.roads = roads(self.poly.buffer(20.0).bounds, self.seed, self.epsg)
        paved = shapely.union_all([rd.surface.buffer(2.0) for rd in self.roads] or [Point()])
        self.free = self.poly.buffer(-3.0).difference(paved)
        shapely.prepare(self.free)
        self.taken: list[BaseGeometry] = []
        self.surfaces: list[Surface] = []
        self.casters: list[Caster] = []
        self.details: list[Detail] = []
        self.pending: list[_Pending] = []
        self.distractors: list[tuple[str, BaseGeometry, int]] = []
        self.n_buildings = 0

    # --- keyed randomness --------------------------------------------------------------------

    def stream(self, *purpose: object) -> np.random.Generator:
        return keyed_rng("layout", self.seed, self.cell, *purpose)

    def uniform(self, *purpose: object) -> float:
        return (key64("layout-u", self.seed, self.cell, *purpose) >> 11) / float(1 << 53)

    def expected(self, mean: float, *purpose: object) -> int:
        """`mean` objects per level-15 cell, scaled to this cell, rounded by a keyed draw."""
        return math.floor(mean * self.scale + self.uniform("count", *purpose))

    def count(self, lo: int, hi: int, r: np.random.Generator) -> int:
        return max(0, round(int(r.integers(lo, hi + 1)) * self.scale))

    def panel_type(self, k: int) -> str:
        u = self.uniform("panel-type", k)
        names = [n for n, _ in self.params.panel_mix]
        cumulative = np.cumsum([w for _, w in self.params.panel_mix])
        return names[min(int(np.searchsorted(cumulative, u, side="right")), len(names) - 1)]

    # --- placing -----------------------------------------------------------------------------

    def take(self, geom: BaseGeometry, gap: float) -> bool:
        if not self.free.contains(geom):
            return False
        if self.taken and shapely.dwithin(np.array(self.taken), geom, gap).any():
            return False
        self.taken.append(geom)
        return True

    def spot(self, r: np.random.Generator, near_road: bool, depth: float) -> tuple:
        """A candidate centre and orientation: set back beside a road, or anywhere."""
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

    def rect(
        self, r: np.random.Generator, w: float, d: float, near_road: bool, gap: float, tries: int
    ) -> tuple[BaseGeometry, float, float, float] | None:
        for _ in range(tries):
            cx, cy, angle = self.spot(r, near_road, d)
            fp = to_world(box(-w / 2, -d / 2, w / 2, d / 2), cx, cy, angle)
            if self.take(fp, gap):
                return fp, cx, cy, angle
        return None

    def building(
        self, r: np.random.Generator, commercial: bool, tries: int = 30
    ) -> _Building | None:
        if commercial:
            w, d = float(r.uniform(20, 45)), float(r.uniform(25, 60))
        else:
            w, d = float(r.uniform(10, 16)), float(r.uniform(8, 12))
        near_road = not commercial and r.random() < 0.8
        placed = self.rect(r, w, d, near_road, 4.0, tries)
        if placed is None and near_road:
            placed = self.rect(r, w, d, False, 4.0, tries)
        if placed is None:
            return None
        self.n_buildings += 1
        footprint, cx, cy, angle = placed
        return _Building(footprint, cx, cy, angle, w, d, commercial)

    def paint_building(
        self, b: _Building, cls: LandCover, r: np.random.Generator, flat: bool | None = None
    ) -> None:
        """Roof surfaces (two pitched halves, or one flat roof) and the building's shadow."""
        tint = float(r.uniform(0.9, 1.1))
        height = float(r.uniform(6, 12) if b.commercial else r.uniform(6, 9))
        self.casters.append(Caster(b.footprint, height))
        if b.commercial if flat is None else flat:
            self.surfaces.append(Surface(b.footprint, cls, tint, 2))
            return
        for side in (1, -1):
            y0, y1 = sorted((0.0, side * b.depth / 2))
            half = to_world(box(-b.width / 2, y0, b.width / 2, y1), b.cx, b.cy, b.angle)
            self.surfaces.append(Surface(half, cls, tint, 2, _aspect(b.angle, side)))

    def world(self, b: _Building, geom: BaseGeometry) -> BaseGeometry:
        return to_world(geom, b.cx, b.cy, b.angle)

    def sunny_side(self, b: _Building) -> int:
        return -local_north(b.angle, self.northern)

    # --- stage 1: PV -------------------------------------------------------------------------

    def farm(self) -> None:
        """A ground-mounted farm, placed first as it needs the most room (0.3-3 ha)."""
        if self.uniform("farm") >= 0.5 * self.params.install_density:
            return
        r = self.stream("farm")
        ptype = self.panel_type(len(self.pending))
        area = float(r.uniform(3_000.0, 30_000.0)) * min(1.0, self.scale)
        for _ in range(25):
            aspect = float(r.uniform(0.6, 1.6))
            w, d = math.sqrt(area * aspect), math.sqrt(area / aspect)
            placed = self.rect(r, w, d, False, 5.0, 6)
            if placed:
                fence, cx, cy, angle = placed
                panels = pv.ground(w, d, r, pv.MODULE_SIZES_M[ptype])
                if panels is not None:
                    self.surfaces.append(
                        Surface(fence, LandCover.GRASS, float(r.uniform(1.0, 1.1)), 0)
                    )
                    self.pending.append(_Pending("ground", ptype, panels, cx, cy, angle, fence))
                return
            area = max(3_000.0, area * 0.9)

    def pv_buildings(self) -> None:
        """Ordinary houses and halls; `install_density` sets how many carry PV."""
        r = self.stream("buildings")
        density = self.params.install_density
        n_pv = math.floor(density * int(r.integers(4, 9)) * self.scale + self.uniform("n-pv"))
        n_res = max(self.count(8, 16, r), n_pv + max(1, round(3 * self.scale)))
        n_com = math.floor(
            max(1.0, density) * int(r.integers(0, 3)) * self.scale + self.uniform("n-com")
        )
        halls = [b for b in (self.building(r, True) for _ in range(n_com)) if b]
        houses = [b for b in (self.building(r, False) for _ in range(n_res)) if b]
        with_pv = set(r.permutation(len(houses))[: min(n_pv, len(houses))].tolist())
        for i, b in enumerate(halls):
            wants_pv = self.uniform("hall-pv", i) < 0.6 * density
            roofs = COMMERCIAL_PV_ROOFS if wants_pv else COMMERCIAL_ROOFS
            self.paint_building(b, _choice(roofs, r), r)
            if wants_pv:
                ptype = self.panel_type(len(self.pending))
                target = float(np.clip(r.lognormal(math.log(350), 0.6), 200, 1000))
                panels = pv.commercial(b.width, b.depth, target, r, pv.MODULE_SIZES_M[ptype])
                if panels is not None:
                    self.pending.append(
                        _Pending("rooftop", ptype, panels, b.cx, b.cy, b.angle, Point())
                    )
        for i, b in enumerate(houses):
            self.paint_building(b, _choice(RESIDENTIAL_ROOFS, r), r)
            if i in with_pv:
                ptype = self.panel_type(len(self.pending))
                panels = pv.residential(
                    b.width,
                    b.depth,
                    self.sunny_side(b),
                    int(r.integers(12, 31)),
                    r,
                    pv.MODULE_SIZES_M[ptype],
                )
                if panels is not None:
                    self.pending.append(
                        _Pending("rooftop", ptype, panels, b.cx, b.cy, b.angle, Point())
                    )

    # --- stage 2: look-alikes ----------------------------------------------------------------

    def look_alikes(self) -> None:
        density = self.params.distractor_density
        for kind in _PLACING_ORDER:
            r = self.stream("distractor", kind)
            n = self.expected(density * DISTRACTORS_PER_CELL[kind], "distractor", kind)
            for _ in range(n):
                made = getattr(self, f"_{kind}")(r)
                if made is not None:
                    self.distractors.append((kind, *made))

    def _roof_house(self, r: np.random.Generator, cls: LandCover) -> _Building | None:
        b = self.building(r, False, 60)
        if b is not None:
            self.paint_building(b, cls, r)
        return b

    def _dark_roof(self, r: np.random.Generator) -> tuple[BaseGeometry, int] | None:
        b = self._roof_house(r, LandCover.ROOF_DARK)
        if b is None:
            return None
        if r.random() < 0.6:  # standing seams: a panel-like line pattern
            self.details.append(Detail(self.world(b, _lines_across(b.width, b.depth, 0.6)), SEAM))
        return b.footprint, 1

    def _bitumen_roof(self, r: np.random.Generator) -> tuple[BaseGeometry, int] | None:
        b = self.building(r, True, 60)
        if b is None:
            return None
        self.paint_building(b, LandCover.ROOF_BITUMEN, r)
        return b.footprint, 1

    def _blue_metal_roof(self, r: np.random.Generator) -> tuple[BaseGeometry, int] | None:
        hall = r.random() < 0.5
        b = self.building(r, hall, 60)
        if b is None:
            return None
        self.paint_building(b, LandCover.ROOF_BLUE_METAL, r)
        step = float(r.uniform(0.8, 1.0))  # standing seams down the slope
        self.details.append(Detail(self.world(b, _lines_across(b.width, b.depth, step)), SEAM))
        return b.footprint, 1

    def _solar_thermal(self, r: np.random.Generator) -> tuple[BaseGeometry, int] | None:
        b = self._roof_house(r, _choice(RESIDENTIAL_ROOFS[:2], r))
        if b is None:
            return None
        n = int(r.integers(2, 7))
        cw, ch, gap = 1.0, 2.0, 0.05  # portrait flat-plate collectors of 2 m²
        n = min(n, math.floor((b.width - 1.5) / (cw + gap)))
        y_mid = self.sunny_side(b) * b.depth / 4
        x0 = -(n * cw + (n - 1) * gap) / 2
        plates = [
            box(x0 + k * (cw + gap), y_mid - ch / 2, x0 + k * (cw + gap) + cw, y_mid + ch / 2)
            for k in range(n)
        ]
        collectors = self.world(b, shapely.union_all(plates))
        tint = float(r.uniform(0.92, 1.08))
        self.surfaces.append(Surface(collectors, LandCover.SOLAR_THERMAL, tint, 3))
        self.details.append(Detail(collectors.boundary, FRAME))
        tubes = [
            [(x, y_mid - ch / 2 + 0.1), (x, y_mid + ch / 2 - 0.1)]
            for p in plates
            for x in np.arange(p.bounds[0] + 0.25, p.bounds[2], 0.5)
        ]
        self.details.append(Detail(self.world(b, MultiLineString(tubes)), TUBE))
        return collectors, n

    def _skylight(self, r: np.random.Generator) -> tuple[BaseGeometry, int] | None:
        b = self.building(r, True, 60)
        if b is None:
            return None
        roof = LandCover.ROOF_CONCRETE if r.random() < 0.7 else LandCover.ROOF_BITUMEN
        self.paint_building(b, roof, r)
        sw, sh = float(r.uniform(1.0, 1.5)), float(r.uniform(2.0, 3.0))
        pitch_x, pitch_y = sw + float(r.uniform(1.5, 3.0)), float(r.uniform(5.0, 8.0))
        ncols = math.floor((b.width - 6.0) / pitch_x)
        nrows = min(math.floor((b.depth - 6.0 - sh) / pitch_y) + 1, int(r.integers(2, 7)))
        if ncols < 1 or nrows < 1:
            return None
        x0 = -((ncols - 1) * pitch_x + sw) / 2
        y0 = -((nrows - 1) * pitch_y + sh) / 2
        lights = [
            box(x0 + i * pitch_x, y0 + j * pitch_y, x0 + i * pitch_x + sw, y0 + j * pitch_y + sh)
            for i in range(ncols)
            for j in range(nrows)
        ]
        glass = self.world(b, shapely.union_all(lights))
        self.surfaces.append(Surface(glass, LandCover.SKYLIGHT, float(r.uniform(0.9, 1.1)), 3))
        self.details.append(Detail(glass.boundary, FRAME))
        return glass, len(lights)

    def _greenhouse(self, r: np.random.Generator) -> tuple[BaseGeometry, int] | None:
        w, d = float(r.uniform(25, 50)), float(r.uniform(8, 12))
        placed = self.rect(r, w, d, False, 4.0, 60)
        if placed is None:
            return None
        fp, cx, cy, angle = placed
        self.surfaces.append(Surface(fp, LandCover.GREENHOUSE, float(r.uniform(0.95, 1.05)), 2))
        self.casters.append(Caster(fp, GREENHOUSE_HEIGHT_M))
        self.details.append(Detail(to_world(_lines_across(w, d, 3.0), cx, cy, angle), RIB))
        return fp, 1

    def _car_park(self, r: np.random.Generator) -> tuple[BaseGeometry, int] | None:
        """An asphalt lot with rows of perpendicular bays (2.5 x 5 m) and 6 m aisles."""
        w, d = float(r.uniform(25, 60)), float(r.uniform(18, 40))
        placed = self.rect(r, w, d, True, 3.0, 40) or self.rect(r, w, d, False, 3.0, 40)
        if placed is None:
            return None
        lot, cx, cy, angle = placed
        self.surfaces.append(Surface(lot, LandCover.PARKING, float(r.uniform(0.9, 1.1)), 0))
        bay_w, bay_d, aisle = 2.5, 5.0, 6.0
        occupancy = float(r.uniform(0.35, 0.9))
        rows, y = [], -d / 2 + 1.0
        while y + bay_d <= d / 2 - 1.0:
            rows.append(y)
            y += bay_d if len(rows) % 2 else bay_d + aisle  # back-to-back pairs, then an aisle
        xs = np.arange(-w / 2 + 1.0, w / 2 - 1.0 - bay_w + 1e-9, bay_w)
        cars, colours, lines = [], [], []
        car_w, car_l = CAR_SIZE_M
        for y0 in rows:
            lines += [[(x, y0), (x, y0 + bay_d)] for x in np.append(xs, xs[-1:] + bay_w)]
            for x in xs:
                if r.random() >= occupancy:
                    continue
                jx, jy, rot = r.normal(0, 0.12), r.normal(0, 0.15), r.normal(0, 2.5)
                car = to_world(
                    box(-car_w / 2, -car_l / 2, car_w / 2, car_l / 2),
                    x + bay_w / 2 + jx,
                    y0 + bay_d / 2 + jy,
                    rot,
                )
                cars.append(to_world(car, cx, cy, angle))
                colours.append(_choice(CAR_COLOURS, r))
        if lines:
            self.details.append(Detail(to_world(MultiLineString(lines), cx, cy, angle), MARKING))
        for car, cls in zip(cars, colours, strict=True):
            self.surfaces.append(Surface(car, cls, float(r.uniform(0.9, 1.1)), 1))
            self.casters.append(Caster(car, CAR_HEIGHT_M))
        return lot, len(cars)

    # --- stage 3: ponds and trees ------------------------------------------------------------

    def extras(self) -> None:
        r = self.stream("extras")
        if r.random() < 0.3:
            for _ in range(30):
                cx, cy, _angle = self.spot(r, False, 0.0)
                pond = blob(cx, cy, float(r.uniform(10, 25)), r)
                if self.take(pond, 3.0):
                    self.surfaces.append(
                        Surface(pond, LandCover.WATER, float(r.uniform(0.9, 1.1)), 0)
                    )
                    break
        for _ in range(self.count(6, 14, r) * 10):
            cx, cy, _angle = self.spot(r, False, 0.0)
            crown = Point(cx, cy).buffer(float(r.uniform(2.5, 6.0)), quad_segs=6)
            if self.take(crown, 1.0):
                self.surfaces.append(
                    Surface(crown, LandCover.TREES, float(r.uniform(0.85, 1.1)), 1)
                )
                self.casters.append(Caster(crown, float(r.uniform(6, 14))))

    # --- results -----------------------------------------------------------------------------

    def installation(self, k: int, p: _Pending) -> Installation:
        r = keyed_rng("install", self.seed, self.cell, k)

        def world(g: BaseGeometry) -> BaseGeometry:
            return to_world(g, p.cx, p.cy, p.angle)

        footprint = world(p.panels.footprint)
        ground = p.kind == "ground"
        span = (INSTALL_END - INSTALL_START).days
        return Installation(
            install_id=f"pv-s{self.seed}-{self.cell}-{k:02d}",
            cell=self.cell,
            kind=p.kind,
            install_date=INSTALL_START + timedelta(days=int(r.integers(span + 1))),
            footprint=footprint,
            outline=p.fence if ground else shapely.oriented_envelope(footprint),
            n_panels=p.panels.n_panels,
            cls=PANEL_CLASSES[p.panel_type],
            tint=float(r.uniform(0.92, 1.08)),
            grid=world(p.panels.grid),
            glints=world(p.panels.glints),
            rows=footprint if ground else Point(),
            row_height_m=pv.GROUND_ROW_HEIGHT_M,
            ground=p.fence,
        )

    def distractor_objects(self) -> tuple[Distractor, ...]:
        return tuple(
            Distractor(f"lk-s{self.seed}-{self.cell}-{k:02d}", self.cell, kind, geom, n)
            for k, (kind, geom, n) in enumerate(self.distractors)
        )


@lru_cache(maxsize=256)
def cell_layout(cell: str, params: LayoutParams | None = None) -> CellLayout:
    """Objects of `cell` in its own UTM zone."""
    b = _Builder(cell, params or LayoutParams())
    b.farm()
    b.pv_buildings()
    b.look_alikes()
    b.extras()
    return CellLayout(
        cell=cell,
        epsg=b.epsg,
        surfaces=tuple(b.surfaces),
        casters=tuple(b.casters),
        details=tuple(b.details),
        installations=tuple(b.installation(k, p) for k, p in enumerate(b.pending)),
        distractors=b.distractor_objects(),
        n_buildings=b.n_buildings,
    )


@lru_cache(maxsize=256)
def layout_in(cell: str, params: LayoutParams, epsg: int) -> CellLayout:
    """The layout in another zone's coordinates (a neighbour across a UTM zone boundary)."""
    return reprojected(cell_layout(cell, params), epsg)
