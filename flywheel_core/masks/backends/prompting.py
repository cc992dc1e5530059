"""Helpers shared by the SAM-style back ends: prompt arrays, image checks and mask scores.

Every SAM variant takes the same prompt vocabulary (one box, N points with 1 = foreground and
0 = background) and answers with several candidate masks plus a predicted IoU for each, so the
translation from a `Prompt` and the choice among the candidates live here once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flywheel_core.errors import FlywheelError
from flywheel_core.masks.types import Prompt

STABILITY_OFFSET = 1.0  # SAM's default `stability_score_offset`
MASK_THRESHOLD = 0.0  # SAM thresholds mask logits at 0


class ModelWeightsNotFoundError(FlywheelError, FileNotFoundError):
    """A back end's weights are not on this machine (nothing is ever downloaded)."""


@dataclass(frozen=True)
class SamPromptArrays:
    """One prompt as SAM takes it: a box (4,) x0,y0,x1,y1 and/or points (N,2) x,y + labels (N,)."""

    box: np.ndarray | None
    points: np.ndarray | None
    labels: np.ndarray | None


def prompt_box(prompt: Prompt) -> np.ndarray:
    """The prompt's box as a float32 (4,) array x0, y0, x1, y1 (corners put in order)."""
    x0, y0, x1, y1 = (float(v) for v in prompt.box)
    return np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], dtype=np.float32)


def prompt_points(prompt: Prompt) -> tuple[np.ndarray, np.ndarray] | None:
    """The prompt's points as float32 (N, 2) x, y and int64 (N,) labels, or None when it has none.

    Missing labels count as foreground.
    """
    points = np.asarray(prompt.points, dtype=np.float32).reshape(-1, 2)
    if len(points) == 0:
        return None
    labels = np.asarray(prompt.point_labels, dtype=np.int64).reshape(-1)
    if len(labels) == 0:
        labels = np.ones(len(points), dtype=np.int64)
    if len(labels) != len(points):
        raise ValueError(
            f"prompt {prompt.label_id}: {len(points)} points but {len(labels)} point labels"
        )
    return points, labels


def sam_prompt(prompt: Prompt) -> SamPromptArrays:
    """How one `Prompt` is given to a SAM-style model.

    box: the box only. point: its points, positive and negative as labelled (a point prompt
    without points falls back to its box). polygon: the box plus whatever points it carries.
    """
    if prompt.kind == "box":
        return SamPromptArrays(box=prompt_box(prompt), points=None, labels=None)
    pts = prompt_points(prompt)
    if prompt.kind == "point":
        if pts is None:
            return SamPromptArrays(box=prompt_box(prompt), points=None, labels=None)
        return SamPromptArrays(box=None, points=pts[0], labels=pts[1])
    if prompt.kind == "polygon":
        if pts is None:
            return SamPromptArrays(box=prompt_box(prompt), points=None, labels=None)
        return SamPromptArrays(box=prompt_box(prompt), points=pts[0], labels=pts[1])
    raise ValueError(f"prompt {prompt.label_id}: unknown kind {prompt.kind!r}")


def rgb_image(image: np.ndarray) -> np.ndarray:
    """The R, G, B bands of an (H, W, C) uint8 chip as a C-contiguous (H, W, 3) array."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an (H, W, C>=3) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    return np.ascontiguousarray(image[:, :, :3])


def stability_score(
    logits: np.ndarray, threshold: float = MASK_THRESHOLD, offset: float = STABILITY_OFFSET
) -> float:
    """SAM's stability score: IoU of (logits > threshold + offset) vs (logits > threshold - offset).

    A mask that barely changes when the threshold moves is stable (score near 1). A mask that is
    empty even at the loose threshold scores 0: there is nothing stable to trust.
    """
    logits = np.asarray(logits, dtype=np.float32)
    union = int(np.count_nonzero(logits > threshold - offset))
    if union == 0:
        return 0.0
    intersection = int(np.count_nonzero(logits > threshold + offset))
    return intersection / union


def best_candidate(scores: np.ndarray) -> int:
    """Index of the highest-scoring candidate mask (NaN scores lose)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) == 0:
        raise ValueError("no candidate masks")
    return int(np.argmax(np.nan_to_num(scores, nan=-np.inf)))


def predicted_iou(raw: float) -> float | None:
    """A model's IoU prediction clipped to [0, 1] (SAM's IoU head is an unbounded regression);
    None when it is not a number."""
    value = float(raw)
    if math.isnan(value):
        return None
    return min(1.0, max(0.0, value))


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or {} when the file is missing or not an object."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
