"""What every mask back end consumes and produces.

Back ends see only pixels and pixel-space prompts, so the same refinement, QA and storage apply
whatever produced the mask (a SAM checkpoint, a Hugging Face model, or no model at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from shapely.geometry import MultiPolygon, Polygon

PromptKind = Literal["box", "point", "polygon"]


@dataclass(frozen=True)
class Prompt:
    """One label's prompt inside one chip, in the chip's pixel coordinates (x = column, y = row).

    `box` is x0, y0, x1, y1 (clipped to the chip); `points` are (N, 2) x, y with `point_labels`
    1 for foreground and 0 for background; `region` is the prompt footprint as a pixel-space
    polygon (the label polygon, or the buffered point), clipped to the chip.
    """

    label_id: str
    kind: PromptKind
    box: tuple[float, float, float, float]
    points: np.ndarray
    point_labels: np.ndarray
    region: Polygon | MultiPolygon
    source_geometry: Literal["point", "polygon"]
    clipped: bool = False  # the label crosses the chip edge


@dataclass
class RawMask:
    """A back end's answer to one prompt, before the shared refinement."""

    mask: np.ndarray  # (H, W) bool
    predicted_iou: float | None = None
    stability_score: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


class MaskBackend(Protocol):
    """Segment every prompt of one chip; the image is encoded once per call."""

    name: str  # "classical", "samgeo", "transformers"
    model_id: str  # checkpoint path, model folder or id, or a description for weightless ones
    trained: bool  # False when the weights are random (tests, offline demo): said in every output

    def segment(self, image: np.ndarray, prompts: list[Prompt]) -> list[RawMask]:
        """`image` is (H, W, C) uint8 with C >= 3 (R, G, B first; NIR fourth when present)."""
        ...
