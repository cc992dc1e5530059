"""Small PNG previews attached to materializations, where a person would rather look than read."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

OUTLINE = (255, 214, 0)
CELL_OUTLINE = (0, 200, 255)


def stretch(rgb: np.ndarray, lo_pct: float = 2.0, hi_pct: float = 98.0) -> np.ndarray:
    """Percentile stretch of an (H, W, 3) array to uint8, robust to glints and clouds."""
    rgb = rgb.astype(np.float32)
    lo, hi = np.percentile(rgb, lo_pct), np.percentile(rgb, hi_pct)
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((rgb - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)


def heat(values: np.ndarray, vmin: float = -1.0, vmax: float = 1.0) -> np.ndarray:
    """Blue-white-red map of a single-band array in [vmin, vmax]."""
    t = np.clip((values - vmin) / (vmax - vmin), 0.0, 1.0)
    r = np.clip(2 * t, 0, 1)
    b = np.clip(2 * (1 - t), 0, 1)
    g = 1 - np.abs(2 * t - 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def contact_sheet(
    tiles: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    tile: int = 128,
    cols: int = 4,
) -> Image.Image:
    """Grid of (H, W, 3) uint8 tiles, each resized to `tile` px, with optional captions."""
    n = max(len(tiles), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    cap_h = 14 if captions else 0
    sheet = Image.new("RGB", (cols * tile, rows * (tile + cap_h)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, arr in enumerate(tiles):
        im = Image.fromarray(arr).resize((tile, tile), Image.Resampling.NEAREST)
        x, y = (i % cols) * tile, (i // cols) * (tile + cap_h)
        sheet.paste(im, (x, y))
        if captions:
            draw.text((x + 2, y + tile + 1), captions[i][: tile // 6], fill=(230, 230, 230))
    return sheet


def _rings(geom: BaseGeometry) -> list[list[tuple[float, float]]]:
    if isinstance(geom, Polygon):
        return [list(geom.exterior.coords)]
    if isinstance(geom, MultiPolygon):
        return [list(p.exterior.coords) for p in geom.geoms]
    if hasattr(geom, "geoms"):
        return [r for g in geom.geoms for r in _rings(g)]
    return []


def vector_map(
    frame: BaseGeometry,
    shapes: Sequence[BaseGeometry],
    points: Sequence[tuple[float, float]] = (),
    size: int = 512,
) -> Image.Image:
    """Lon/lat shapes drawn inside `frame` (e.g. a cell), with longitudes scaled by cos(lat)."""
    minx, miny, maxx, maxy = frame.bounds
    k = math.cos(math.radians((miny + maxy) / 2))
    span = max((maxx - minx) * k, maxy - miny) or 1.0
    pad = 12

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            pad + (x - minx) * k / span * (size - 2 * pad),
            size - pad - (y - miny) / span * (size - 2 * pad),
        )

    img = Image.new("RGB", (size, size), (30, 34, 30))
    draw = ImageDraw.Draw(img)
    for ring in _rings(frame):
        draw.line([px(*c) for c in ring], fill=CELL_OUTLINE, width=2)
    for geom in shapes:
        for ring in _rings(geom):
            if len(ring) >= 3:
                draw.polygon([px(*c) for c in ring], outline=OUTLINE)
    for x, y in points:
        cx, cy = px(x, y)
        draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), outline=OUTLINE)
    return img


def placeholder(message: str, size: tuple[int, int] = (512, 96)) -> Image.Image:
    img = Image.new("RGB", size, (40, 40, 40))
    ImageDraw.Draw(img).text((10, size[1] // 2 - 6), message[:80], fill=(240, 240, 240))
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def markdown_image(img: Image.Image, alt: str = "preview") -> str:
    """Inline markdown image, which the Dagster UI renders in the materialization's metadata."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png_bytes(img)).decode()})"


def save(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)
    return path
