"""A downsampled picture of a cell's chips laid out where they sit in the scene."""

from __future__ import annotations

import numpy as np

from flywheel_core.imagery.vhr_chips import chip_image
from flywheel_core.preview import stretch


def chips_mosaic(rows: list[dict], max_px: int = 512) -> np.ndarray:
    """(H, W, 3) uint8 RGB mosaic of VHR chips at their scene offsets (gaps stay dark)."""
    if not rows:
        return np.zeros((8, 8, 3), dtype=np.uint8)
    r0 = min(r["row_off"] for r in rows)
    c0 = min(r["col_off"] for r in rows)
    size = rows[0]["height"]
    h = max(r["row_off"] for r in rows) - r0 + size
    w = max(r["col_off"] for r in rows) - c0 + size
    step = max(1, int(np.ceil(max(h, w) / max_px)))
    canvas = np.zeros((h // step + 1, w // step + 1, 3), dtype=np.uint8)
    for r in rows:
        img = chip_image(r)[:3].transpose(1, 2, 0)[::step, ::step]
        y, x = (r["row_off"] - r0) // step, (r["col_off"] - c0) // step
        canvas[y : y + img.shape[0], x : x + img.shape[1]] = img
    return stretch(canvas, 1.0, 99.5)


def msi_mosaics(rows: list[dict], upscale: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(true-colour, PVI) mosaics of MSI chips at their map positions, each 10 m pixel upscaled.

    Reflectance is scaled by a fixed factor (×3.5, as for S2 true colour) rather than stretched
    per picture, so dates and cells can be compared by eye.
    """
    from flywheel_core.imagery.msi_chips import msi_arrays
    from flywheel_core.preview import heat

    if not rows:
        blank = np.zeros((8, 8, 3), dtype=np.uint8)
        return blank, blank
    gsd = rows[0]["gsd_m"]
    x0 = min(r["transform"][2] for r in rows)
    y0 = max(r["transform"][5] for r in rows)
    places = [
        (round((y0 - r["transform"][5]) / gsd), round((r["transform"][2] - x0) / gsd)) for r in rows
    ]
    h = max(p[0] + r["height"] for p, r in zip(places, rows, strict=True))
    w = max(p[1] + r["width"] for p, r in zip(places, rows, strict=True))
    rgb = np.zeros((h, w, 3), dtype=np.float32)
    pvi = np.full((h, w), np.nan, dtype=np.float32)
    for (y, x), r in zip(places, rows, strict=True):
        refl, idx, _ = msi_arrays(r)
        names = list(r["band_names"])
        rgb[y : y + r["height"], x : x + r["width"]] = refl[
            [names.index("B04"), names.index("B03"), names.index("B02")]
        ].transpose(1, 2, 0)
        pvi[y : y + r["height"], x : x + r["width"]] = idx[list(r["index_names"]).index("pvi")]
    rgb8 = (np.clip(rgb * 3.5, 0.0, 1.0) ** (1 / 1.4) * 255).astype(np.uint8)
    pvi8 = heat(np.nan_to_num(pvi, nan=-1.0), vmin=-1.0, vmax=0.0)
    pvi8[np.isnan(pvi)] = 0
    big = np.ones((upscale, upscale, 1), dtype=np.uint8)
    return np.kron(rgb8, big), np.kron(pvi8, big)
