"""The Sentinel-2 L2A rendering: 10/20 m reflectance as area averages of the VHR land cover.

Each S2 pixel is the mean, over its 32 x 32 (or 64 x 64) VHR pixels, of the class reflectances
(spectra.md), so mixtures such as a PV farm's panels and grass come out as real L2A shows them.
Clouds are mixed in at 10 m. SCL follows the L2A class codes from the same quantities the
scene-classification processor looks at (cloud opacity, shadow, water, NDVI). The season's
vegetation comes from the same table as the VHR scene's (spectra.seasonal_table); L2A being
atmospherically corrected, only small residuals of gain and haze vary by scene, and the sun's
elevation shows only through the shadows (conditions.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flywheel_core.world.landcover import N_CLASSES, LandCover
from flywheel_core.world.noise import key64, pixel_noise
from flywheel_core.world.render import SceneLayers
from flywheel_core.world.spectra import BAND_INDEX, CLOUD_REFLECTANCE, S2_BANDS, seasonal_table
from flywheel_core.world.vhr import CLOUD_SHADOW_DEPTH, CLOUD_THRESHOLD, shadow_factor

VHR_PER_10M = 32

# SCL codes (spectra.md)
SCL_NODATA, SCL_CLOUD_SHADOW, SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10
SCL_CLOUDS = (SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS)


@dataclass(frozen=True)
class S2Scene:
    reflectance: dict[str, np.ndarray]  # band name -> float32 at the band's resolution
    scl: np.ndarray  # uint8 at 20 m
    cloud_cover: float  # percent of the cell's 20 m pixels classified cloud


def block_mean(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // k, k, w // k, k).mean(axis=(1, 3), dtype=np.float32)


def render_s2(layers: SceneLayers) -> S2Scene:
    seed = layers.settings.seed
    classes, owner, conds = layers.classes, layers.owner, layers.conditions
    col10, row10 = layers.grid.origin_px(10.0)
    col20, row20 = layers.grid.origin_px(20.0)
    common = layers.tint * shadow_factor(layers)
    flat = owner.astype(np.intp) * N_CLASSES + classes
    tables = np.stack([seasonal_table(c.season) * np.float32(c.s2_gain) for c in conds])
    a10 = block_mean(layers.cloud, VHR_PER_10M)
    s10 = block_mean(layers.cloud_shadow, VHR_PER_10M)
    noise_std = block_mean(
        np.array([c.s2_noise for c in conds], dtype=np.float32)[owner], VHR_PER_10M
    )
    at10: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for band in S2_BANDS:
        b = BAND_INDEX[band.name]
        v = tables[:, :, b].ravel()[flat] * common
        haze = np.array([c.s2_haze[b] for c in conds], dtype=np.float32)
        m = block_mean(v, VHR_PER_10M) * (1.0 - CLOUD_SHADOW_DEPTH * s10)
        m += block_mean(haze[owner], VHR_PER_10M)
        m += a10 * (CLOUD_REFLECTANCE[b] - m)
        at10[band.name] = m
        std = noise_std
        if band.resolution_m == 20:
            m, std = block_mean(m, 2), block_mean(noise_std, 2)
            col, row = col20, row20
        else:
            col, row = col10, row10
        h, w = m.shape
        noise = pixel_noise(col, row, h, w, key64("s2", seed, layers.day, band.name))
        out[band.name] = np.clip(m + std * noise, 0.0, 1.5).astype(np.float32)
    scl = _scl(layers, at10, a10, s10)
    centres = layers.cell_mask[VHR_PER_10M :: 2 * VHR_PER_10M, VHR_PER_10M :: 2 * VHR_PER_10M]
    cover = float(100.0 * np.isin(scl[centres], SCL_CLOUDS).mean()) if centres.any() else 0.0
    return S2Scene(out, scl, cover)


def _scl(
    layers: SceneLayers, at10: dict[str, np.ndarray], a10: np.ndarray, s10: np.ndarray
) -> np.ndarray:
    red, nir = block_mean(at10["B04"], 2), block_mean(at10["B08"], 2)
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    water = block_mean((layers.classes == LandCover.WATER).astype(np.float32), 2 * VHR_PER_10M)
    cloud, shade = block_mean(a10, 2), block_mean(s10, 2)
    scl = np.full(ndvi.shape, SCL_NOT_VEGETATED, dtype=np.uint8)
    scl[ndvi > 0.4] = SCL_VEGETATION
    scl[water > 0.5] = SCL_WATER
    scl[shade > 0.2] = SCL_CLOUD_SHADOW
    scl[cloud >= CLOUD_THRESHOLD] = SCL_CIRRUS
    scl[cloud >= 0.3] = SCL_CLOUD_MEDIUM
    scl[cloud >= 0.6] = SCL_CLOUD_HIGH
    return scl
