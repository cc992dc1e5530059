"""A picture of a partition's embeddings: the chips, the chips coloured by their vectors, a scatter.

Colouring each chip by the first three principal components of its vector shows at a glance
whether the embedding separates what the eye separates (fields, roofs, water, panels): similar
chips get similar colours. With random weights (the tiny model) the colours mostly follow
brightness, which is itself a useful plumbing check.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from flywheel_core.preview import contact_sheet, stretch

THUMB = 32


def pca(vectors: np.ndarray, k: int) -> np.ndarray:
    """(N, k) scores on the first k principal components (zeros where there are fewer)."""
    n = vectors.shape[0]
    scores = np.zeros((n, k), dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    x = vectors[finite].astype(np.float64)
    if x.shape[0] < 2:
        return scores
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    m = min(k, s.size)
    scores[np.flatnonzero(finite), :m] = (u[:, :m] * s[:m]).astype(np.float32)
    return scores


def pca_colors(vectors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8: the first three principal components, each stretched to 0-255."""
    scores = pca(vectors, 3)
    lo, hi = scores.min(axis=0), scores.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (np.clip((scores - lo) / span, 0, 1) * 200 + 40).astype(np.uint8)


def thumbnail(image: np.ndarray) -> np.ndarray:
    """(THUMB, THUMB, 3) uint8 of a (C, H, W) chip (first three bands), not yet stretched."""
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    img = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)))
    return np.asarray(img.resize((THUMB, THUMB), Image.Resampling.BILINEAR))


def _layout(places: list[tuple[int, int]] | None, n: int) -> list[tuple[int, int]]:
    """Grid slots (row, col) of each chip: scene offsets ranked per axis, else reading order."""
    if places and len(places) == n:
        rows = {r: i for i, r in enumerate(sorted({p[0] for p in places}))}
        cols = {c: i for i, c in enumerate(sorted({p[1] for p in places}))}
        return [(rows[r], cols[c]) for r, c in places]
    side = max(1, int(np.ceil(np.sqrt(n))))
    return [divmod(i, side) for i in range(n)]


def _canvas(slots: list[tuple[int, int]], tiles: list[np.ndarray]) -> np.ndarray:
    h = (max(s[0] for s in slots) + 1) * THUMB
    w = (max(s[1] for s in slots) + 1) * THUMB
    canvas = np.full((h, w, 3), 24, dtype=np.uint8)
    for (r, c), tile in zip(slots, tiles, strict=True):
        canvas[r * THUMB : (r + 1) * THUMB, c * THUMB : (c + 1) * THUMB] = tile
    return canvas


def _scatter(scores: np.ndarray, colors: np.ndarray, size: int = 256) -> np.ndarray:
    img = Image.new("RGB", (size, size), (24, 24, 24))
    draw = ImageDraw.Draw(img)
    if scores.shape[0]:
        lo, hi = scores.min(axis=0), scores.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        xy = (scores - lo) / span * (size - 20) + 10
        for (x, y), col in zip(xy, colors, strict=True):
            fill = (int(col[0]), int(col[1]), int(col[2]))
            draw.ellipse((x - 3, size - y - 3, x + 3, size - y + 3), fill=fill)
    return np.asarray(img)


def embedding_preview(
    vectors: np.ndarray,
    thumbs: list[np.ndarray],
    places: list[tuple[int, int]] | None = None,
    label: str = "",
) -> Image.Image:
    """Chips | chips coloured by PCA of their vectors | PC1-PC2 scatter in the same colours."""
    n = vectors.shape[0]
    if n != len(thumbs):
        raise ValueError(f"{n} vectors but {len(thumbs)} thumbnails")
    slots = _layout(places, n)
    colors = pca_colors(vectors)
    blocks = [np.broadcast_to(c, (THUMB, THUMB, 3)).copy() for c in colors]
    return contact_sheet(
        # One stretch for the whole mosaic, so chips keep their relative brightness.
        [
            stretch(_canvas(slots, thumbs), 1.0, 99.5),
            _canvas(slots, blocks),
            _scatter(pca(vectors, 2), colors),
        ],
        [f"chips {label}".strip(), "vector PCA (RGB = PC1-3)", "PC1 vs PC2"],
        tile=320,
        cols=3,
    )
