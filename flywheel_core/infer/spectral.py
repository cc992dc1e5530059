"""The VHR spectral PV score under a detection (its median), for the spectral-agreement rule."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.mask import mask as clip_mask
from shapely.geometry.base import BaseGeometry

from flywheel_core.masks.backends.classical import pv_score


def median_pv_score(src: rasterio.io.DatasetReader, geometry_local: BaseGeometry) -> float | None:
    """Median (B − R) + ½·(B − NIR) over the pixels inside a geometry in the scene's CRS: the
    median, as the calibration measures labelled panels, so a detection's blurred edge pixels on
    the roof around it do not pull it down."""
    if src.count < 3:
        return None
    data, _ = clip_mask(src, [geometry_local], crop=True, filled=False)
    inside = ~np.ma.getmaskarray(data)[0]
    if not inside.any():
        return None
    pixels = np.moveaxis(np.ma.getdata(data), 0, -1)[inside]
    return float(np.median(pv_score(pixels[None, ...])))
