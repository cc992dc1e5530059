"""The refinement every back end's raw mask goes through, so back ends differ only in what they see.

Closing bridges the frame lines between modules, hole filling and a minimum area remove speckle,
and the mask is vectorized, simplified and rasterized again, so the stored mask and the stored
polygon are the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.features import rasterize, shapes
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.ops import unary_union


@dataclass(frozen=True)
class RefineSettings:
    closing_m: float = 0.6
    min_area_m2: float = 2.0
    simplify_m: float = 0.3


def disk(radius_px: int) -> np.ndarray:
    r = max(int(radius_px), 0)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r


def vectorize(mask: np.ndarray) -> Polygon | MultiPolygon | None:
    """Pixel-space polygons of a boolean mask (x = column, y = row)."""
    if not mask.any():
        return None
    polys = [shape(g) for g, v in shapes(mask.astype(np.uint8), mask=mask) if v == 1]
    merged = unary_union(polys)
    return merged if not merged.is_empty else None


def refine(
    mask: np.ndarray, gsd_m: float, settings: RefineSettings
) -> tuple[np.ndarray, Polygon | MultiPolygon | None]:
    """(refined mask, its simplified pixel-space polygon); an empty result is (all False, None)."""
    out = mask.astype(bool)
    radius = round(settings.closing_m / gsd_m)
    if radius > 0 and out.any():
        pad = radius + 1
        padded = np.pad(out, pad)
        out = ndimage.binary_closing(padded, structure=disk(radius))[pad:-pad, pad:-pad]
    out = ndimage.binary_fill_holes(out)
    labels, n = ndimage.label(out, structure=np.ones((3, 3), bool))
    if n:
        sizes = ndimage.sum(out, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes * gsd_m * gsd_m >= settings.min_area_m2) + 1
        out = np.isin(labels, keep)
    polygon = vectorize(out)
    if polygon is None:
        return np.zeros_like(out), None
    simple = polygon.simplify(settings.simplify_m / gsd_m, preserve_topology=True)
    if simple.is_empty:
        return np.zeros_like(out), None
    refined = rasterize([(simple, 1)], out_shape=out.shape, dtype="uint8").astype(bool)
    return refined, simple
