"""Sentinel-2 L2A bands as surface reflectance.

L2A digital numbers need the product's BOA_ADD_OFFSET (-1000 from processing baseline 04.00,
0 before) and quantification value; both are read from the band file's metadata, never assumed,
so the same code reads real products and the synthetic world.
"""

from __future__ import annotations

import numpy as np
import rasterio

BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
BANDS = BANDS_10M + BANDS_20M

SCL_NO_DATA = 0
SCL_CLOUD_SHADOW = 3
SCL_CLOUDS = (8, 9, 10)


def radiometry(src: rasterio.io.DatasetReader) -> tuple[float, float]:
    """(offset, quantification) of a band file; none given means baseline < 04.00 (offset 0)."""
    tags = src.tags()
    offset = float(tags.get("BOA_ADD_OFFSET", 0.0))
    quant = float(tags.get("BOA_QUANTIFICATION_VALUE", 10000.0))
    if quant <= 0:
        raise ValueError(f"{src.name}: BOA_QUANTIFICATION_VALUE must be positive, got {quant}")
    return offset, quant


def to_reflectance(
    dn: np.ndarray, offset: float, quant: float, nodata: float | None = 0
) -> np.ndarray:
    """Reflectance from DNs; nodata pixels become NaN for the caller to mask."""
    refl = (dn.astype(np.float32) + np.float32(offset)) / np.float32(quant)
    if nodata is not None:
        refl[dn == nodata] = np.nan
    return refl


def cloud_fractions(scl: np.ndarray) -> dict[str, float]:
    """Cloud, cloud-shadow and no-data fractions of an SCL array (clouds over valid pixels)."""
    total = scl.size
    valid = int(np.count_nonzero(scl != SCL_NO_DATA))
    clouds = int(np.isin(scl, SCL_CLOUDS).sum())
    shadow = int(np.count_nonzero(scl == SCL_CLOUD_SHADOW))
    return {
        "cloud_fraction": clouds / valid if valid else 1.0,
        "cloud_shadow_fraction": shadow / valid if valid else 0.0,
        "nodata_fraction": 1.0 - valid / total if total else 1.0,
    }
