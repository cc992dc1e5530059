"""Rasterising a scene's land cover: the layers both sensors are rendered from.

A scene shows its cell plus a margin, so it renders the position-keyed background and the
layouts (and clouds) of the cell and its 8 neighbours; each layer is burnt in painting order
with `rasterio.features.rasterize`, never pixel by pixel. Shadows are cast here, for the date:
each layout's objects by the sun over their own cell (so every scene showing them casts the
same shadows), ground-mounted rows only once built. The `owner` layer says which of the nine
cells holds each pixel; per-cell conditions (conditions.py) are looked up through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import shapely
from rasterio.features import rasterize
from rasterio.transform import Affine
from scipy.ndimage import gaussian_filter
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.s2 import parse_token
from flywheel_core.world.clouds import cell_clouds, clouds_in
from flywheel_core.world.conditions import SceneConditions, scene_conditions
from flywheel_core.world.geometry import cast_shadows
from flywheel_core.world.grid import VHR_GSD_M, SceneGrid, cell_polygon_utm, scene_grid
from flywheel_core.world.ground import fields, roads
from flywheel_core.world.landcover import LandCover
from flywheel_core.world.layout import layout_in
from flywheel_core.world.noise import key64, value_noise
from flywheel_core.world.objects import (  # noqa: F401  (detail codes re-exported)
    FRAME,
    GLINT,
    MARKING,
    RIB,
    SEAM,
    TUBE,
    CellLayout,
    Installation,
)
from flywheel_core.world.sun import shadow_direction
from flywheel_core.world.world_settings import WorldSettings

CLOUD_STEP = 8  # clouds are rasterised at 8 VHR pixels (2.5 m), then blurred and upsampled
CLOUD_PAD = 8
ROOF_SUN_CONTRAST = 0.12  # pitched halves: x (1 ± this x cos(elevation)) facing / away from sun


@dataclass(frozen=True)
class SceneLayers:
    grid: SceneGrid
    day: date
    settings: WorldSettings
    classes: np.ndarray  # uint8 LandCover codes
    tint: np.ndarray  # float32 per-object brightness
    detail: np.ndarray  # uint8 FRAME / GLINT / SEAM / RIB / TUBE / MARKING
    shadow: np.ndarray  # bool: ground in a cast shadow
    cloud: np.ndarray  # float32 cloud opacity 0..1
    cloud_shadow: np.ndarray  # float32 cloud-shadow strength 0..1
    cell_mask: np.ndarray  # bool: pixel centre inside the scene's own cell
    owner: np.ndarray  # uint8 index into `conditions`: the cell holding the pixel
    conditions: tuple[SceneConditions, ...]  # the scene's cell first, then its neighbours
    installed: tuple[str, ...]  # install ids visible in the scene (any of the 9 cells)
    installations: tuple[Installation, ...] = ()  # the installed ones themselves

    @property
    def own(self) -> SceneConditions:
        return self.conditions[0]


def neighbourhood(cell: str) -> list[str]:
    """The cell and its 8 neighbours at the same level."""
    cid = parse_token(cell)
    return [cell, *sorted(n.to_token() for n in cid.get_all_neighbors(cid.level()))]


def _burn(
    shapes: Iterable[tuple[BaseGeometry, float]],
    shape: tuple[int, int],
    transform: Affine,
    fill: float,
    dtype: str,
) -> np.ndarray:
    pairs = [(g, v) for g, v in shapes if not g.is_empty]
    if not pairs:
        return np.full(shape, fill, dtype=dtype)
    return rasterize(pairs, out_shape=shape, transform=transform, fill=fill, dtype=dtype)


def _upsample(coarse: np.ndarray, factor: int, pad: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a padded coarse grid onto the fine pixel centres."""

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        pos = pad + (np.arange(n) + 0.5) / factor - 0.5
        i0 = np.floor(pos).astype(int)
        return i0, (pos - i0).astype(np.float32)

    y0, fy = axis(shape[0])
    x0, fx = axis(shape[1])
    rows = coarse[y0] * (1 - fy)[:, None] + coarse[y0 + 1] * fy[:, None]
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def _cloud_fields(
    grid: SceneGrid, clouds: list, seed: int, day: date
) -> tuple[np.ndarray, np.ndarray]:
    shape = grid.shape()
    if not clouds:
        zero = np.zeros(shape, dtype=np.float32)
        return zero, zero
    step_m = CLOUD_STEP * VHR_GSD_M
    cshape = (shape[0] // CLOUD_STEP + 2 * CLOUD_PAD, shape[1] // CLOUD_STEP + 2 * CLOUD_PAD)
    ctransform = Affine(
        step_m, 0, grid.left - CLOUD_PAD * step_m, 0, -step_m, grid.top + CLOUD_PAD * step_m
    )
    col0, row0 = grid.origin_px(step_m)
    texture = value_noise(
        col0 - CLOUD_PAD,
        row0 - CLOUD_PAD,
        *cshape,
        4,
        key64("cloud-texture", seed, day.isoformat()),
    )
    out = []
    for attr in ("levels", "shadows"):
        burnt = _burn(
            ((g, o) for c in clouds for g, o in getattr(c, attr)),
            cshape,
            ctransform,
            0.0,
            "float32",
        )
        soft = gaussian_filter(burnt, 2.0) * np.clip(0.8 + 0.45 * texture, 0.0, 1.25)
        out.append(np.clip(_upsample(soft, CLOUD_STEP, CLOUD_PAD, shape), 0.0, 1.0))
    return out[0].astype(np.float32), out[1].astype(np.float32)


def _shadows(
    lay: CellLayout,
    installed: list[Installation],
    direction: tuple[float, float],
    window: BaseGeometry,
) -> list[BaseGeometry]:
    """Ground shadows of a layout's casters (and of its built farm rows) that reach the window."""
    geoms = [c.geometry for c in lay.casters] + [i.rows for i in installed if not i.rows.is_empty]
    heights = [c.height_m for c in lay.casters] + [
        i.row_height_m for i in installed if not i.rows.is_empty
    ]
    if not geoms:
        return []
    reach = float(np.hypot(*direction)) * max(heights) + 1.0
    near = shapely.dwithin(np.array(geoms, dtype=object), window, reach)
    idx = np.flatnonzero(near)
    if len(idx) == 0:
        return []
    cast = cast_shadows([geoms[k] for k in idx], [heights[k] for k in idx], direction)
    return [g for g in cast if not g.is_empty]


def render_layers(
    cell: str, day: date, settings: WorldSettings | None = None, **overrides: object
) -> SceneLayers:
    settings = settings or WorldSettings()
    if overrides:
        settings = settings.replace(**overrides)
    seed = settings.seed
    grid = scene_grid(cell)
    shape, transform, window = grid.shape(), grid.transform(), grid.box()
    cells = neighbourhood(cell)
    layouts: list[CellLayout] = [layout_in(c, settings.layout, grid.epsg) for c in cells]
    conditions = tuple(scene_conditions(c, day, seed, settings.scene_variation) for c in cells)
    installed_by = [
        [i for i in lay.installations if i.install_date <= day and i.outline.intersects(window)]
        for lay in layouts
    ]
    installed = [i for group in installed_by for i in group]
    background = fields(grid.bounds, seed, grid.epsg)
    paved = [rd.surface for rd in roads(grid.bounds, seed, grid.epsg)]

    # Per-surface tint, with pitched roof halves lit by their own cell's sun.
    surfaces = []
    for lay, cond in zip(layouts, conditions, strict=True):
        sun_az = np.radians(cond.sun.azimuth_deg + cond.north_in(grid.epsg))
        contrast = ROOF_SUN_CONTRAST * float(np.cos(np.radians(cond.sun.shadow_elevation_deg)))
        for s in lay.surfaces:
            if not s.geometry.intersects(window):
                continue
            lit = s.tint
            if s.aspect_deg is not None:
                lit *= 1.0 + contrast * float(np.cos(sun_az - np.radians(s.aspect_deg)))
            surfaces.append((s, lit))
    surfaces.sort(key=lambda st: st[0].layer)
    ground = [st for st in surfaces if st[0].layer == 0]
    above = [st for st in surfaces if st[0].layer > 0]

    def painted(value: str) -> list[tuple[BaseGeometry, float]]:
        cls = value == "cls"
        seq: list[tuple[BaseGeometry, float]] = [
            (f.polygon, f.cls if cls else f.tint) for f in background
        ]
        seq += [(s.geometry, s.cls if cls else t) for s, t in ground]
        seq += [(road, LandCover.ROAD if cls else 1.0) for road in paved]
        seq += [(s.geometry, s.cls if cls else t) for s, t in above]
        seq += [
            (i.ground, LandCover.FARM_GRASS if cls else i.tint)
            for i in installed
            if not i.ground.is_empty
        ]
        seq += [(i.footprint, i.cls if cls else i.tint) for i in installed]
        return seq

    classes = _burn(((g, int(v)) for g, v in painted("cls")), shape, transform, 0, "uint8")
    tint = _burn(painted("tint"), shape, transform, 1.0, "float32")
    shadow_shapes: list[BaseGeometry] = []
    for lay, cond, group in zip(layouts, conditions, installed_by, strict=True):
        direction = shadow_direction(cond.sun, cond.north_in(grid.epsg))
        shadow_shapes += _shadows(lay, group, direction, window)
    shadow = _burn([(g, 1) for g in shadow_shapes], shape, transform, 0, "uint8").astype(bool)
    detail = _burn(
        [(d.geometry, d.code) for lay in layouts for d in lay.details]
        + [(i.grid, FRAME) for i in installed]
        + [(i.glints, GLINT) for i in installed],
        shape,
        transform,
        0,
        "uint8",
    )
    clouds = [
        clouds_in(c, grid.epsg)
        for c in (cell_clouds(n, day, seed, settings.cloudy_dates_fraction) for n in cells)
        if c
    ]
    cloud, cloud_shadow = _cloud_fields(grid, clouds, seed, day)
    cell_mask = _burn([(cell_polygon_utm(cell, grid.epsg), 1)], shape, transform, 0, "uint8")
    owner = _burn(
        [(cell_polygon_utm(c, grid.epsg), k) for k, c in enumerate(cells) if k > 0],
        shape,
        transform,
        0,
        "uint8",
    )
    return SceneLayers(
        grid=grid,
        day=day,
        settings=settings,
        classes=classes,
        tint=tint,
        detail=detail,
        shadow=shadow,
        cloud=cloud,
        cloud_shadow=cloud_shadow,
        cell_mask=cell_mask.astype(bool),
        owner=owner,
        conditions=conditions,
        installed=tuple(i.install_id for i in installed),
        installations=tuple(installed),
    )
