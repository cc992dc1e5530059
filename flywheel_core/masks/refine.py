"""The refinement every back end's raw mask goes through, so back ends differ only in what they see.

Closing bridges the frame lines between modules, hole filling and a minimum area remove speckle,
and the mask is vectorized, simplified and rasterized again, so the stored mask and the stored
polygon are the same shape.

Most of it runs on the mask's bounding box grown by one pixel (`bbox_window`), not on the whole
chip: a panel covers a few hundred of a chip's 65 536 pixels, and every step is exactly local
to that box, so the result is the same as on the full chip (flywheel_tests/masks/
test_factory_equivalence.py checks it against the full-chip computation):
- closing with disk(r): the window is padded with r + 1 zeros exactly as the chip was, the
  dilation reaches at most r pixels past the mask's box (inside the padding) and the closed
  mask stays inside the box (the disk holds (±r, 0) and (0, ±r), so a pixel left of the box
  always misses the dilation r pixels further left);
- hole filling: a background pixel on the window's edge has a neighbour outside the window
  (background, and joined to the chip's edge along its row or column) or sits on the chip's
  edge, so a background pixel reaches the window's border exactly when it reaches the chip's;
- components and their sizes see the same pixels; polygonize gets the window's integer offset
  as its transform, so the polygons have the chip's (integer) coordinates.
The simplified polygons are rasterized on the full chip, all of a chip's at once
(`rasterize_each`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.features import MergeAlg, rasterize, shapes
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

CROSS = ndimage.generate_binary_structure(2, 1)
EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class RefineSettings:
    closing_m: float = 0.6
    min_area_m2: float = 2.0
    simplify_m: float = 0.3


def disk(radius_px: int) -> np.ndarray:
    r = max(int(radius_px), 0)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def bbox_window(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the mask's bounding box grown by `margin` and clipped to the
    array; None when the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, h)),
        slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, w)),
    )


def vectorize(mask: np.ndarray, transform: Affine | None = None) -> Polygon | MultiPolygon | None:
    """Pixel-space polygons of a boolean mask (x = column, y = row); `transform` places a
    window's pixels in the chip (an integer translation).

    GDAL traces the background's polygons too (they are dropped): that is cheaper than giving
    it the mask as a second band to skip them, and each polygon of 1s comes out the same
    either way (flywheel_tests/masks/test_factory_equivalence.py checks it)."""
    if not mask.any():
        return None
    found = shapes(mask.astype(np.uint8), transform=transform or Affine.identity())
    polys = [shape(g) for g, v in found if v == 1]
    merged = unary_union(polys)
    return merged if not merged.is_empty else None


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`scipy.ndimage.binary_fill_holes` with its default (4-connected) structure, in one
    labelling pass: background components that touch the border stay background, every other
    one is a hole. scipy's version grows the outside from the border one step per iteration,
    several times slower on a large mask (the test checks the two agree)."""
    background, n = ndimage.label(~mask, structure=CROSS)
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the mask itself
    return ~outside[background]


SHIFTED_CLOSING_PX = 4096  # above this many pixels `closing` ORs and ANDs shifted views


def closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """`scipy.ndimage.binary_closing(mask, structure=disk(radius))` (zeros beyond the edges).

    On a large window scipy's per-pixel loop over the structuring element is several times
    slower than the same dilation and erosion written as an OR (then an AND) of the mask
    shifted by each of the disk's offsets (the disk is symmetric, so its reflection is itself);
    on a small one numpy's per-call cost dominates and scipy is kept.
    """
    structure = disk(radius)
    if mask.size <= SHIFTED_CLOSING_PX:
        return ndimage.binary_closing(mask, structure=structure)
    r = radius
    h, w = mask.shape
    offsets = [(int(dy) - r, int(dx) - r) for dy, dx in zip(*np.nonzero(structure), strict=True)]
    padded = np.pad(mask, r)
    dilated = np.zeros_like(mask)
    for dy, dx in offsets:
        dilated |= padded[r - dy : r - dy + h, r - dx : r - dx + w]
    padded = np.pad(dilated, r)
    eroded = np.ones_like(mask)
    for dy, dx in offsets:
        eroded &= padded[r + dy : r + dy + h, r + dx : r + dx + w]
    return eroded


def _clean(out: np.ndarray, radius: int, gsd_m: float, min_area_m2: float) -> np.ndarray:
    """Closing, hole filling and the minimum component area, on one (window of a) mask."""
    if radius > 0 and out.any():
        pad = radius + 1
        out = closing(np.pad(out, pad), radius)[pad:-pad, pad:-pad]
    out = fill_holes(out)
    labels, n = ndimage.label(out, structure=EIGHT)
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # pixels per component
        keep = sizes * gsd_m * gsd_m >= min_area_m2
        if not keep.all():
            out = np.concatenate([[False], keep])[labels]
    return out


def _burns_once(geometry: BaseGeometry) -> bool:
    """Whether GDAL burns each pixel at most once for `geometry`: it fills a polygon's rings in
    one pass, but the parts of a multipolygon one after the other, so parts that overlap (an
    invalid multipolygon, e.g. after simplification) burn their shared pixels twice."""
    return geometry.geom_type == "Polygon" or bool(geometry.is_valid)


def rasterize_each(geometries: list[BaseGeometry], out_shape: tuple[int, int]) -> list[np.ndarray]:
    """One boolean raster per geometry, each what `rasterize([(geometry, 1)], out_shape)`
    gives on its own, with one GDAL call per 8 geometries instead of one each (a call costs far
    more in GDAL set-up than in burning a chip): geometry i burns the value 2**i into a uint8
    raster with merge "add", so overlapping geometries keep their own bit. That needs each
    geometry to burn a pixel at most once (`_burns_once`); the others get a call of their own.
    """
    out: list[np.ndarray | None] = [None] * len(geometries)
    batched = [i for i, g in enumerate(geometries) if _burns_once(g)]
    for start in range(0, len(batched), 8):
        chunk = batched[start : start + 8]
        burned = rasterize(
            [(geometries[k], 1 << bit) for bit, k in enumerate(chunk)],
            out_shape=out_shape,
            dtype="uint8",
            merge_alg=MergeAlg.add,
        )
        for bit, k in enumerate(chunk):
            out[k] = (burned & np.uint8(1 << bit)).astype(bool)
    for k, g in enumerate(geometries):
        if out[k] is None:
            out[k] = rasterize([(g, 1)], out_shape=out_shape, dtype="uint8").astype(bool)
    return [r for r in out if r is not None]


def refine_polygon(
    mask: np.ndarray, gsd_m: float, settings: RefineSettings
) -> Polygon | MultiPolygon | None:
    """The simplified pixel-space polygon of the cleaned mask (None when nothing is left)."""
    radius = round(settings.closing_m / gsd_m)
    window = bbox_window(mask, 1)  # why one pixel is enough: the module's docstring
    if window is None:
        return None
    rows, cols = window
    out = _clean(mask[window].astype(bool), radius, gsd_m, settings.min_area_m2)
    polygon = vectorize(out, Affine.translation(cols.start, rows.start))
    if polygon is None:
        return None
    simple = polygon.simplify(settings.simplify_m / gsd_m, preserve_topology=True)
    return None if simple.is_empty else simple


def refine_many(
    masks: list[np.ndarray], gsd_m: float, settings: RefineSettings
) -> list[tuple[np.ndarray, Polygon | MultiPolygon | None]]:
    """`refine` of every mask of one chip, their polygons rasterized together (`rasterize_each`)."""
    polygons = [refine_polygon(m, gsd_m, settings) for m in masks]
    drawn = [p for p in polygons if p is not None]
    rasters = iter(rasterize_each(drawn, masks[0].shape if masks else (0, 0)))
    return [
        (next(rasters) if p is not None else np.zeros(m.shape, dtype=bool), p)
        for m, p in zip(masks, polygons, strict=True)
    ]


def refine(
    mask: np.ndarray, gsd_m: float, settings: RefineSettings
) -> tuple[np.ndarray, Polygon | MultiPolygon | None]:
    """(refined mask, its simplified pixel-space polygon); an empty result is (all False, None)."""
    return refine_many([mask], gsd_m, settings)[0]
