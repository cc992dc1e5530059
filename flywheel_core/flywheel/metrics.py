"""Agreement of predicted and reference polygons in one partition (DESIGN.md, Metrics).

- Object level: one geometry = one installation (a MultiPolygon is one object). Greedy one-to-one
  matching by IoU (flywheel_core.flywheel.matching); a match counts when IoU >= 0.5.
  precision = TP / n_pred, recall = TP / n_ref, F1 = 2 TP / (n_pred + n_ref).
- "Pixel" level: computed exactly from polygon areas, not by rasterizing. P and R are the unions
  of the predicted and reference polygons in a local equal-area CRS (metres);
  pixel IoU = |P ∩ R| / |P ∪ R| and pixel F1 (Dice) = 2 |P ∩ R| / (|P| + |R|). This is the limit
  of the rasterized metrics as the pixel size goes to zero, with no dependence on a grid.
- Area: area_rel_error = (Σ matched predicted areas − Σ matched reference areas) / Σ matched
  reference areas; total_area_rel_error compares all predictions with all references. Positive
  means the predictions are too large.

A ratio whose denominator is zero is None (e.g. precision with no predictions), so the values
serialize to JSON and Dagster metadata without NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from flywheel_core.flywheel.matching import MatchResult, match_metric, to_local_metric

__all__ = ["PartitionMetrics", "compute_metrics"]


@dataclass(frozen=True)
class PartitionMetrics:
    n_pred: int
    n_ref: int
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    iou_threshold: float
    mean_matched_iou: float | None
    pixel_iou: float | None
    pixel_f1: float | None
    pred_area_m2: float  # area of the union of the predictions
    ref_area_m2: float  # area of the union of the references
    intersection_area_m2: float
    matched_pred_area_m2: float
    matched_ref_area_m2: float
    area_rel_error: float | None
    total_area_rel_error: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def _union(geoms: np.ndarray) -> BaseGeometry:
    if geoms.size == 0:
        return shapely.Polygon()
    return shapely.union_all(shapely.make_valid(geoms))


def metrics_from_match(
    result: MatchResult, preds: np.ndarray, refs: np.ndarray, iou_threshold: float
) -> PartitionMetrics:
    """PartitionMetrics from a matching and the metric-CRS geometries it was computed on."""
    n_pred, n_ref, tp = len(preds), len(refs), len(result.matches)
    p_union, r_union = _union(preds), _union(refs)
    inter = float(p_union.intersection(r_union).area) if n_pred and n_ref else 0.0
    p_area, r_area = float(p_union.area), float(r_union.area)
    matched_p = sum(result.pred_areas_m2[m.pred] for m in result.matches)
    matched_r = sum(result.ref_areas_m2[m.ref] for m in result.matches)
    total_p, total_r = sum(result.pred_areas_m2), sum(result.ref_areas_m2)
    return PartitionMetrics(
        n_pred=n_pred,
        n_ref=n_ref,
        tp=tp,
        fp=n_pred - tp,
        fn=n_ref - tp,
        precision=_ratio(tp, n_pred),
        recall=_ratio(tp, n_ref),
        f1=_ratio(2 * tp, n_pred + n_ref),
        iou_threshold=iou_threshold,
        mean_matched_iou=(
            float(np.mean([m.iou for m in result.matches])) if result.matches else None
        ),
        pixel_iou=_ratio(inter, p_area + r_area - inter),
        pixel_f1=_ratio(2 * inter, p_area + r_area),
        pred_area_m2=p_area,
        ref_area_m2=r_area,
        intersection_area_m2=inter,
        matched_pred_area_m2=float(matched_p),
        matched_ref_area_m2=float(matched_r),
        area_rel_error=_ratio(matched_p - matched_r, matched_r),
        total_area_rel_error=_ratio(total_p - total_r, total_r),
    )


def compute_metrics(
    predictions: Sequence[BaseGeometry],
    references: Sequence[BaseGeometry],
    *,
    iou_threshold: float = 0.5,
) -> PartitionMetrics:
    """Object, pixel and area metrics of lon/lat predictions against lon/lat references."""
    preds, refs = to_local_metric(predictions, references)
    result = match_metric(preds, refs, iou_threshold=iou_threshold)
    return metrics_from_match(result, preds, refs, iou_threshold)
