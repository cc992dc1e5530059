"""The weightless back end: panels segmented from the image itself, inside each prompt.

Cues are spectral (shared/spectra.md): modules show more blue than red and are darker in the near
infrared than in blue, while vegetation and red roofs are bright in NIR and concrete, soil and
asphalt have no blue excess. The per-pixel score is (B − R) + ½·(B − NIR) in 8-bit DN. Mono- and
polycrystalline panels score differently, so the cut is chosen per prompt: Otsu's threshold of the
scores around the prompt (never below `min_threshold`). The prompt then decides which candidates
belong to the label: components that meet a polygon prompt, or, for a point/box prompt, the
cluster of candidates linked to its point (rows of a ground-mounted array sit several metres
apart, so candidates are linked across `link_m`).
"""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize
from scipy import ndimage

from flywheel_core.masks.refine import disk
from flywheel_core.masks.types import Prompt, RawMask

EIGHT = np.ones((3, 3), dtype=bool)


def pv_score(image: np.ndarray) -> np.ndarray:
    """(B − R) + ½·(B − NIR) in DN (NIR term dropped for RGB-only chips)."""
    img = image.astype(np.float32)
    r, b = img[..., 0], img[..., 2]
    score = b - r
    if img.shape[-1] >= 4:
        score += 0.5 * (b - img[..., 3])
    return score


def otsu(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of a 1-d sample (the cut maximizing between-class variance)."""
    if values.size < 2 or float(values.max()) == float(values.min()):
        return float(values.max()) if values.size else 0.0
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _components_meeting(candidates: np.ndarray, where: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(candidates, structure=EIGHT)
    if n == 0:
        return np.zeros_like(candidates)
    hit = np.unique(labels[where & candidates])
    return np.isin(labels, hit[hit > 0])


class ClassicalBackend:
    name = "classical"
    trained = True  # there are no weights, so nothing random to disclose
    weights = "none"

    def __init__(
        self,
        gsd_m: float,
        min_threshold: float = 10.0,
        link_m: float = 4.5,
        context_m: float = 2.0,
        stability_delta: float = 4.0,
    ) -> None:
        self.gsd_m = gsd_m
        self.min_threshold = min_threshold
        self.link_px = max(1, round(link_m / gsd_m))
        self.context_px = max(1, round(context_m / gsd_m))
        self.delta = stability_delta
        self.model_id = f"classical:spectral-otsu-v1(min={min_threshold:g},link={link_m:g}m)"

    def _is_polygon(self, prompt: Prompt) -> bool:
        return prompt.source_geometry == "polygon" and prompt.kind == "polygon"

    def _window(self, prompt: Prompt, region: np.ndarray) -> np.ndarray:
        grow = self.context_px if self._is_polygon(prompt) else self.link_px
        return ndimage.binary_dilation(region, structure=disk(grow))

    def _select(
        self, candidates: np.ndarray, prompt: Prompt, region: np.ndarray, window: np.ndarray
    ) -> np.ndarray:
        if self._is_polygon(prompt):
            return _components_meeting(candidates & window, region) & window
        linked = ndimage.binary_dilation(candidates, structure=disk(self.link_px))
        seeds = np.zeros_like(candidates)
        fg = prompt.points[prompt.point_labels == 1] if len(prompt.points) else prompt.points
        h, w = seeds.shape
        for x, y in fg:
            seeds[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))] = True
        if not seeds.any():
            seeds = region
        seeds = ndimage.binary_dilation(seeds, structure=disk(self.link_px)) & window
        return _components_meeting(linked, seeds) & candidates

    def segment(self, image: np.ndarray, prompts: list[Prompt]) -> list[RawMask]:
        score = pv_score(image)
        h, w = score.shape
        out = []
        for prompt in prompts:
            region = rasterize([(prompt.region, 1)], out_shape=(h, w), dtype="uint8").astype(bool)
            if not region.any():
                cy = int(np.clip((prompt.box[1] + prompt.box[3]) / 2, 0, h - 1))
                cx = int(np.clip((prompt.box[0] + prompt.box[2]) / 2, 0, w - 1))
                region[cy, cx] = True
            window = self._window(prompt, region)
            cut = max(self.min_threshold, otsu(score[window]))
            mask = self._select(score > cut, prompt, region, window)
            # Stability as SAM defines it (IoU of the masks at a tighter and a looser cut), taken
            # near the mask so that a looser cut reaching other objects does not count.
            near = (
                ndimage.binary_dilation(mask, structure=disk(self.context_px))
                if mask.any()
                else window
            )
            tight = (score > cut + self.delta) & near
            loose = (score > cut - self.delta) & near
            union = np.count_nonzero(loose | tight)
            stability = float(np.count_nonzero(loose & tight) / union) if union else 0.0
            out.append(RawMask(mask=mask, stability_score=stability, extra={"threshold": cut}))
        return out
