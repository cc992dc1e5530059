"""The VHR (0.3125 m, 8-bit R, G, B, NIR) rendering of a scene's land cover."""

from __future__ import annotations

import numpy as np

from flywheel_core.imagery.landcover import GROUND, PV, VEGETATION, LandCover
from flywheel_core.imagery.noise import key64, pixel_noise, value_noise
from flywheel_core.imagery.render import FRAME, GLINT, RIB, SEAM, SceneLayers
from flywheel_core.imagery.spectra import (
    VHR_BANDS,
    VHR_CLOUD,
    VHR_FRAME_LIFT,
    VHR_GLINT,
    seasonal_factors,
    texture_table,
    vhr_table,
)

SHADOW_FACTOR = 0.45  # cast shadows keep skylight: darker, not black
CLOUD_SHADOW_DEPTH = 0.55
SENSOR_NOISE_DN = 2.0
CLOUD_THRESHOLD = 0.08  # opacity from which a pixel counts as cloud (SCL thin cirrus, too)


def isin(classes: np.ndarray, members: frozenset[LandCover]) -> np.ndarray:
    return np.isin(classes, np.array(sorted(int(c) for c in members), dtype=np.uint8))


def shadow_factor(layers: SceneLayers) -> np.ndarray:
    shaded = layers.shadow & isin(layers.classes, GROUND)
    return np.where(shaded, np.float32(SHADOW_FACTOR), np.float32(1.0))


def render_vhr(layers: SceneLayers, seed: int) -> np.ndarray:
    """(4, rows, cols) uint8: the same ground in every scene, with PV, clouds and noise by date."""
    classes, detail = layers.classes, layers.detail
    h, w = classes.shape
    col0, row0 = layers.grid.origin_px()
    texture = 0.55 * value_noise(col0, row0, h, w, 4, key64("tex-fine", seed))
    texture += 0.45 * value_noise(col0, row0, h, w, 32, key64("tex-coarse", seed))
    common = layers.tint * (1.0 + texture_table()[classes] * texture) * shadow_factor(layers)
    vis, nir = seasonal_factors(layers.day.timetuple().tm_yday)
    veg = isin(classes, VEGETATION)
    pv = isin(classes, PV)
    frame = (detail == FRAME) & pv
    seam = (detail == SEAM) & (classes == LandCover.ROOF_DARK)
    rib = (detail == RIB) & (classes == LandCover.GREENHOUSE)
    glint = (detail == GLINT) & pv
    table = vhr_table()
    out = np.empty((len(VHR_BANDS), h, w), dtype=np.uint8)
    for b in range(len(VHR_BANDS)):
        v = table[classes, b] * common
        v[veg] *= nir if VHR_BANDS[b] == "nir" else vis
        v[frame] += VHR_FRAME_LIFT[b]
        v[seam] += 0.6 * VHR_FRAME_LIFT[b]
        v[rib] *= 0.85
        v[glint] = VHR_GLINT[b]
        v *= 1.0 - CLOUD_SHADOW_DEPTH * layers.cloud_shadow
        v += layers.cloud * (VHR_CLOUD[b] - v)
        v += SENSOR_NOISE_DN * pixel_noise(col0, row0, h, w, key64("vhr", seed, layers.day, b))
        out[b] = np.clip(np.rint(v), 0, 255).astype(np.uint8)
    return out


def vhr_cloud_cover(layers: SceneLayers) -> float:
    """Percent of the cell's own pixels under cloud."""
    inside = layers.cell_mask
    return float(100.0 * (layers.cloud[inside] >= CLOUD_THRESHOLD).mean()) if inside.any() else 0.0
