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
