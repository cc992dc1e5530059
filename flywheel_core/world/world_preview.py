"""preview.png of a world: every scene's RGB thumbnail with the truth and the look-alikes drawn.

Truth outlines (installed by the scene's date) in yellow, look-alike outlines in magenta, the
scene's own cell in cyan; at most MAX_SCENES scenes, in generation order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from shapely.geometry.base import BaseGeometry

from flywheel_core.preview import CELL_OUTLINE, OUTLINE, contact_sheet, save, stretch
from flywheel_core.world.grid import SceneGrid

THUMB_PX = 192
MAX_SCENES = 36
DISTRACTOR_OUTLINE = (255, 64, 200)


@dataclass(frozen=True)
class Thumb:
    caption: str
    image: np.ndarray  # (THUMB_PX, THUMB_PX, 3) uint8 with outlines


def _rings(geom: BaseGeometry) -> list[np.ndarray]:
    parts = getattr(geom, "geoms", [geom])
    out = []
    for p in parts:
        if p.geom_type == "Polygon" and not p.is_empty:
            out.append(np.asarray(p.exterior.coords))
        elif hasattr(p, "geoms"):
            out += _rings(p)
    return out


def thumbnail(
    image: np.ndarray,
    grid: SceneGrid,
    caption: str,
    truth: Sequence[BaseGeometry],
    distractors: Sequence[BaseGeometry],
    cell: BaseGeometry,
) -> Thumb:
    """A (bands, rows, cols) uint8 VHR scene as a small RGB tile with outlines (scene CRS)."""
    rgb = stretch(np.moveaxis(image[:3], 0, -1))
    tile = Image.fromarray(rgb).resize((THUMB_PX, THUMB_PX), Image.Resampling.BOX)
    draw = ImageDraw.Draw(tile)
    sx = THUMB_PX / (grid.right - grid.left)
    sy = THUMB_PX / (grid.top - grid.bottom)

    def px(ring: np.ndarray) -> list[tuple[float, float]]:
        return [((x - grid.left) * sx, (grid.top - y) * sy) for x, y in ring[:, :2]]

    for ring in _rings(cell):
        draw.line(px(ring), fill=CELL_OUTLINE, width=1)
    for geoms, colour in ((distractors, DISTRACTOR_OUTLINE), (truth, OUTLINE)):
        for g in geoms:
            for ring in _rings(g):
                if len(ring) >= 3:
                    draw.polygon(px(ring), outline=colour)
    return Thumb(caption, np.asarray(tile))


def write_preview(path: Path, thumbs: Sequence[Thumb]) -> Path:
    shown = list(thumbs[:MAX_SCENES])
    sheet = contact_sheet(
        [t.image for t in shown], [t.caption for t in shown], tile=THUMB_PX, cols=4
    )
    legend_h = 16
    out = Image.new("RGB", (sheet.width, sheet.height + legend_h), (24, 24, 24))
    out.paste(sheet, (0, 0))
    draw = ImageDraw.Draw(out)
    y = sheet.height + 2
    draw.text((4, y), "PV truth", fill=OUTLINE)
    draw.text((64, y), "look-alikes", fill=DISTRACTOR_OUTLINE)
    draw.text((150, y), "cell", fill=CELL_OUTLINE)
    if len(thumbs) > len(shown):
        draw.text((190, y), f"{len(shown)} of {len(thumbs)} scenes", fill=(230, 230, 230))
    return save(out, path)
