"""A readable picture of a probability COG: colour ramp over the dimmed scene, outlines, legend.

The probability is drawn as a colour ramp from transparent dark violet (P = 0: the dimmed grey
scene shows through) over orange to opaque yellow (P = 1), so certainty reads as brightness and
colour at once; the detections are outlined in cyan (not a colour of the ramp); a strip below the
map carries the labelled colour bar "P(PV) 0 … 1" with the vectorization threshold marked, and
the detection count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image, ImageDraw

from flywheel_core.infer.vectorize import probability_scale
from flywheel_core.preview import stretch

# (probability, RGB, alpha) stops of the ramp.
RAMP = (
    (0.0, (40, 20, 70), 0.0),
    (0.5, (235, 100, 20), 0.6),
    (1.0, (255, 235, 0), 0.95),
)
OUTLINE = (0, 220, 255)
BACKGROUND = (18, 18, 24)
LEGEND_HEIGHT = 46


def ramp(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RGB float (..., 3) in 0..255, alpha (...) in 0..1) of probabilities in [0, 1]."""
    p = np.clip(np.asarray(p, np.float32), 0.0, 1.0)
    xs = [s[0] for s in RAMP]
    rgb = np.stack([np.interp(p, xs, [s[1][k] for s in RAMP]) for k in range(3)], axis=-1)
    alpha = np.interp(p, xs, [s[2] for s in RAMP])
    return rgb.astype(np.float32), alpha.astype(np.float32)


def _composite(bg: np.ndarray, p: np.ndarray) -> np.ndarray:
    rgb, alpha = ramp(p)
    return (bg * (1 - alpha[..., None]) + rgb * alpha[..., None]).astype(np.uint8)


def _background(vhr_href: str | Path | None, shape: tuple[int, int]) -> np.ndarray:
    """The scene as dimmed grey (so the ramp's colours stay readable), or a flat dark frame."""
    bg = np.empty((*shape, 3), np.float32)
    bg[:] = BACKGROUND
    if vhr_href is None:
        return bg
    with rasterio.open(vhr_href) as src:
        bands = [1, 2, 3] if src.count >= 3 else [1]
        data = src.read(bands, out_shape=(len(bands), *shape)).astype(np.float32)
    grey = stretch(np.moveaxis(data, 0, -1)).astype(np.float32).mean(axis=-1)
    bg[:] = (BACKGROUND + 0.45 * grey[..., None]).clip(0, 255)
    return bg


def _legend(width: int, threshold: float | None, n_detections: int) -> Image.Image:
    strip = Image.new("RGB", (width, LEGEND_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    x0, x1 = 46, max(width - 130, 120)
    y0, y1 = 8, 22
    p = np.linspace(0.0, 1.0, x1 - x0, dtype=np.float32)
    bar = np.empty((y1 - y0, x1 - x0, 3), np.float32)
    bar[:] = BACKGROUND
    bar = _composite(bar, np.broadcast_to(p, bar.shape[:2]))
    strip.paste(Image.fromarray(bar), (x0, y0))
    draw.rectangle([x0 - 1, y0 - 1, x1, y1], outline=(150, 150, 150))
    draw.text((4, y0 + 1), "P(PV)", fill=(235, 235, 235))
    for value in (0.0, 0.5, 1.0):
        x = x0 + round(value * (x1 - x0 - 1))
        draw.line([(x, y1), (x, y1 + 4)], fill=(200, 200, 200))
        label = f"{value:g}"
        draw.text((x - 3 * len(label), y1 + 6), label, fill=(220, 220, 220))
    lx = x1 + 12
    draw.rectangle([lx, y0 + 1, lx + 14, y1 - 1], outline=OUTLINE, width=2)
    draw.text((lx + 20, y0 + 1), f"{n_detections} detections", fill=(235, 235, 235))
    if threshold is not None and 0.0 <= threshold <= 1.0:
        x = x0 + round(threshold * (x1 - x0 - 1))
        draw.line([(x, y0 - 3), (x, y1 + 2)], fill=OUTLINE, width=2)
        draw.line([(lx + 7, y1 + 4), (lx + 7, y1 + 16)], fill=OUTLINE, width=2)
        draw.text((lx + 20, y1 + 6), f"threshold {threshold:g}", fill=(235, 235, 235))
    return strip


def probability_preview(
    path: str | Path,
    detections: Sequence[Any],
    *,
    vhr_href: str | Path | None = None,
    threshold: float | None = None,
    max_side: int = 512,
) -> Image.Image:
    """PNG-ready picture of the probability raster at `path` (at most `max_side` px across), the
    outlines of `detections` (anything with a `geometry_local` in the raster's CRS), the scene at
    `vhr_href` underneath when given, and a legend strip."""
    with rasterio.open(path) as src:
        step = max(1, int(np.ceil(max(src.width, src.height) / max_side)))
        shape = (max(1, src.height // step), max(1, src.width // step))
        raw = src.read(1, out_shape=shape).astype(np.float32)
        scale, offset = probability_scale(src)
        # Map pixel (col, row) of the downsampled picture from scene coordinates.
        inv = ~src.transform
        sx, sy = src.width / shape[1], src.height / shape[0]
    prob = raw * scale + offset
    img = Image.fromarray(_composite(_background(vhr_href, shape), prob))
    draw = ImageDraw.Draw(img)
    for d in detections:
        geom = d.geometry_local
        for part in getattr(geom, "geoms", [geom]):
            ring = [inv * (x, y) for x, y in part.exterior.coords]
            draw.line([(c / sx, r / sy) for c, r in ring], fill=OUTLINE, width=1)
    width = max(img.width, 320)  # room for the legend under a small map
    sheet = Image.new("RGB", (width, img.height + LEGEND_HEIGHT), BACKGROUND)
    sheet.paste(img, (0, 0))
    sheet.paste(_legend(width, threshold, len(detections)), (0, img.height))
    return sheet
