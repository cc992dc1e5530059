"""Which model detections may become labels: explicit rules, the first failure named.

A detection is accepted only when it passes every rule, checked in this order (a detection with
no polygon at all, e.g. an empty or point geometry, is rejected first under `geometry`):

1. score:   model score >= `min_score`. Calibrated each round on the labelled validation chips
            (flywheel_core.flywheel.calibration); 0.6 is the default when a round has too little
            evidence (just above the 0.5 pixel threshold the detections are cut at).
2. area:    `min_area_m2` (4 m², about two residential modules) <= area <= `max_area_m2`
            (50,000 m², 5 ha; larger single polygons are far more often merged fields or water
            than one installation the model traced). Area is measured on an equal-area projection.
3. shape:   no slivers. Every part of at least `ignore_parts_below_m2` (1 m²) must fill at least
            `min_rectangularity` (0.4) of its minimum rotated rectangle and that rectangle's
            short side must be >= `min_width_m` (1 m: a module is ≈ 1 m wide; narrower is a mask
            edge or a shadow line). PV arrays are rectangles or unions of a few (a ground farm's
            rows are parts of one MultiPolygon, each ≈ 1.0); an L-shaped roof array with arms a
            quarter of its sides wide fills 0.5, a plus sign 0.3, rings and ragged blobs less.
            Area and shape bounds are geometry of PV systems, not of an image: documented
            defaults, not calibrated.
4. msi_pvi: when the Sentinel-2 PV index is available (the mean of the project's `pvi` channel
            over the detection: NDPVI = (0.5·B02 − B08)/(0.5·B02 + B08) with open water, MNDWI > 0,
            forced to −1; flywheel_core.imagery.indices), reject water-like detections:
            msi_pvi <= `max_water_pvi`, calibrated each round halfway between water (−1) and the
            lowest labelled object, never above the default −0.95. Real PV is far from that
            bound: from the reflectances in shared/spectra.md, a 10 m pixel of a ground-mounted
            farm (panels plus grass, NDVI ≈ 0.6) has NDPVI ≈ −0.74, panel-dominated pixels
            ≈ −0.53, a bare module ≈ −0.18. Green grass, however, sits at ≈ −0.87 to −0.93,
            close to a PV farm pixel, so a vegetation bound (`min_msi_pvi`) is off by default: a
            mixed 10 m pixel cannot tell a farm from a meadow reliably. Set it (e.g. −0.9) to
            reject clearly vegetated detections at your own risk. NaN or None means "no MSI
            evidence" and passes.
5. vhr_spectra: when the predictor measured it, the median VHR PV score over the detection
            ((B − R) + ½·(B − NIR) in 8-bit DN, flywheel_core.infer.spectral) must be
            >= `min_vhr_pv_score`: panels are bluer than red and darker in NIR than in blue,
            grey shingle and dark slate roofs are not. The bound is calibrated each round from
            the labelled panels' own pixels against their surroundings, and is off (None, the
            default) when those do not separate, e.g. thin-film panels or RGB-only imagery.
6. already_labeled: reject when the detection's IoU with an active label exceeds
            `max_iou_with_label` (0.1) or more than `max_fraction_in_label` (30 %) of the detection
            lies inside one active label; a point label (an unshaped seed) counts as labeled when
            the detection covers the point.

`decide` evaluates every rule (so the log carries all the numbers) and names the first failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from flywheel_core.flywheel.matching import to_local_metric

__all__ = [
    "RULES",
    "AcceptanceRules",
    "ActiveLabels",
    "Decision",
    "Detection",
    "as_geometry",
    "decide",
]

# Rule names in evaluation order; a rejected Decision's `rule` is one of these.
RULES = (
    "geometry",
    "score",
    "area",
    "shape",
    "msi_pvi",
    "vhr_spectra",
    "already_labeled",
    "mask_qa",  # decided after these, by the mask factory (flywheel_core.flywheel.backfill)
)


@dataclass(frozen=True)
class AcceptanceRules:
    min_score: float = 0.6
    min_area_m2: float = 4.0
    max_area_m2: float = 50_000.0
    min_rectangularity: float = 0.4
    min_width_m: float = 1.0
    ignore_parts_below_m2: float = 1.0
    max_water_pvi: float = -0.95
    min_msi_pvi: float | None = None  # vegetation bound; off by default (see module doc)
    max_iou_with_label: float = 0.1
    max_fraction_in_label: float = 0.3
    # VHR spectral agreement in 8-bit DN (the classical mask back end's score). Off by default:
    # its bound depends on the imagery, so each round calibrates it (flywheel.calibration).
    min_vhr_pv_score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str  # "accepted", or the first failed rule with its numbers
    rule: str | None = None  # the failed rule's name (see RULES), None when accepted
    metrics: dict[str, Any] = field(default_factory=dict)


def as_geometry(value: Any) -> BaseGeometry:
    """A shapely geometry from WKB bytes, WKT/hex text or a geometry."""
    if isinstance(value, BaseGeometry):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return shapely.from_wkb(bytes(value))
    if isinstance(value, str):
        text = value.strip()
        if text and all(c in "0123456789abcdefABCDEF" for c in text):
            return shapely.from_wkb(text)
        return shapely.from_wkt(text)
    raise TypeError(f"cannot read a geometry from {type(value).__name__}")


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class Detection:
    """One predicted polygon in lon/lat, with what the model and the MSI chip say about it."""

    geometry: BaseGeometry
    score: float
    area_m2: float | None = None  # as reported by the predictor (the rules re-measure it)
    msi_pvi: float | None = None
    prediction_id: str | None = None
    vhr_pv_score: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Detection:
        return cls(
            geometry=as_geometry(d["geometry"]),
            score=float(d["score"]),
            area_m2=_float_or_none(d.get("area_m2")),
            msi_pvi=_float_or_none(d.get("msi_pvi")),
            prediction_id=None if d.get("prediction_id") is None else str(d["prediction_id"]),
            vhr_pv_score=_float_or_none(d.get("vhr_pv_score")),
        )


class ActiveLabels:
    """Active label geometries (lon/lat) in an STRtree; accepted ones can be added as we go."""

    def __init__(
        self, geometries: Sequence[BaseGeometry] = (), ids: Sequence[str] | None = None
    ) -> None:
        self._geoms = np.asarray(list(geometries), dtype=object)
        self._ids = list(ids) if ids is not None else [str(i) for i in range(len(self._geoms))]
        if len(self._ids) != len(self._geoms):
            raise ValueError("need one id per label geometry")
        self._tree = shapely.STRtree(self._geoms)
        self._extra: list[tuple[BaseGeometry, str]] = []

    def __len__(self) -> int:
        return len(self._geoms) + len(self._extra)

    def add(self, geometry: BaseGeometry, label_id: str) -> None:
        self._extra.append((geometry, label_id))

    def candidates(self, geometry: BaseGeometry) -> list[tuple[BaseGeometry, str]]:
        """Labels whose geometry intersects `geometry`."""
        out = []
        if len(self._geoms):
            for i in self._tree.query(geometry, predicate="intersects").tolist():
                out.append((self._geoms[i], self._ids[i]))
        for g, label_id in self._extra:
            if g.intersects(geometry):
                out.append((g, label_id))
        return out


def _polygonal(geometry: BaseGeometry) -> Polygon | MultiPolygon | None:
    if geometry is None or geometry.is_empty:
        return None
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    parts = [g for g in shapely.get_parts(geometry) if isinstance(g, Polygon) and not g.is_empty]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _shape_numbers(local: BaseGeometry, rules: AcceptanceRules) -> tuple[float, float]:
    """(worst rectangularity, narrowest width in m) over the parts that count."""
    parts = [p for p in shapely.get_parts(local) if p.area >= rules.ignore_parts_below_m2]
    if not parts:
        parts = list(shapely.get_parts(local))
    worst_rect, narrowest = math.inf, math.inf
    for part in parts:
        rect = part.minimum_rotated_rectangle
        rect_area = rect.area
        worst_rect = min(worst_rect, part.area / rect_area if rect_area > 0 else 0.0)
        coords = np.asarray(rect.exterior.coords) if isinstance(rect, Polygon) else None
        if coords is None or len(coords) < 4:
            narrowest = 0.0
            continue
        sides = np.hypot(*np.diff(coords[:3], axis=0).T)
        narrowest = min(narrowest, float(sides.min()))
    return float(worst_rect), float(narrowest)


def _overlap(
    geometry: BaseGeometry, labels: ActiveLabels, rules: AcceptanceRules
) -> tuple[float, float, str | None, bool]:
    """(IoU, fraction of the detection inside it, id, point hit) of the most overlapping label.

    "Most overlapping" is relative to the rule's bounds:
    max(IoU / max_iou_with_label, fraction / max_fraction_in_label).
    """
    candidates = labels.candidates(geometry)
    if not candidates:
        return 0.0, 0.0, None, False
    best_iou, best_frac, best_id, worst = 0.0, 0.0, None, 0.0
    polygons = []
    for g, label_id in candidates:
        if isinstance(g, shapely.Point | shapely.MultiPoint):
            if geometry.covers(g):
                return 0.0, 1.0, label_id, True
            continue
        polygons.append((g, label_id))
    if not polygons:
        return 0.0, 0.0, None, False
    c = geometry.centroid
    det, others = to_local_metric([geometry], [g for g, _ in polygons], origin=(c.x, c.y))
    d = det[0]
    d_area = d.area
    for g, (_, label_id) in zip(others, polygons, strict=True):
        g = g if g.is_valid else shapely.make_valid(g)
        inter = d.intersection(g).area
        union = d_area + g.area - inter
        value = inter / union if union > 0 else 0.0
        frac = inter / d_area if d_area > 0 else 0.0
        severity = max(
            value / max(rules.max_iou_with_label, 1e-12),
            frac / max(rules.max_fraction_in_label, 1e-12),
        )
        if severity > worst:
            best_iou, best_frac, best_id, worst = float(value), float(frac), label_id, severity
    return best_iou, best_frac, best_id, False


def _reject(rule: str, reason: str, metrics: dict[str, Any]) -> Decision:
    return Decision(False, reason, rule, metrics)


def decide(
    detection: Detection | Mapping[str, Any],
    active_labels: ActiveLabels | Sequence[BaseGeometry],
    msi_pvi: float | None,
    rules: AcceptanceRules | None = None,
) -> Decision:
    """Accept or reject one detection; `reason` names the first failed rule with its numbers."""
    rules = rules or AcceptanceRules()
    if not isinstance(detection, Detection):
        detection = Detection.from_dict(detection)
    if not isinstance(active_labels, ActiveLabels):
        active_labels = ActiveLabels(active_labels)
    pvi = _float_or_none(msi_pvi)
    metrics: dict[str, Any] = {
        "prediction_id": detection.prediction_id,
        "score": float(detection.score),
        "reported_area_m2": detection.area_m2,
        "msi_pvi": pvi,
        "vhr_pv_score": detection.vhr_pv_score,
    }
    geometry = _polygonal(detection.geometry)
    if geometry is None:
        kind = "empty" if detection.geometry.is_empty else detection.geometry.geom_type
        return _reject("geometry", f"geometry: {kind} detection has no polygon", metrics)
    local = to_local_metric([geometry], origin=(geometry.centroid.x, geometry.centroid.y))[0][0]
    area = float(local.area)
    rectangularity, width = _shape_numbers(local, rules)
    iou_max, frac_max, label_id, point_hit = _overlap(geometry, active_labels, rules)
    metrics.update(
        area_m2=area,
        n_parts=int(shapely.get_num_geometries(geometry)),
        rectangularity=rectangularity,
        min_width_m=width,
        overlap_iou=iou_max,
        overlap_fraction=frac_max,
        overlap_label_id=label_id,
    )
    score = float(detection.score)
    if not score >= rules.min_score:
        return _reject("score", f"score: {score:.3f} < min_score {rules.min_score:g}", metrics)
    if area < rules.min_area_m2:
        return _reject("area", f"area: {area:.1f} m² < min_area_m2 {rules.min_area_m2:g}", metrics)
    if area > rules.max_area_m2:
        return _reject("area", f"area: {area:.1f} m² > max_area_m2 {rules.max_area_m2:g}", metrics)
    if rectangularity < rules.min_rectangularity:
        return _reject(
            "shape",
            f"shape: sliver, rectangularity {rectangularity:.2f} < min_rectangularity "
            f"{rules.min_rectangularity:g}",
            metrics,
        )
    if width < rules.min_width_m:
        return _reject(
            "shape",
            f"shape: sliver, width {width:.2f} m < min_width_m {rules.min_width_m:g}",
            metrics,
        )
    if pvi is not None and pvi <= rules.max_water_pvi:
        return _reject(
            "msi_pvi",
            f"msi_pvi: water-like, {pvi:.3f} <= max_water_pvi {rules.max_water_pvi:g}",
            metrics,
        )
    if pvi is not None and rules.min_msi_pvi is not None and pvi < rules.min_msi_pvi:
        return _reject(
            "msi_pvi",
            f"msi_pvi: vegetation-like, {pvi:.3f} < min_msi_pvi {rules.min_msi_pvi:g}",
            metrics,
        )
    vhr = detection.vhr_pv_score
    if vhr is not None and rules.min_vhr_pv_score is not None and vhr < rules.min_vhr_pv_score:
        return _reject(
            "vhr_spectra",
            f"vhr_spectra: PV score {vhr:.1f} DN < min_vhr_pv_score {rules.min_vhr_pv_score:g} "
            "(not bluer than red / darker in NIR, like a grey or slate roof)",
            metrics,
        )
    if point_hit:
        return _reject(
            "already_labeled",
            f"already labeled: the detection covers point label {label_id}",
            metrics,
        )
    if iou_max > rules.max_iou_with_label or frac_max > rules.max_fraction_in_label:
        return _reject(
            "already_labeled",
            f"already labeled: IoU {iou_max:.2f} (max {rules.max_iou_with_label:g}), "
            f"{frac_max:.0%} inside label {label_id} (max {rules.max_fraction_in_label:.0%})",
            metrics,
        )
    return Decision(True, "accepted", None, metrics)
