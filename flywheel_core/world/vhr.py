"""The VHR (8-bit R, G, B, NIR) rendering of a scene's land cover, at any GSD of 0.3-1.0 m.

Radiometry, per pixel, in the conditions of the cell that holds the pixel (conditions.py):
surface reflectance (the season's table x per-object tint x texture x cast and cloud shadows)
x illumination x colour balance, plus haze, through the camera stretch to DN; then detail lines
(module frames, seams, tubes, markings), glints and clouds in DN. This is rendered on the base
0.3125 m grid of the land-cover layers, area-averaged onto the delivered grid when `gsd_m`
differs (exact overlap weights, separable, on the zone-wide lattice), and only then gets its
sensor noise, so the noise is per delivered pixel as a real sensor's is.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from flywheel_core.world.grid import VHR_GSD_M, SceneGrid
from flywheel_core.world.landcover import GROUND, N_CLASSES, PV
from flywheel_core.world.noise import key64, pixel_noise, value_noise
from flywheel_core.world.render import GLINT, SceneLayers
from flywheel_core.world.spectra import (
    VHR_BANDS,
    VHR_CLOUD_REFLECTANCE,
    VHR_FRAME_LIFT,
    VHR_GLINT,
    detail_tables,
    grain_table,
    seasonal_table,
    texture_table,
    vhr_dn_gain,
    vhr_source_bands,
    vhr_stretch,
)

SHADOW_FACTOR = 0.45  # cast shadows keep skylight: darker, not black
CLOUD_SHADOW_DEPTH = 0.55
CLOUD_THRESHOLD = 0.08  # opacity from which a pixel counts as cloud (SCL thin cirrus, too)


def isin(classes: np.ndarray, members: frozenset) -> np.ndarray:
    return np.isin(classes, np.array(sorted(int(c) for c in members), dtype=np.uint8))


def shadow_factor(layers: SceneLayers) -> np.ndarray:
    shaded = layers.shadow & isin(layers.classes, GROUND)
    return np.where(shaded, np.float32(SHADOW_FACTOR), np.float32(1.0))


def _owner_index(layers: SceneLayers) -> np.ndarray:
    """Flat index (owner cell, class) into per-cell class tables."""
    return layers.owner.astype(np.intp) * N_CLASSES + layers.classes


def render_base(layers: SceneLayers) -> tuple[np.ndarray, np.ndarray]:
    """(4, rows, cols) float32 DN on the base grid, noise-free, and the noise std per pixel."""
    seed = layers.settings.seed
    classes, detail, owner = layers.classes, layers.detail, layers.owner
    h, w = classes.shape
    col0, row0 = layers.grid.origin_px()
    texture = 0.55 * value_noise(col0, row0, h, w, 4, key64("tex-fine", seed))
    texture += 0.45 * value_noise(col0, row0, h, w, 32, key64("tex-coarse", seed))
    grain_amp = grain_table()[classes]
    # Cast and cloud shadows darken the surface and the details drawn on it alike.
    light = shadow_factor(layers) * (1.0 - CLOUD_SHADOW_DEPTH * layers.cloud_shadow)
    common = layers.tint * (1.0 + texture_table()[classes] * texture) * light
    if grain_amp.any():
        common *= 1.0 + grain_amp * pixel_noise(col0, row0, h, w, key64("pv-grain", seed))
    conds = layers.conditions
    src = vhr_source_bands()
    tables = np.stack([seasonal_table(c.season)[:, src] for c in conds])  # (cells, class, band)
    flat = _owner_index(layers)
    lift_t, gain_t = detail_tables()
    lift = lift_t[classes, detail]
    gain = gain_t[classes, detail]
    has_lift, has_gain = bool(lift.any()), bool((gain != 1.0).any())
    has_cloud = bool(layers.cloud.any())
    glint = (detail == GLINT) & isin(classes, PV)
    dn_gain = np.array([vhr_dn_gain(c.illumination) for c in conds], dtype=np.float32)[owner]
    out = np.empty((len(VHR_BANDS), h, w), dtype=np.float32)
    for b in range(len(VHR_BANDS)):
        scale = np.array([c.illumination * c.colour_balance[b] for c in conds], np.float32)
        refl = (tables[:, :, b] * scale[:, None]).ravel()[flat] * common
        refl += np.array([c.haze[b] for c in conds], dtype=np.float32)[owner]
        v = vhr_stretch(refl, b)
        if has_lift:
            v += lift * (VHR_FRAME_LIFT[b] * dn_gain * light)
        if has_gain:
            v *= gain
        v[glint] = VHR_GLINT[b]
        if has_cloud:
            cloud_refl = [
                VHR_CLOUD_REFLECTANCE[b] * c.illumination * c.colour_balance[b] + c.haze[b]
                for c in conds
            ]
            cloud_dn = vhr_stretch(np.array(cloud_refl, dtype=np.float32), b)[owner]
            v += layers.cloud * (cloud_dn - v)
        out[b] = v
    noise_std = np.array([c.noise_dn for c in conds], dtype=np.float32)[owner]
    return out, noise_std


def _area_weights(n_src: int, src0: int, n_dst: int, dst0: int, gsd_m: float) -> sparse.csr_matrix:
    """(n_dst, n_src) exact overlap weights of target pixels over base pixels along one axis.

    Indices are global lattice positions (src0, dst0 = the first pixel's), so a target pixel
    gets the same weights in every scene that holds it.
    """
    ratio = gsd_m / VHR_GSD_M
    j = np.arange(n_dst, dtype=np.float64)
    lo = (dst0 + j) * ratio  # target pixel edges in base-pixel units, global
    hi = (dst0 + j + 1) * ratio
    rows, cols, vals = [], [], []
    for k in range(int(np.ceil(ratio)) + 2):
        base = np.floor(lo).astype(np.int64) + k
        overlap = np.minimum(hi, base + 1) - np.maximum(lo, base)
        keep = overlap > 1e-9
        rows.append(j[keep].astype(np.int64))
        cols.append(base[keep] - src0)
        vals.append(overlap[keep] / ratio)
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    if c.size and (c.min() < 0 or c.max() >= n_src):
        raise ValueError("target grid reaches outside the base grid")
    m = sparse.csr_matrix((v.astype(np.float32), (r, c)), shape=(n_dst, n_src))
    m.sort_indices()
    return m


def resample(stack: np.ndarray, src: SceneGrid, dst: SceneGrid, gsd_m: float) -> np.ndarray:
    """Area-average a (bands, rows, cols) base-grid stack onto the `gsd_m` grid `dst`."""
    scol0, srow0 = src.origin_px()
    dcol0, drow0 = dst.origin_px(gsd_m)
    (sh, sw), (dh, dw) = src.shape(), dst.shape(gsd_m)
    wy = _area_weights(sh, srow0, dh, drow0, gsd_m)
    wx = _area_weights(sw, scol0, dw, dcol0, gsd_m)
    out = np.empty((stack.shape[0], dh, dw), dtype=np.float32)
    for b in range(stack.shape[0]):
        rows = wy @ stack[b]  # (dh, sw)
        out[b] = (wx @ rows.T).T
    return out


def render_vhr(layers: SceneLayers) -> tuple[np.ndarray, SceneGrid]:
    """(4, rows, cols) uint8 at the settings' GSD, and the grid it lies on."""
    seed, gsd = layers.settings.seed, layers.settings.gsd_m
    base, noise_std = render_base(layers)
    grid = layers.grid.at_gsd(gsd)
    if grid is not layers.grid:
        stacked = resample(np.concatenate([base, noise_std[None]]), layers.grid, grid, gsd)
        base, noise_std = stacked[:-1], stacked[-1]
    h, w = grid.shape(gsd)
    col0, row0 = grid.origin_px(gsd)
    out = np.empty((len(VHR_BANDS), h, w), dtype=np.uint8)
    # The lattice of a non-default GSD gets its own noise keys (its pixels are other pixels).
    lattice = "" if grid is layers.grid else f"@{gsd:g}"
    for b in range(len(VHR_BANDS)):
        noise = pixel_noise(col0, row0, h, w, key64("vhr" + lattice, seed, layers.day, b))
        out[b] = np.clip(np.rint(base[b] + noise_std * noise), 0, 255).astype(np.uint8)
    return out, grid


def vhr_cloud_cover(layers: SceneLayers) -> float:
    """Percent of the cell's own pixels under cloud."""
    inside = layers.cell_mask
    return float(100.0 * (layers.cloud[inside] >= CLOUD_THRESHOLD).mean()) if inside.any() else 0.0
