"""Greedy one-to-one matching of predicted polygons to reference polygons by IoU.

Geometries come in lon/lat (EPSG:4326) and are projected to one Lambert azimuthal equal-area
projection centred on the pair of sets, so areas (and therefore IoU) are exact in m²; at partition
sizes (hundreds of metres) the shape distortion is negligible too. One geometry is one object
(one installation): a MultiPolygon counts once, with the area of all its parts.

Matching is greedy by IoU, highest first: the best remaining pair is matched, both sides leave the
pool, repeat. Candidate pairs come from an STRtree query, so cost grows with the number of
overlapping pairs, not with n_pred x n_ref.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.projection import _laea, _transformer

__all__ = ["Match", "MatchResult", "iou", "match", "to_local_metric"]


def to_local_metric(
    *groups: Sequence[BaseGeometry | None], origin: tuple[float, float] | None = None
) -> list[np.ndarray]:
    """Each group of lon/lat geometries projected to one local equal-area CRS (metres).

    `origin` (lon, lat) is the projection centre; by default the centre of all groups' bounds.
    Missing geometries stay None.
    """
    arrays = [np.asarray(list(g), dtype=object) for g in groups]
    if origin is None:
        present = [a[~shapely.is_missing(a)] for a in arrays if a.size]
        everything = np.concatenate(present) if present else np.empty(0, dtype=object)
        if everything.size == 0:
            return arrays
        xmin, ymin, xmax, ymax = shapely.total_bounds(everything)
        origin = ((xmin + xmax) / 2.0, (ymin + ymax) / 2.0)
    # Centres are rounded to 0.01° (≈ 1 km): the projection is equal-area everywhere, and its
    # shape distortion that far from the centre is below 1e-4, so one (cached) transformer
    # serves a cell.
    tr = _transformer("EPSG:4326", _laea(round(origin[0], 2), round(origin[1], 2)))

    def fwd(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return [shapely.transform(a, fwd) if a.size else a for a in arrays]


def iou(a: BaseGeometry, b: BaseGeometry) -> float:
    """Intersection over union of two geometries already in a metric CRS."""
    inter = a.intersection(b).area
    if inter <= 0.0:
        return 0.0
    union = a.area + b.area - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class Match:
    pred: int  # index into the predictions
    ref: int  # index into the references
    iou: float


@dataclass(frozen=True)
class MatchResult:
    matches: tuple[Match, ...]  # pairs with IoU >= the threshold, best first
    unmatched_pred: tuple[int, ...]
    unmatched_ref: tuple[int, ...]
    pred_areas_m2: tuple[float, ...]
    ref_areas_m2: tuple[float, ...]


def _valid(geoms: np.ndarray) -> np.ndarray:
    """Repair invalid polygons so intersections do not raise (vectorized masks can self-touch)."""
    if geoms.size == 0:
        return geoms
    bad = ~shapely.is_valid(geoms) & ~shapely.is_missing(geoms)
    if bad.any():
        geoms = geoms.copy()
        geoms[bad] = shapely.make_valid(geoms[bad])
    return geoms


def match_metric(preds: np.ndarray, refs: np.ndarray, *, iou_threshold: float = 0.5) -> MatchResult:
    """`match` on geometries already in a metric CRS."""
    preds, refs = _valid(preds), _valid(refs)
    pairs: list[tuple[float, int, int]] = []
    if preds.size and refs.size:
        tree = shapely.STRtree(refs)
        pi, ri = tree.query(preds, predicate="intersects")
        for p, r in zip(pi.tolist(), ri.tolist(), strict=True):
            value = iou(preds[p], refs[r])
            if value >= iou_threshold and value > 0.0:
                pairs.append((value, p, r))
    # Highest IoU first; ties broken by index so the result is deterministic.
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    used_p: set[int] = set()
    used_r: set[int] = set()
    matches = []
    for value, p, r in pairs:
        if p in used_p or r in used_r:
            continue
        used_p.add(p)
        used_r.add(r)
        matches.append(Match(p, r, value))
    return MatchResult(
        matches=tuple(matches),
        unmatched_pred=tuple(i for i in range(len(preds)) if i not in used_p),
        unmatched_ref=tuple(i for i in range(len(refs)) if i not in used_r),
        pred_areas_m2=tuple(float(a) for a in shapely.area(preds)) if preds.size else (),
        ref_areas_m2=tuple(float(a) for a in shapely.area(refs)) if refs.size else (),
    )


def match(
    predictions: Sequence[BaseGeometry],
    references: Sequence[BaseGeometry],
    *,
    iou_threshold: float = 0.5,
) -> MatchResult:
    """Greedy one-to-one matching of lon/lat predictions to lon/lat references.

    Only pairs with IoU >= `iou_threshold` can match (0 keeps every overlapping pair).
    """
    preds, refs = to_local_metric(predictions, references)
    return match_metric(preds, refs, iou_threshold=iou_threshold)
