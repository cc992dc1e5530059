"""The VHR spectral PV score under a detection, for the backfill's spectral-agreement rule."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.mask import mask as clip_mask
from shapely.geometry.base import BaseGeometry

from flywheel_core.masks.backends.classical import pv_score


def mean_pv_score(src: rasterio.io.DatasetReader, geometry_local: BaseGeometry) -> float | None:
    """Mean (B − R) + ½·(B − NIR) over the pixels inside a geometry in the scene's CRS."""
    if src.count < 3:
        return None
    data, _ = clip_mask(src, [geometry_local], crop=True, filled=False)
    inside = ~np.ma.getmaskarray(data)[0]
    if not inside.any():
        return None
    pixels = np.moveaxis(np.ma.getdata(data), 0, -1)[inside]
    return float(pv_score(pixels[None, ...]).mean())
