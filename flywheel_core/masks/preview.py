"""Chips with their prompts outlined and masks overlaid: accepted green, rejected red."""

from __future__ import annotations

import numpy as np
from affine import Affine
from PIL import Image, ImageDraw
from shapely import wkb

from flywheel_core.imagery.vhr_chips import chip_image
from flywheel_core.masks.factory import unpack
from flywheel_core.masks.prompts import to_pixels
from flywheel_core.preview import contact_sheet, stretch

ACCEPTED = np.array([40, 220, 90], dtype=np.float32)
REJECTED = np.array([235, 50, 50], dtype=np.float32)


def _rings(geom: object) -> list[list[tuple[float, float]]]:
    if hasattr(geom, "exterior"):
        return [list(geom.exterior.coords)]
    return [r for g in getattr(geom, "geoms", []) for r in _rings(g)]


def overlay(chip: dict, masks: list[dict]) -> np.ndarray:
    """(H, W, 3) uint8: the chip, masks blended in, prompt regions outlined in yellow."""
    rgb = stretch(chip_image(chip)[:3].transpose(1, 2, 0), 1.0, 99.5).astype(np.float32)
    for m in masks:
        mask = unpack(m["mask"], m["height"], m["width"])
        colour = ACCEPTED if m["accepted"] else REJECTED
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * colour
    img = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    transform = Affine(*chip["transform"])
    for m in masks:
        region = to_pixels(wkb.loads(m["prompt_geometry"]), chip["crs"], transform)
        for ring in _rings(region):
            draw.line(ring, fill=(255, 214, 0), width=1)
    return np.asarray(img)


def masks_sheet(chips: dict[str, dict], masks: list[dict], limit: int = 8) -> Image.Image:
    by_chip: dict[str, list[dict]] = {}
    for m in masks:
        by_chip.setdefault(m["chip_id"], []).append(m)
    ordered = sorted(by_chip.items(), key=lambda kv: -len(kv[1]))[:limit]
    tiles = [overlay(chips[cid], ms) for cid, ms in ordered]
    captions = [f"{sum(m['accepted'] for m in ms)}/{len(ms)} accepted" for _, ms in ordered]
    return contact_sheet(tiles, captions, tile=192, cols=4)
