"""Acceptance thresholds calibrated in each round from the data the round has.

A threshold that depends on the imagery or on the model is never a constant fitted to one
world. After a round's model is trained, and before any of its detections is decided,
`calibrate_round` derives three of them from the round's own `training_data` (the Lance version
the model trained on) and the model itself; the result is stored with the model
(`models.params["calibration"]`) and every backfill decision records the values it used, so a
round replays exactly. The hidden truth of a synthetic world is never read here.

- `min_score` (the model's score of a detection, its mean probability): from the labelled
  **validation chips**. The model runs over them; its objects (components of p >= 0.5, parts
  within the predictions' grouping distance joined, as `vectorize_probabilities` joins them)
  are matched one to one to the labelled objects of the chips' masks (IoU >= 0.3). F0.5
  (precision counts twice: an accepted false positive is a training positive of the next round)
  is maximised over the objects' scores within [0.5, 0.95]; the optimum is a gap between two
  object scores, and the threshold is its middle (the lowest of a few labelled objects sits well
  above the lower tail of all panels' scores, so the gap's top edge would cut many of those
  the model finds across a cell; the gap's middle keeps the widest margin). Objects smaller
  than the round's `min_area_m2` are left out (the area rule rejects them anyway). False
  positives are the objects on label-free chips (clean and hard negatives); an unmatched
  object on a chip with labels may be a panel nobody labelled (seeds are 30 % of the panels),
  so it counts half.
  With fewer than `MIN_OBJECTS` labelled or predicted objects, or none matched, the validation
  chips are pooled with the train chips; failing that, the documented default is kept and the
  record says why.
- `min_vhr_pv_score` (VHR spectral agreement, (B − R) + ½·(B − NIR) in DN): from the **seed
  labels' own pixels against their surroundings**. For every labelled object of the round's
  positive training chips (train and val splits) the median score over its mask is compared
  with the median over the ring 1–4 m around it (the roof or ground the panels sit on). When
  the objects separate from their surroundings (AUC >= `MIN_SPECTRAL_AUC`), the threshold keeps
  95 % of the labelled objects (their 5th percentile); when they do not (thin-film or black
  panels on dark roofs, RGB-only imagery), the score says nothing about PV in this imagery and
  the rule is off for the round (value None).
- `max_water_pvi` (Sentinel-2 PVI, open water = −1): from the same objects' PVI (the mean over
  the 10 m pixels their mask touches): halfway between water's −1 and the objects' lowest value,
  and never above the documented default (−0.95).

- `min_area_m2`: 0.5 x the lower quartile of the labelled systems' areas x the model's outline
  ratio (never below the default 4 m²): what PV systems measure differs by place, and a
  detection far smaller than any labelled one is more likely a solar-thermal collector or a
  skylight. The rule reads the model's outline of a detection, so the bound is scaled by the
  median ratio of the model's object area to its matched labelled object's area on the train
  and val chips (clipped to 0.5–1.0; 1 with fewer than 3 pairs). A system's area is its
  accepted masks summed over the train and val chips of one date that show it
  (`metadata.mask_qa`), so a system across chip edges counts whole; a label on several dates
  counts its largest footprint once.

The maximum area, shape and overlap with labels stay documented defaults
(flywheel_core.flywheel.acceptance): they describe PV systems and masks, not the imagery.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from flywheel_core.flywheel.acceptance import AcceptanceRules
from flywheel_core.masks.backends.classical import pv_score

log = logging.getLogger(__name__)

CALIBRATION_VERSION = 2  # 2: the area bound in the model's outline scale
MIN_OBJECTS = 3  # fewer labelled (or predicted) objects than this: keep the default
MIN_SPECTRAL_OBJECTS = 5
MIN_SPECTRAL_AUC = 0.8
SPECTRAL_KEEP = 0.95  # share of labelled objects the spectral threshold keeps
SCORE_RANGE = (0.5, 0.95)
SCORE_BETA = 0.5
MATCH_IOU = 0.3
# An unmatched object on a chip with labels is a false positive or a panel nobody labelled: it
# counts half (seeds are 30 % of the panels, so early rounds leave many unlabelled).
UNKNOWN_FP_WEIGHT = 0.5
RING_M = (1.0, 4.0)
GROUP_M = 8.5  # = PredictionConfig.group_distance_m: rows of one array are one object
MIN_PART_M2 = 2.0  # = PredictionConfig.min_area_m2
WATER_PVI = -1.0
AREA_FACTOR = 0.5
# Bounds of the model-outline / mask area ratio the area bound is scaled by (outline_ratio): a
# model that has not learnt edges yet must not move the bound more than that either way.
OUTLINE_RATIO_RANGE = (0.5, 1.0)

# Documented defaults, used when a round has too little evidence (the reason is recorded).
DEFAULTS: dict[str, float | None] = {
    "min_score": AcceptanceRules.min_score,
    "min_area_m2": AcceptanceRules.min_area_m2,
    "min_vhr_pv_score": None,
    "max_water_pvi": AcceptanceRules.max_water_pvi,
}


@dataclass(frozen=True)
class Threshold:
    """One calibrated rule bound: its value (None = rule off), how it was found, on what."""

    value: float | None
    method: str
    default: float | None
    evidence: dict[str, Any] = field(default_factory=dict)
    rows: tuple[str, ...] = ()  # training_data uids (chips) the value was computed on


@dataclass(frozen=True)
class Calibration:
    as_of: str | None
    lance_version: int | None
    thresholds: dict[str, Threshold]
    version: int = CALIBRATION_VERSION

    def apply(self, rules: AcceptanceRules | None = None) -> AcceptanceRules:
        """`rules` with the calibrated bounds in place of the defaults."""
        bounds: dict[str, Any] = {k: t.value for k, t in self.thresholds.items()}
        return replace(rules or AcceptanceRules(), **bounds)

    def values(self) -> dict[str, float | None]:
        return {k: t.value for k, t in self.thresholds.items()}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for t in out["thresholds"].values():
            t["rows"] = list(t["rows"])
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(
            as_of=d.get("as_of"),
            lance_version=d.get("lance_version"),
            thresholds={
                k: Threshold(
                    value=t["value"],
                    method=t["method"],
                    default=t.get("default"),
                    evidence=dict(t.get("evidence", {})),
                    rows=tuple(t.get("rows", ())),
                )
                for k, t in d["thresholds"].items()
            },
            version=int(d.get("version", CALIBRATION_VERSION)),
        )

    @property
    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def summary(self) -> str:
        parts = []
        for k, t in self.thresholds.items():
            v = "off" if t.value is None else f"{t.value:.3g}"
            parts.append(f"{k} {v} ({t.method})")
        return "; ".join(parts)


def default_calibration(reason: str) -> Calibration:
    """The documented defaults, e.g. for a model registered before calibration existed."""
    return Calibration(
        as_of=None,
        lance_version=None,
        thresholds={k: Threshold(v, f"default: {reason}", v) for k, v in DEFAULTS.items()},
    )


# -- objects in a chip ------------------------------------------------------------------------


def group_objects(mask: np.ndarray, gsd_m: float, group_m: float = GROUP_M) -> np.ndarray:
    """Object labels (0 = none) of a boolean mask: parts below MIN_PART_M2 dropped, parts within
    `group_m` of each other joined (rows of one array are one installation)."""
    parts, n = ndimage.label(mask)
    if n == 0:
        return parts
    sizes = ndimage.sum(mask, parts, index=np.arange(1, n + 1)) * gsd_m * gsd_m
    keep = np.isin(parts, np.flatnonzero(sizes >= MIN_PART_M2) + 1)
    if not keep.any():
        return np.zeros_like(parts)
    radius = max(0, round(group_m / gsd_m / 2.0))
    joined = ndimage.binary_dilation(keep, iterations=radius) if radius else keep
    groups, _ = ndimage.label(joined, structure=np.ones((3, 3), bool))
    out = np.where(keep, groups, 0)
    ids = np.unique(out[out > 0])
    lookup = np.zeros(int(out.max()) + 1, dtype=np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1)
    return lookup[out]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0


@dataclass(frozen=True)
class ScoredObject:
    score: float  # mean probability over the object's pixels
    matched: bool  # one-to-one match with a labelled object at IoU >= MATCH_IOU
    # False for an unmatched object on a chip with labels: with partial labels it may be a panel
    # nobody labelled, so it counts neither way; an object on a label-free (negative) chip is a
    # known false positive
    known: bool = True
    area_m2: float = math.inf  # the object's area on the chip (cut by its edge: smaller)
    label_area_m2: float | None = None  # the matched labelled object's area on the chip


def score_objects(
    prob: np.ndarray, mask: np.ndarray, gsd_m: float, threshold: float = 0.5
) -> tuple[list[ScoredObject], int]:
    """(predicted objects with their score and match, number of labelled objects) of one chip."""
    pred = group_objects(prob >= threshold, gsd_m)
    ref = group_objects(mask.astype(bool), gsd_m)
    n_pred, n_ref = int(pred.max()), int(ref.max())
    pairs = []
    for i in range(1, n_pred + 1):
        p = pred == i
        for j in np.unique(ref[p]):
            if j == 0:
                continue
            v = _iou(p, ref == j)
            if v >= MATCH_IOU:
                pairs.append((v, i, int(j)))
    match: dict[int, int] = {}  # predicted object -> its labelled object
    for _, i, j in sorted(pairs, reverse=True):
        if i not in match and j not in match.values():
            match[i] = j
    negative = n_ref == 0
    pixel_m2 = gsd_m * gsd_m
    objects = []
    for i in range(1, n_pred + 1):
        obj = pred == i
        score, area = float(prob[obj].mean()), float(obj.sum() * pixel_m2)
        label_area = float((ref == match[i]).sum() * pixel_m2) if i in match else None
        objects.append(ScoredObject(score, i in match, i in match or negative, area, label_area))
    return objects, n_ref


def _ring(obj: np.ndarray, gsd_m: float, others: np.ndarray) -> np.ndarray:
    inner = max(1, round(RING_M[0] / gsd_m))
    outer = max(inner + 1, round(RING_M[1] / gsd_m))
    near = ndimage.binary_dilation(obj, iterations=outer)
    close = ndimage.binary_dilation(obj, iterations=inner)
    return near & ~close & ~others


@dataclass(frozen=True)
class ObjectSpectra:
    """A labelled object's VHR PV score (median over its mask and over its surroundings) and its
    Sentinel-2 PVI (mean over the 10 m pixels the mask touches; None without MSI)."""

    uid: str
    score: float
    ring_score: float | None
    pvi: float | None


def object_spectra(
    uid: str,
    image: np.ndarray,
    mask: np.ndarray,
    gsd_m: float,
    pvi: np.ndarray | None = None,
    msi_gsd_m: float = 10.0,
) -> list[ObjectSpectra]:
    """Per labelled object of one chip: image (bands, H, W) uint8, mask (H, W), pvi (h, w)."""
    if image.shape[0] < 3:
        return []
    score = pv_score(np.moveaxis(image, 0, -1))
    objects = group_objects(mask.astype(bool), gsd_m)
    labelled = mask.astype(bool)
    out = []
    for i in range(1, int(objects.max()) + 1):
        obj = objects == i
        ring = _ring(obj, gsd_m, labelled)
        out.append(
            ObjectSpectra(
                uid=uid,
                score=float(np.median(score[obj])),
                ring_score=float(np.median(score[ring])) if ring.any() else None,
                pvi=_object_pvi(obj, pvi, gsd_m, msi_gsd_m) if pvi is not None else None,
            )
        )
    return out


def _object_pvi(obj: np.ndarray, pvi: np.ndarray, gsd_m: float, msi_gsd_m: float) -> float | None:
    """Mean PVI over the MSI pixels (grid anchored at the chip corner) the object touches."""
    rows, cols = np.nonzero(obj)
    step = msi_gsd_m / gsd_m
    r = np.clip((rows // step).astype(int), 0, pvi.shape[0] - 1)
    c = np.clip((cols // step).astype(int), 0, pvi.shape[1] - 1)
    touched = np.unique(r * pvi.shape[1] + c)
    values = pvi.reshape(-1)[touched]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


# -- the three thresholds -----------------------------------------------------------------------


def _kept(objects: Sequence[ScoredObject], t: float) -> tuple[int, float]:
    """(true positives, weighted objects) at or above `t`: an object that may be an unlabelled
    panel counts `UNKNOWN_FP_WEIGHT` of a false positive."""
    kept = [o for o in objects if o.score >= t]
    weight = sum(1.0 if o.known else UNKNOWN_FP_WEIGHT for o in kept)
    return sum(o.matched for o in kept), weight


def calibrate_min_score(
    objects: Sequence[ScoredObject], n_labelled: int, rows: Sequence[str] = ()
) -> Threshold:
    default = DEFAULTS["min_score"]
    matched = sum(o.matched for o in objects)
    evidence: dict[str, Any] = {
        "predicted_objects": len(objects),
        "labelled_objects": int(n_labelled),
        "matched": int(matched),
    }
    if n_labelled < MIN_OBJECTS or len(objects) < MIN_OBJECTS or matched == 0:
        why = (
            f"too little validation evidence ({n_labelled} labelled, {len(objects)} predicted, "
            f"{matched} matched objects; need >= {MIN_OBJECTS}, >= {MIN_OBJECTS}, >= 1)"
        )
        return Threshold(default, f"default: {why}", default, evidence, tuple(rows))
    lo, hi = SCORE_RANGE
    candidates = sorted({o.score for o in objects if o.score >= lo} | {lo})
    beta2 = SCORE_BETA**2
    best_t, best_f = lo, -1.0
    for t in candidates:
        tp, weight = _kept(objects, t)
        if tp == 0:
            continue
        p, r = tp / weight, tp / n_labelled
        f = (1 + beta2) * p * r / (beta2 * p + r)
        if f > best_f + 1e-12:
            best_t, best_f = t, f
    tp, weight = _kept(objects, best_t)
    # Every bound between the highest object below the optimum and the optimum scores the same
    # F0.5 on these chips: take the middle of that gap (the widest margin on both sides), not its
    # top edge. The top edge is the lowest labelled object's score, and the lowest of a handful
    # of labelled objects lies well above the lower tail of all panels' scores (scored over a
    # whole cell the panels spread ~0.1 lower than the few on the validation chips).
    below = max((o.score for o in objects if lo <= o.score < best_t), default=lo)
    value = min((below + best_t) / 2.0, hi)
    evidence.update(
        f05=round(best_f, 4),
        precision=round(tp / weight, 4) if weight else None,
        recall=round(tp / n_labelled, 4),
        gap=[round(float(below), 4), round(float(best_t), 4)],
    )
    method = "F0.5-optimal on validation chips, middle of the optimal gap"
    return Threshold(round(float(value), 4), method, default, evidence, tuple(rows))


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(positive > negative) + ½ P(tie) (Mann–Whitney)."""
    pos, neg = np.asarray(positives, float), np.asarray(negatives, float)
    if not pos.size or not neg.size:
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def calibrate_vhr_pv_score(objects: Sequence[ObjectSpectra]) -> Threshold:
    scores = [o.score for o in objects]
    rings = [o.ring_score for o in objects if o.ring_score is not None]
    rows = tuple(sorted({o.uid for o in objects}))
    evidence: dict[str, Any] = {"objects": len(scores), "rings": len(rings)}
    if len(scores) < MIN_SPECTRAL_OBJECTS or not rings:
        why = f"too few labelled objects ({len(scores)} < {MIN_SPECTRAL_OBJECTS}): rule off"
        return Threshold(None, why, None, evidence, rows)
    separation = auc(scores, rings)
    q = np.quantile(scores, [0.05, 0.5])
    evidence.update(
        auc=round(separation, 4),
        object_p05=round(float(q[0]), 2),
        object_median=round(float(q[1]), 2),
        ring_median=round(float(np.median(rings)), 2),
    )
    if separation < MIN_SPECTRAL_AUC:
        why = (
            f"labelled objects do not separate from their surroundings "
            f"(AUC {separation:.2f} < {MIN_SPECTRAL_AUC}): rule off"
        )
        return Threshold(None, why, None, evidence, rows)
    value = float(np.quantile(scores, 1.0 - SPECTRAL_KEEP))
    method = f"keeps {SPECTRAL_KEEP:.0%} of labelled objects (AUC {separation:.2f} vs surroundings)"
    return Threshold(round(value, 2), method, None, evidence, rows)


def outline_ratio(objects: Sequence[ScoredObject]) -> tuple[float, int]:
    """(median of the model's object area / its matched labelled object's area, pairs used),
    clipped to `OUTLINE_RATIO_RANGE`; 1.0 with fewer than `MIN_OBJECTS` pairs.

    The area rule reads the model's outline of a detection (pixels of p >= 0.5), and a model's
    outline is tighter or looser than the masks it learnt from: a bound set in mask areas would
    cut (or pass) systems by how the model draws edges, not by their size."""
    ratios = [
        o.area_m2 / o.label_area_m2
        for o in objects
        if o.matched and o.label_area_m2 and math.isfinite(o.area_m2)
    ]
    if len(ratios) < MIN_OBJECTS:
        return 1.0, len(ratios)
    lo, hi = OUTLINE_RATIO_RANGE
    return float(min(max(float(np.median(ratios)), lo), hi)), len(ratios)


def calibrate_min_area(
    areas: Mapping[str, float], rows: Sequence[str] = (), outline: tuple[float, int] = (1.0, 0)
) -> Threshold:
    """`AREA_FACTOR` x the lower quartile of the labelled systems' areas (`areas`: label id ->
    m², its accepted masks summed over the chips that show it) x the model's outline ratio
    (`outline_ratio`), never below the default: a detection far smaller than the systems the
    labels show is more likely a solar-thermal collector or a skylight than a PV system. The
    quartile, not the minimum, so a few small false labels of an earlier round do not drag it
    down. A label partly on chips outside the train and val splits counts smaller than it is,
    which errs towards a lower bound."""
    default = DEFAULTS["min_area_m2"]
    values = [float(a) for a in areas.values() if a and a > 0]
    if len(values) < MIN_OBJECTS:
        why = f"default: too few labelled systems ({len(values)} < {MIN_OBJECTS})"
        return Threshold(default, why, default, {"objects": len(values)}, tuple(rows))
    q25 = float(np.quantile(values, 0.25))
    ratio, pairs = outline
    value = max(float(default or 0.0), AREA_FACTOR * q25 * ratio)
    evidence = {
        "objects": len(values),
        "area_p25_m2": round(q25, 2),
        "smallest_m2": round(min(values), 2),
        "outline_ratio": round(ratio, 3),
        "outline_pairs": pairs,
    }
    method = (
        f"{AREA_FACTOR:g} x the lower quartile of labelled systems' areas x the model's outline "
        f"ratio {ratio:.2f} ({pairs} matched objects), >= the default"
    )
    return Threshold(round(value, 2), method, default, evidence, tuple(rows))


def calibrate_water_pvi(objects: Sequence[ObjectSpectra]) -> Threshold:
    default = DEFAULTS["max_water_pvi"]
    pvis = [o.pvi for o in objects if o.pvi is not None]
    rows = tuple(sorted({o.uid for o in objects if o.pvi is not None}))
    if not pvis:
        return Threshold(default, "default: no labelled object with MSI", default, {}, rows)
    lowest = float(min(pvis))
    value = min(float(default) if default is not None else math.inf, (WATER_PVI + lowest) / 2.0)
    evidence = {"objects": len(pvis), "lowest_pvi": round(lowest, 4)}
    method = "halfway between open water (-1) and the lowest labelled object, at most the default"
    return Threshold(round(value, 4), method, default, evidence, rows)


# -- a round -----------------------------------------------------------------------------------


Predict = Callable[[Any], np.ndarray]  # a batch of model inputs -> (B, H, W) probabilities


@dataclass(frozen=True)
class LabelledChip:
    """What calibration reads of one positive `training_data` row."""

    uid: str
    split: str
    image: np.ndarray  # (bands, H, W) uint8
    mask: np.ndarray  # (H, W) bool
    gsd_m: float
    pvi: np.ndarray | None  # (h, w) at 10 m, None without MSI
    # accepted mask area (m²) per label on this chip (its `metadata.mask_qa`)
    label_areas: Mapping[str, float] = field(default_factory=dict)
    date: str | None = None  # the chip's date: a label's area is summed over one date's chips


ScoredChips = dict[str, tuple[list[ScoredObject], int, list[str]]]


def scored_chips(outputs: Iterable[tuple[str, str, np.ndarray, np.ndarray, float]]) -> ScoredChips:
    """Per split ("val", "train"): (the model's objects, labelled objects, chip uids)."""
    out: ScoredChips = {"val": ([], 0, []), "train": ([], 0, [])}
    for uid, split, prob, mask, gsd in outputs:
        objects, n, rows = out[split]
        found, k = score_objects(prob, mask, gsd)
        out[split] = (objects + found, n + k, [*rows, uid])
    return out


def _min_score(scored: ScoredChips, min_area_m2: float | None) -> Threshold:
    """F0.5 on the validation chips; on train + validation chips when validation alone has too
    little evidence (a first round has a handful of chips: its train chips then speak, and since
    the model has seen them their objects score high, which errs towards a higher bound).

    Objects smaller than the round's `min_area_m2` are left out: the area rule rejects them
    whatever their score, so a confident small look-alike (a solar-thermal collector) must not
    raise the bound every larger panel has to pass."""
    smallest = min_area_m2 or 0.0
    objects = {
        k: [o for o in found if o.matched or o.area_m2 >= smallest]
        for k, (found, _, _) in scored.items()
    }
    labelled = {k: n for k, (_, n, _) in scored.items()}
    rows = {k: r for k, (_, _, r) in scored.items()}
    val = calibrate_min_score(objects["val"], labelled["val"], sorted(rows["val"]))
    if not val.method.startswith("default") or not rows["train"]:
        return val
    pooled = calibrate_min_score(
        objects["val"] + objects["train"],
        labelled["val"] + labelled["train"],
        sorted(rows["val"] + rows["train"]),
    )
    if pooled.method.startswith("default"):
        return val
    method = f"{pooled.method.replace('validation', 'train + validation')} ({val.method})"
    return replace(pooled, method=method, evidence={**pooled.evidence, "validation": val.evidence})


def calibrate(
    chips: Iterable[LabelledChip],
    outputs: Iterable[tuple[str, str, np.ndarray, np.ndarray, float]],
    *,
    as_of: str | None,
    lance_version: int | None,
) -> Calibration:
    """The round's calibration from its positive chips and the model's outputs.

    `outputs` yields (uid, split, probability (H, W), labelled mask (H, W), gsd) per validation
    (and train) chip.
    """
    spectra: list[ObjectSpectra] = []
    by_date: dict[tuple[str, str | None], float] = {}  # (label, date): summed over its chips
    area_rows: list[str] = []
    for chip in chips:
        if chip.split in ("train", "val"):
            spectra += object_spectra(chip.uid, chip.image, chip.mask, chip.gsd_m, chip.pvi)
            for label_id, area in chip.label_areas.items():
                key = (label_id, chip.date)
                by_date[key] = by_date.get(key, 0.0) + float(area)
            if chip.label_areas:
                area_rows.append(chip.uid)
    areas: dict[str, float] = {}  # a label seen on several dates: its largest footprint
    for (label_id, _), area in by_date.items():
        areas[label_id] = max(areas.get(label_id, 0.0), area)
    scored = scored_chips(outputs)
    outline = outline_ratio([o for found, _, _ in scored.values() for o in found])
    min_area = calibrate_min_area(areas, sorted(area_rows), outline)
    result = Calibration(
        as_of=as_of,
        lance_version=lance_version,
        thresholds={
            "min_score": _min_score(scored, min_area.value),
            "min_area_m2": min_area,
            "min_vhr_pv_score": calibrate_vhr_pv_score(spectra),
            "max_water_pvi": calibrate_water_pvi(spectra),
        },
    )
    log.info("calibration as of %s: %s", as_of, result.summary())
    return result


# -- reading a round's training data ------------------------------------------------------------


_ROW_COLUMNS = [
    "uid",
    "split",
    "date",
    "cell",
    "vhr_image_chip",
    "generated_mask",
    "msi_image_chip",
    "metadata.vhr_shape",
    "metadata.msi_shape",
    "metadata.msi_channels",
    "metadata.gsd_m",
    "metadata.msi_gsd_m",
    "metadata.negative",
    "metadata.mask_qa",
]


def labelled_chips(
    uri: str, version: int, as_of: str | None, cells: Sequence[str] | None = None
) -> tuple[list[LabelledChip], dict[str, float]]:
    """(positive train/val chips, GSD per train/val uid) of `training_data` at `version`."""
    from flywheel_core.train.dataset import open_lance, row_filter

    ds = open_lance(uri, version)
    where = " AND ".join(
        p for p in ("split IN ('train', 'val')", row_filter(None, as_of, cells)) if p
    )
    table = ds.to_table(columns=_ROW_COLUMNS, filter=where)
    chips, gsds = [], {}
    for r in table.to_pylist():
        gsds[r["uid"]] = float(r["metadata.gsd_m"])
        if r["metadata.negative"]:
            continue
        shape = tuple(r["metadata.vhr_shape"])
        mask = np.frombuffer(r["generated_mask"], np.uint8).reshape(shape[1:]) > 0
        if not mask.any():
            continue
        pvi = None
        channels = list(r["metadata.msi_channels"] or [])
        if r["msi_image_chip"] is not None and "pvi" in channels:
            msi = np.frombuffer(r["msi_image_chip"], np.float32).reshape(r["metadata.msi_shape"])
            pvi = msi[channels.index("pvi")]
        chips.append(
            LabelledChip(
                uid=r["uid"],
                split=r["split"],
                image=np.frombuffer(r["vhr_image_chip"], np.uint8).reshape(shape),
                mask=mask,
                gsd_m=float(r["metadata.gsd_m"]),
                pvi=pvi,
                label_areas=_label_areas(r["metadata.mask_qa"]),
                date=str(r["date"]),
            )
        )
    return chips, gsds


def _label_areas(mask_qa: Sequence[dict[str, Any]] | None) -> dict[str, float]:
    """Accepted mask area per label of one chip's `metadata.mask_qa` entries."""
    out: dict[str, float] = {}
    for q in mask_qa or ():
        if q.get("label_id") and q.get("mask_area_m2"):
            out[q["label_id"]] = out.get(q["label_id"], 0.0) + float(q["mask_area_m2"])
    return out


def calibrate_model(
    predict_proba: Callable[[Any], Any],
    uri: str,
    version: int,
    *,
    as_of: str | None,
    cells: Sequence[str] | None = None,
    bands: str = "vhr",
    batch_size: int = 8,
) -> Calibration:
    """`calibrate` for a trained model (`predict_proba`: a (B, C, H, W) float tensor -> (B, 1,
    H, W) probabilities, e.g. PVSegmentationModule.predict_proba) on `training_data`@version."""
    import torch

    from flywheel_core.train.dataset import LanceChipDataset, collate_samples

    chips, gsds = labelled_chips(uri, version, as_of, cells)

    def outputs() -> Iterable[tuple[str, str, np.ndarray, np.ndarray, float]]:
        for split in ("val", "train"):
            ds = LanceChipDataset(uri, version, split=split, as_of=as_of, cells=cells, bands=bands)
            for b in range(0, len(ds), batch_size):
                # uint8 samples -> the float input (VHR / 255, MSI appended), as in training
                batch = collate_samples(
                    ds.__getitems__(list(range(b, min(b + batch_size, len(ds)))))
                )
                with torch.no_grad():
                    prob = predict_proba(batch["image"]).cpu().numpy()
                masks = batch["mask"][:, 0].numpy() > 0.5
                for uid, p, m in zip(batch["uid"], prob, masks, strict=True):
                    yield uid, split, p[0], m, gsds[uid]

    return calibrate(chips, outputs(), as_of=as_of, lance_version=version)
