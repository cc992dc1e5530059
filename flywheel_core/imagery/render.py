"""Rasterising a scene's land cover: the layers both sensors are rendered from.

A scene shows its cell plus a margin, so it renders the position-keyed background and the
layouts (and clouds) of the cell and its 8 neighbours; each layer is burnt in painting order
with `rasterio.features.rasterize`, never pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
from rasterio.features import rasterize
from rasterio.transform import Affine
from scipy.ndimage import gaussian_filter
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.s2 import parse_token
from flywheel_core.imagery.clouds import cell_clouds, clouds_in
from flywheel_core.imagery.grid import VHR_GSD_M, SceneGrid, cell_polygon_utm, scene_grid
from flywheel_core.imagery.ground import fields, roads
from flywheel_core.imagery.landcover import LandCover
from flywheel_core.imagery.layout import layout_in
from flywheel_core.imagery.noise import key64, value_noise
from flywheel_core.imagery.objects import CellLayout

# Codes of the `detail` layer: thin features drawn over an object's colour.
FRAME, GLINT, SEAM, RIB = 1, 2, 3, 4
CLOUD_STEP = 8  # clouds are rasterised at 8 VHR pixels (2.5 m), then blurred and upsampled
CLOUD_PAD = 8


@dataclass(frozen=True)
class SceneLayers:
    grid: SceneGrid
    day: date
    classes: np.ndarray  # uint8 LandCover codes
    tint: np.ndarray  # float32 per-object brightness
    detail: np.ndarray  # uint8 FRAME / GLINT / SEAM / RIB
    shadow: np.ndarray  # bool: ground in a cast shadow
    cloud: np.ndarray  # float32 cloud opacity 0..1
    cloud_shadow: np.ndarray  # float32 cloud-shadow strength 0..1
    cell_mask: np.ndarray  # bool: pixel centre inside the scene's own cell
    installed: tuple[str, ...]  # install ids visible in the scene (any of the 9 cells)


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


def render_layers(cell: str, day: date, seed: int, cloudy_fraction: float) -> SceneLayers:
    grid = scene_grid(cell)
    shape, transform, window = grid.shape(), grid.transform(), grid.box()
    layouts: list[CellLayout] = [layout_in(c, seed, grid.epsg) for c in neighbourhood(cell)]
    installed = [
        i
        for lay in layouts
        for i in lay.installations
        if i.install_date <= day and i.outline.intersects(window)
    ]
    background = fields(grid.bounds, seed, grid.epsg)
    paved = [rd.surface for rd in roads(grid.bounds, seed, grid.epsg)]
    surfaces = sorted(
        (s for lay in layouts for s in lay.surfaces if s.geometry.intersects(window)),
        key=lambda s: s.layer,
    )
    ground = [s for s in surfaces if s.layer == 0]
    above = [s for s in surfaces if s.layer > 0]

    def painted(value: str) -> list[tuple[BaseGeometry, float]]:
        seq: list[tuple[BaseGeometry, float]] = [(f.polygon, getattr(f, value)) for f in background]
        seq += [(s.geometry, getattr(s, value)) for s in ground]
        seq += [(road, LandCover.ROAD if value == "cls" else 1.0) for road in paved]
        seq += [(s.geometry, getattr(s, value)) for s in above]
        seq += [
            (i.ground, LandCover.FARM_GRASS if value == "cls" else i.tint)
            for i in installed
            if not i.ground.is_empty
        ]
        seq += [(i.footprint, getattr(i, value)) for i in installed]
        return seq

    classes = _burn(((g, int(v)) for g, v in painted("cls")), shape, transform, 0, "uint8")
    tint = _burn(painted("tint"), shape, transform, 1.0, "float32")
    shadow = _burn(
        [(g, 1) for lay in layouts for g in lay.shadows] + [(i.shadow, 1) for i in installed],
        shape,
        transform,
        0,
        "uint8",
    ).astype(bool)
    detail = _burn(
        [(g, SEAM) for lay in layouts for g in lay.seams]
        + [(g, RIB) for lay in layouts for g in lay.ribs]
        + [(i.grid, FRAME) for i in installed]
        + [(i.glints, GLINT) for i in installed],
        shape,
        transform,
        0,
        "uint8",
    )
    clouds = [
        clouds_in(c, grid.epsg)
        for c in (cell_clouds(n, day, seed, cloudy_fraction) for n in neighbourhood(cell))
        if c
    ]
    cloud, cloud_shadow = _cloud_fields(grid, clouds, seed, day)
    cell_mask = _burn([(cell_polygon_utm(cell, grid.epsg), 1)], shape, transform, 0, "uint8")
    return SceneLayers(
        grid=grid,
        day=day,
        classes=classes,
        tint=tint,
        detail=detail,
        shadow=shadow,
        cloud=cloud,
        cloud_shadow=cloud_shadow,
        cell_mask=cell_mask.astype(bool),
        installed=tuple(i.install_id for i in installed),
    )
