"""Mask QA: the numbers stored with every mask and the accept/reject decision with its reason.

Polygon labels are judged against their own polygon (overlap and area ratio); point labels only
say "there is a panel here", so their mask must contain the point and have a plausible size.
Model scores (predicted IoU, stability) are used when the back end gives them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flywheel_core.masks.types import Prompt, RawMask


@dataclass(frozen=True)
class AcceptanceRules:
    min_iou_with_prompt: float = 0.3
    min_area_ratio: float = 0.3
    max_area_ratio: float = 3.0
    min_area_m2: float = 2.0
    max_area_m2: float = 50_000.0
    min_predicted_iou: float = 0.5
    min_stability: float = 0.5
    point_tolerance_m: float = (
        2.0  # a point label may sit this far off the panel (positional noise)
    )


@dataclass(frozen=True)
class MaskQA:
    iou_with_prompt: float
    predicted_iou: float | None
    stability_score: float | None
    area_ratio: float
    area_m2: float
    accepted: bool
    reason: str


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0


def assess(
    refined: np.ndarray,
    region: np.ndarray,
    prompt: Prompt,
    raw: RawMask,
    gsd_m: float,
    rules: AcceptanceRules,
) -> MaskQA:
    """Score a refined mask against its prompt and decide; the first failed rule is the reason."""
    area_px = int(np.count_nonzero(refined))
    prompt_px = int(np.count_nonzero(region))
    area_m2 = area_px * gsd_m * gsd_m
    overlap = iou(refined, region)
    ratio = area_px / prompt_px if prompt_px else 0.0
    reasons: list[str] = []
    if area_px == 0:
        reasons.append("empty mask")
    elif area_m2 < rules.min_area_m2:
        reasons.append(f"area {area_m2:.1f} m² < {rules.min_area_m2:g} m²")
    elif area_m2 > rules.max_area_m2:
        reasons.append(f"area {area_m2:.0f} m² > {rules.max_area_m2:g} m²")
    if area_px and prompt.source_geometry == "polygon":
        if overlap < rules.min_iou_with_prompt:
            reasons.append(f"IoU with prompt {overlap:.2f} < {rules.min_iou_with_prompt:g}")
        if not rules.min_area_ratio <= ratio <= rules.max_area_ratio:
            reasons.append(
                f"area ratio {ratio:.2f} outside "
                f"[{rules.min_area_ratio:g}, {rules.max_area_ratio:g}]"
            )
    if area_px and prompt.source_geometry == "point":
        fg = prompt.points[prompt.point_labels == 1]
        rows, cols = np.nonzero(refined)
        gap_px = min(
            (float(np.min(np.hypot(cols + 0.5 - x, rows + 0.5 - y))) for x, y in fg), default=np.inf
        )
        if gap_px * gsd_m > rules.point_tolerance_m:
            reasons.append(f"mask is {gap_px * gsd_m:.1f} m from the label's point")
    if raw.predicted_iou is not None and raw.predicted_iou < rules.min_predicted_iou:
        reasons.append(f"predicted IoU {raw.predicted_iou:.2f} < {rules.min_predicted_iou:g}")
    if raw.stability_score is not None and raw.stability_score < rules.min_stability:
        reasons.append(f"stability {raw.stability_score:.2f} < {rules.min_stability:g}")
    return MaskQA(
        iou_with_prompt=overlap,
        predicted_iou=raw.predicted_iou,
        stability_score=raw.stability_score,
        area_ratio=ratio,
        area_m2=area_m2,
        accepted=not reasons,
        reason="; ".join(reasons) if reasons else "accepted",
    )
