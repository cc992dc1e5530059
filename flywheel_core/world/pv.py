"""PV array geometry: modules, rows, frame lines and glints, in an object's local frame.

Sizes from spectra.md: crystalline (poly/mono) modules ≈ 1.7 x 1.0 m; thin-film (CdTe, First
Solar Series 6 class) frameless modules ≈ 2.0 x 1.2 m (ESTIMATE from datasheet sizes);
residential systems ≈ 33 m²; commercial 200–1000 m²; ground-mounted rows at a ground-coverage
ratio of ≈ 0.3. Module borders are kept as geometry so the VHR scene can draw the module grid
(about every metre) that makes panels look like panels, and that look-alikes only imitate; how
strongly a border shows is a property of the panel type (spectra.VHR_DETAIL_LIFT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, Polygon, box
from shapely.geometry.base import BaseGeometry

MODULE_SHORT_M = 1.0
MODULE_LONG_M = 1.7
# (short, long) side of a module per panel type.
MODULE_SIZES_M: dict[str, tuple[float, float]] = {
    "poly": (MODULE_SHORT_M, MODULE_LONG_M),
    "mono": (MODULE_SHORT_M, MODULE_LONG_M),
    "thin_film": (1.2, 2.0),
}
GROUND_GCR = 0.3
GROUND_ROW_DEPTH_M = 2 * MODULE_LONG_M  # two modules in portrait per table
GROUND_ROW_HEIGHT_M = 1.6  # the upper edge of a tilted table, for its shadow
FENCE_SETBACK_M = 4.0
GLINT_PROBABILITY = 0.3

Module = tuple[float, float]


@dataclass(frozen=True)
class PanelLayout:
    """Panels of one installation in local metres; `rows` are the blocks that cast shadows."""

    footprint: BaseGeometry
    rows: tuple[Polygon, ...]
    grid: MultiLineString
    glints: BaseGeometry
    n_panels: int


def _block(
    x0: float, y0: float, ncols: int, nrows: int, mod_w: float, mod_h: float
) -> tuple[Polygon, list[LineString]]:
    """A rectangle of ncols x nrows modules and its interior frame lines."""
    x1, y1 = x0 + ncols * mod_w, y0 + nrows * mod_h
    lines = [LineString([(x0 + k * mod_w, y0), (x0 + k * mod_w, y1)]) for k in range(1, ncols)]
    lines += [LineString([(x0, y0 + k * mod_h), (x1, y0 + k * mod_h)]) for k in range(1, nrows)]
    return box(x0, y0, x1, y1), lines


def _glints(blocks: list[tuple[Polygon, float, float]], rng: np.random.Generator) -> BaseGeometry:
    """A few saturated modules (sun glint) on some installations only."""
    if rng.random() >= GLINT_PROBABILITY:
        return Polygon()
    out = []
    for _ in range(int(rng.integers(1, 4))):
        block, mod_w, mod_h = blocks[int(rng.integers(len(blocks)))]
        minx, miny, maxx, maxy = block.bounds
        cx = minx + mod_w * int(rng.integers(max(1, round((maxx - minx) / mod_w))))
        cy = miny + mod_h * int(rng.integers(max(1, round((maxy - miny) / mod_h))))
        out.append(box(cx, cy, cx + mod_w, cy + mod_h))
    return shapely.union_all(out)


def _assemble(
    blocks: list[tuple[Polygon, float, float]], lines: list[LineString], rng: np.random.Generator
) -> PanelLayout:
    rows = tuple(b for b, _, _ in blocks)
    n_panels = sum(round(b.area / (w * h)) for b, w, h in blocks)
    footprint = rows[0] if len(rows) == 1 else shapely.MultiPolygon(list(rows))
    return PanelLayout(footprint, rows, MultiLineString(lines), _glints(blocks, rng), n_panels)


def residential(
    roof_w: float,
    roof_l: float,
    sunny_side: int,
    target_panels: int,
    rng: np.random.Generator,
    module: Module = (MODULE_SHORT_M, MODULE_LONG_M),
) -> PanelLayout | None:
    """Portrait modules on the sun-facing half of a pitched roof centred on the origin.

    The ridge runs along local x; `sunny_side` (+1 or -1) is the local-y half facing the equator.
    """
    short, long = module
    avail_x, avail_y = roof_w - 1.2, roof_l / 2 - 0.8
    nrows = min(3, math.floor(avail_y / long))
    max_cols = math.floor(avail_x / short)
    if nrows < 1 or max_cols < 4:
        return None
    ncols = min(max_cols, math.ceil(target_panels / nrows))
    width, depth = ncols * short, nrows * long
    y_mid = sunny_side * roof_l / 4
    block, lines = _block(-width / 2, y_mid - depth / 2, ncols, nrows, short, long)
    return _assemble([(block, short, long)], lines, rng)


def commercial(
    roof_w: float,
    roof_l: float,
    target_area_m2: float,
    rng: np.random.Generator,
    module: Module = (MODULE_SHORT_M, MODULE_LONG_M),
) -> PanelLayout | None:
    """Low-tilt rows (two landscape modules deep, 3 m pitch) on a flat roof around the origin."""
    short, long = module
    setback, depth = 1.5, 2 * short
    pitch = 3.0 * short / MODULE_SHORT_M
    ncols = math.floor((roof_w - 2 * setback) / long)
    max_rows = math.floor((roof_l - 2 * setback - depth) / pitch) + 1
    if ncols < 4 or max_rows < 1:
        return None
    row_area = ncols * long * depth
    nrows = min(max_rows, max(1, round(target_area_m2 / row_area)))
    if nrows * row_area < 150.0:
        return None
    x0 = -ncols * long / 2
    y0 = -((nrows - 1) * pitch + depth) / 2
    blocks, lines = [], []
    for k in range(nrows):
        block, ls = _block(x0, y0 + k * pitch, ncols, 2, long, short)
        blocks.append((block, long, short))
        lines += ls
    return _assemble(blocks, lines, rng)


def ground(
    fence_w: float,
    fence_h: float,
    rng: np.random.Generator,
    module: Module = (MODULE_SHORT_M, MODULE_LONG_M),
) -> PanelLayout | None:
    """Rows of tables along local x inside a fence centred on the origin, at GCR ≈ 0.3."""
    short, long = module
    row_depth = 2 * long
    pitch = row_depth / GROUND_GCR
    ncols = math.floor((fence_w - 2 * FENCE_SETBACK_M) / short)
    nrows = math.floor((fence_h - 2 * FENCE_SETBACK_M - row_depth) / pitch) + 1
    if ncols < 10 or nrows < 2:
        return None
    x0 = -ncols * short / 2
    y0 = -((nrows - 1) * pitch + row_depth) / 2
    blocks, lines = [], []
    for k in range(nrows):
        block, ls = _block(x0, y0 + k * pitch, ncols, 2, short, long)
        blocks.append((block, short, long))
        lines += ls
    return _assemble(blocks, lines, rng)
