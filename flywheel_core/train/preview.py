"""Training samples as a person checks them: image, generated mask tinted, split in the caption."""

from __future__ import annotations

import numpy as np
from PIL import Image

from flywheel_core.preview import contact_sheet, stretch

TINT = np.array([40, 220, 90], dtype=np.float32)


def samples_sheet(rows: list[dict], limit: int = 8) -> Image.Image:
    picked = sorted(rows, key=lambda r: r["metadata"]["negative"])[:limit]
    tiles, captions = [], []
    for r in picked:
        bands, h, w = r["metadata"]["vhr_shape"]
        img = (
            np.frombuffer(r["vhr_image_chip"], np.uint8).reshape(bands, h, w)[:3].transpose(1, 2, 0)
        )
        rgb = stretch(img, 1.0, 99.5).astype(np.float32)
        mask = np.frombuffer(r["generated_mask"], np.uint8).reshape(h, w).astype(bool)
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * TINT
        tiles.append(rgb.astype(np.uint8))
        kind = (
            "negative" if r["metadata"]["negative"] else f"{len(r['metadata']['mask_qa'])} mask(s)"
        )
        captions.append(f"{r['split']}: {kind}")
    return contact_sheet(tiles, captions, tile=192, cols=4)
