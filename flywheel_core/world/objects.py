"""What a cell's layout is made of: painted surfaces, shadow casters, details, PV and look-alikes.

Geometries are in the metres of one UTM zone (`CellLayout.epsg`); `reprojected` moves a layout
into a neighbouring zone, for scenes at a zone boundary. A layout holds no shadows: it holds the
objects that cast them, with their heights, and each scene casts them for its own sun.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.projection import reproject
from flywheel_core.world.landcover import PANEL_TYPE_OF, LandCover

# Codes of a scene's `detail` layer: thin features drawn over an object's colour.
FRAME, GLINT, SEAM, RIB, TUBE, MARKING = 1, 2, 3, 4, 5, 6
N_DETAIL_CODES = 7


@dataclass(frozen=True)
class Surface:
    """A piece of land cover painted over the background; `layer` orders the painting."""

    geometry: BaseGeometry
    cls: LandCover
    tint: float
    layer: int  # 0 ground cover, 1 tree crowns and cars, 2 roofs, 3 roof fixtures
    # Downslope direction of a pitched roof half (grid degrees clockwise from +y): the scene's
    # sun lights the half facing it more. None for flat surfaces.
    aspect_deg: float | None = None


@dataclass(frozen=True)
class Caster:
    """An object that casts a ground shadow: a convex footprint and its height."""

    geometry: BaseGeometry
    height_m: float


@dataclass(frozen=True)
class Detail:
    """Thin features drawn over an object's colour (render.FRAME, SEAM, ...); how much they
    show depends on the class below them (spectra.VHR_DETAIL_LIFT)."""

    geometry: BaseGeometry
    code: int


@dataclass(frozen=True)
class Installation:
    install_id: str
    cell: str
    kind: str  # "rooftop" | "ground"
    install_date: date
    footprint: BaseGeometry
    outline: BaseGeometry
    n_panels: int
    cls: LandCover
    tint: float
    grid: BaseGeometry
    glints: BaseGeometry
    rows: BaseGeometry  # tables that cast ground shadows once built (empty for rooftops)
    row_height_m: float
    ground: BaseGeometry  # fenced ground that becomes FARM_GRASS once built (empty for rooftops)

    @property
    def panel_type(self) -> str:
        return PANEL_TYPE_OF[self.cls]


@dataclass(frozen=True)
class Distractor:
    """A PV look-alike (layout.DISTRACTOR_KINDS): what a false positive would be made of."""

    distractor_id: str
    cell: str
    kind: str
    geometry: BaseGeometry  # the look-alike itself: roof, collectors, skylights, lot, ...
    n_objects: int  # collectors, skylights or cars it is made of (1 for a roof)


@dataclass(frozen=True)
class CellLayout:
    cell: str
    epsg: int
    surfaces: tuple[Surface, ...]
    casters: tuple[Caster, ...]
    details: tuple[Detail, ...]
    installations: tuple[Installation, ...]
    distractors: tuple[Distractor, ...]
    n_buildings: int


def reprojected(lay: CellLayout, epsg: int) -> CellLayout:
    if lay.epsg == epsg:
        return lay

    def tr(g: BaseGeometry) -> BaseGeometry:
        return reproject(g, lay.epsg, epsg)

    # Roof aspects are kept: two neighbouring zones' grids differ by a few degrees at most.
    return replace(
        lay,
        epsg=epsg,
        surfaces=tuple(replace(s, geometry=tr(s.geometry)) for s in lay.surfaces),
        casters=tuple(replace(c, geometry=tr(c.geometry)) for c in lay.casters),
        details=tuple(replace(d, geometry=tr(d.geometry)) for d in lay.details),
        installations=tuple(
            replace(
                i,
                footprint=tr(i.footprint),
                outline=tr(i.outline),
                grid=tr(i.grid),
                glints=tr(i.glints),
                rows=tr(i.rows),
                ground=tr(i.ground),
            )
            for i in lay.installations
        ),
        distractors=tuple(replace(d, geometry=tr(d.geometry)) for d in lay.distractors),
    )
