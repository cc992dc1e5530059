"""What a cell's layout is made of: painted surfaces, shadows, details and PV installations.

Geometries are in the metres of one UTM zone (`CellLayout.epsg`); `reprojected` moves a layout
into a neighbouring zone, for scenes at a zone boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.projection import reproject
from flywheel_core.imagery.landcover import LandCover


@dataclass(frozen=True)
class Surface:
    """A piece of land cover painted over the background; `layer` orders the painting."""

    geometry: BaseGeometry
    cls: LandCover
    tint: float
    layer: int  # 0 ground cover, 1 tree crowns, 2 roofs


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
    shadow: BaseGeometry  # ground shadow of the rows once built (empty for rooftops)
    ground: BaseGeometry  # fenced ground that becomes FARM_GRASS once built (empty for rooftops)


@dataclass(frozen=True)
class CellLayout:
    cell: str
    epsg: int
    surfaces: tuple[Surface, ...]
    shadows: tuple[BaseGeometry, ...]
    seams: tuple[BaseGeometry, ...]  # standing-seam lines on dark roofs (panel imitations)
    ribs: tuple[BaseGeometry, ...]  # greenhouse ribs
    installations: tuple[Installation, ...]
    n_buildings: int
    n_dark_roofs: int


def reprojected(lay: CellLayout, epsg: int) -> CellLayout:
    if lay.epsg == epsg:
        return lay

    def tr(g: BaseGeometry) -> BaseGeometry:
        return reproject(g, lay.epsg, epsg)

    return replace(
        lay,
        epsg=epsg,
        surfaces=tuple(replace(s, geometry=tr(s.geometry)) for s in lay.surfaces),
        shadows=tuple(tr(g) for g in lay.shadows),
        seams=tuple(tr(g) for g in lay.seams),
        ribs=tuple(tr(g) for g in lay.ribs),
        installations=tuple(
            replace(
                i,
                footprint=tr(i.footprint),
                outline=tr(i.outline),
                grid=tr(i.grid),
                glints=tr(i.glints),
                shadow=tr(i.shadow),
                ground=tr(i.ground),
            )
            for i in lay.installations
        ),
    )
