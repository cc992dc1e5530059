"""Spectral indices for Sentinel-2 chips, with the published formulas (see shared/spectra.md).

No index separates PV alone: NDPVI scores water highest and dark roofs close behind. The project's
`pvi` is therefore NDPVI with open water (MNDWI > 0) forced to -1; it is a documented feature
channel for models and acceptance rules, not a classifier, and carries no threshold.
"""

from __future__ import annotations

import numpy as np

INDEX_NAMES = ("ndvi", "ndbi", "ndwi", "mndwi", "bsi", "ndpvi", "nbd", "pvi")


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalized difference that yields 0, not NaN or inf, where both bands are 0."""
    den = a + b
    out = np.zeros_like(a, dtype=np.float32)
    np.divide(a - b, den, out=out, where=np.abs(den) > 1e-6)
    return np.clip(out, -1.0, 1.0)


def compute_indices(bands: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All indices from surface reflectance bands keyed B02..B12 (float arrays, same shape)."""
    b02, b03, b04, b08, b11 = (
        bands[k].astype(np.float32) for k in ("B02", "B03", "B04", "B08", "B11")
    )
    mndwi = _nd(b03, b11)
    ndpvi = _nd(0.5 * b02, b08)
    out = {
        "ndvi": _nd(b08, b04),
        "ndbi": _nd(b11, b08),
        "ndwi": _nd(b03, b08),
        "mndwi": mndwi,
        "bsi": _nd(b11 + b04, b08 + b02),
        "ndpvi": ndpvi,
        "nbd": _nd(b02, (b04 + b03) / 2.0),
        "pvi": np.where(mndwi > 0.0, np.float32(-1.0), ndpvi).astype(np.float32),
    }
    return out
