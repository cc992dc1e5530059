"""Write accepted detections back to the lake as labels, and every decision to `backfill_log`.

`backfill` runs four steps, each a function of its own:
1. `decide_all`: every rule of flywheel_core.flywheel.acceptance, with the bounds the round's
   calibration (flywheel_core.flywheel.calibration) set, against the active labels near the
   detections (read before anything is written);
2. `confirm_with_masks`: each accepted detection goes through the mask factory as a prompt, with
   the same back ends and QA as seed labels; a refused mask rejects it (rule `mask_qa`);
3. `label_rows` / `log_rows`: the rows, the label keeping the refined footprint as its geometry
   and the detection's own polygon and the mask's provenance in its properties, every log row
   the numbers of its rules and the bounds used;
4. `write`: one DuckLake transaction, so one snapshot: a training run that records a snapshot id
   sees all of a partition's backfill or none of it, and a failure midway (or in any earlier
   step) leaves the lake unchanged.

Re-running is harmless:
- label ids are uuid5 over (model_id, cell, date, round, normalized geometry), so the same
  detection of the same partition and round maps to the same label, which is inserted only once
  (and never resurrected: an id already in the lake, even retracted, counts as already present);
- when deciding, the labels this very batch would produce are left out of the "already labeled"
  test, and detections are decided best score first against the lake's other active labels
  plus the batch's earlier acceptances, so a re-run reaches the same decisions;
- log ids are uuid5 over (asset, model_id, cell, date, round, detection key, decision, reason),
  so the same decision is logged once; a changed decision (new rules) is logged as a new row.

`backfill_log.snapshot_id` is the lake snapshot the decisions were made against (the one before
this transaction); the result carries the snapshot the transaction created.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from flywheel_core.flywheel.acceptance import (
    AcceptanceRules,
    ActiveLabels,
    Decision,
    Detection,
    as_geometry,
    decide,
)
from flywheel_core.flywheel.calibration import Calibration
from flywheel_core.flywheel.label_rows import model_label_id, model_label_row
from flywheel_core.flywheel.metrics import PartitionMetrics, compute_metrics
from flywheel_core.geo.antimeridian import normalize_rings
from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.labels.geometry import clean_geometry
from flywheel_core.labels.ids import NAMESPACE, geometry_key
from flywheel_core.lake.backfill import write_backfill
from flywheel_core.lake.label_boxes import active_labels_in_box
from flywheel_core.lake.labels import current_snapshot_id, labels_for_cell
from flywheel_core.lake.spatial_filters import box_of

__all__ = [
    "BackfillResult",
    "DecidedDetection",
    "Refinement",
    "backfill",
    "confirm_with_masks",
    "decide_all",
    "label_rows",
    "log_rows",
    "partition_metrics",
    "truth_in_cell",
    "write",
]

LOG_NAMESPACE = uuid.uuid5(NAMESPACE, "backfill_log")


@dataclass(frozen=True)
class DecidedDetection:
    """One detection as it was decided (repaired geometry), for steps that follow the backfill."""

    detection: Detection
    accepted: bool
    rule: str | None  # the failed rule, None when accepted
    reason: str


@dataclass(frozen=True)
class BackfillResult:
    n_detections: int
    accepted: int
    rejected: dict[str, int]  # rule name -> count
    inserted: int  # new label rows
    already_present: int  # accepted, but the label id was already in the lake
    logged: int  # new backfill_log rows (0 on a re-run)
    snapshot_id: int  # snapshot after the transaction (unchanged if nothing was written)
    label_ids: tuple[str, ...] = ()  # ids of the accepted labels, new or already present
    new_cells: tuple[str, ...] = ()  # S2 cells covered by the inserted labels
    reasons: dict[str, int] = field(default_factory=dict)  # rejection reason text -> count
    decided: tuple[DecidedDetection, ...] = field(default=(), repr=False)  # best score first

    def as_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, decided=()))
        del out["decided"]
        return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def _finite(score: float) -> float:
    score = float(score)
    return score if math.isfinite(score) else -math.inf


def _metrics_json(metrics: Mapping[str, Any]) -> str:
    return json.dumps({k: _jsonable(v) for k, v in metrics.items()}, sort_keys=True)


def _detection_key(det: Detection) -> str:
    return f"pred:{det.prediction_id}" if det.prediction_id else f"wkb:{geometry_key(det.geometry)}"


def _log_id(
    asset: str, model_id: str, cell: str, day: dt.date, round_: int, det: Detection, d: Decision
) -> str:
    parts = [asset, model_id, cell, day.isoformat(), str(round_), _detection_key(det)]
    parts += ["accepted" if d.accepted else "rejected", d.reason]
    return str(uuid.uuid5(LOG_NAMESPACE, "\x1f".join(parts)))


def _active_labels_near(
    con: duckdb.DuckDBPyConnection, geometries: Sequence[BaseGeometry], exclude: set[str]
) -> ActiveLabels:
    """Active labels (any source, any install date) whose bbox meets the detections' box (date
    line aware: detections either side of ±180 ask for the degree round it, not the globe)."""
    rows = active_labels_in_box(con, box_of(geometries))
    kept = [(i, g) for i, g in rows if i not in exclude]
    return ActiveLabels([shapely.from_wkb(g) for _, g in kept], [i for i, _ in kept])


def _repaired(det: Detection) -> Detection:
    """The detection with its polygon repaired as label imports repair theirs (2-D, valid, and a
    ring across lon ±180 split there, as labels are stored: else it reads as a globe-wide band)."""
    cleaned = clean_geometry(det.geometry).geometry
    if cleaned is not None:
        cleaned = normalize_rings(np.asarray([cleaned], dtype=object))[0]
    if cleaned is None or cleaned.equals_exact(det.geometry, 0.0):
        return det
    return replace(det, geometry=cleaned)


@dataclass(frozen=True)
class Refinement:
    """What the mask factory made of one accepted detection (flywheel_core.masks.detections)."""

    accepted: bool
    geometry: BaseGeometry | None  # the refined footprint in lon/lat; None when refused
    reason: str  # "accepted", or the masks' QA reasons
    provenance: dict[str, Any] = field(default_factory=dict)  # back end, model, QA numbers


Refiner = Callable[[Sequence[Detection]], Sequence[Refinement]]


def decide_all(
    dets: Sequence[Detection], ids: Sequence[str], active: ActiveLabels, rules: AcceptanceRules
) -> list[Decision]:
    """Every detection decided, best score first, each acceptance joining the active labels (so a
    lower-scored twin of an accepted detection is `already_labeled`)."""
    decisions = []
    for det, label_id in zip(dets, ids, strict=True):
        decision = decide(det, active, det.msi_pvi, rules)
        decisions.append(decision)
        if decision.accepted:
            active.add(det.geometry, label_id)
    return decisions


def confirm_with_masks(
    dets: Sequence[Detection],
    decisions: Sequence[Decision],
    refine: Refiner | None,
    min_area_m2: float | None = None,
) -> tuple[list[Decision], list[Refinement | None]]:
    """Accepted detections through the mask factory: a refused mask rejects the detection
    (rule `mask_qa`), as a rejected mask makes a seed label's chip ambiguous. So does a refined
    footprint below `min_area_m2`: the label would be that footprint, and the area rule holds
    for labels, not only for the model's looser outline (a 25 m² blur around a 6 m² collector)."""
    refinements: list[Refinement | None] = [None] * len(dets)
    accepted = [i for i, d in enumerate(decisions) if d.accepted]
    if refine is None or not accepted:
        return list(decisions), refinements
    out = list(decisions)
    for i, ref in zip(accepted, refine([dets[i] for i in accepted]), strict=True):
        refinements[i] = ref
        metrics = {**decisions[i].metrics, "mask": ref.provenance}
        refined_m2 = ref.provenance.get("mask_area_m2") if ref.geometry is not None else None
        if ref.accepted and min_area_m2 and refined_m2 is not None and refined_m2 < min_area_m2:
            why = f"mask_qa: refined footprint {refined_m2:.1f} m² < min_area_m2 {min_area_m2:g}"
            out[i] = Decision(False, why, "mask_qa", metrics)
        elif ref.accepted:
            out[i] = replace(decisions[i], metrics=metrics)
        else:
            out[i] = Decision(False, f"mask_qa: {ref.reason}", "mask_qa", metrics)
    return out, refinements


def label_rows(
    dets: Sequence[Detection],
    ids: Sequence[str],
    decisions: Sequence[Decision],
    refinements: Sequence[Refinement | None],
    *,
    cell: str,
    day: dt.date,
    round_: int,
    model_id: str,
    s2_level: int,
    h3_resolution: int,
    created_at: dt.datetime,
    run_id: str | None,
    calibration: str | None,
) -> list[dict[str, Any]]:
    """One `labels` row per accepted detection (first of each id): the refined footprint when the
    mask factory made one, with the detection's own polygon and the mask's provenance kept."""
    rows, seen = [], set()
    for det, label_id, d, ref in zip(dets, ids, decisions, refinements, strict=True):
        if not d.accepted or label_id in seen:
            continue
        seen.add(label_id)
        geometry = ref.geometry if ref is not None and ref.geometry is not None else det.geometry
        properties = {
            "cell": cell,
            "date": day.isoformat(),
            "msi_pvi": _jsonable(det.msi_pvi),
            "run_id": run_id,
            "calibration": calibration,
            "detection_geometry": shapely.to_wkb(det.geometry).hex(),
            "geometry_from": "mask" if ref is not None and ref.geometry is not None else "model",
        }
        if ref is not None:
            properties["mask"] = ref.provenance
        rows.append(
            model_label_row(
                geometry,
                label_id=label_id,
                model_id=model_id,
                round_=round_,
                confidence=float(det.score),
                s2_level=s2_level,
                h3_resolution=h3_resolution,
                created_at=created_at,
                source_id=det.prediction_id,
                properties=properties,
            )
        )
    return rows


def log_rows(
    dets: Sequence[Detection],
    ids: Sequence[str],
    decisions: Sequence[Decision],
    *,
    asset: str,
    cell: str,
    day: dt.date,
    round_: int,
    model_id: str,
    run_id: str | None,
    snapshot_id: int,
    created_at: dt.datetime,
    thresholds: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One `backfill_log` row per distinct decision, with its numbers and the thresholds used."""
    rows = []
    for det, label_id, d in zip(dets, ids, decisions, strict=True):
        metrics = dict(d.metrics)
        metrics.update(rule=d.rule, label_id=label_id if d.accepted else None)
        if thresholds is not None:
            metrics["thresholds"] = dict(thresholds)
        rows.append(
            {
                "log_id": _log_id(asset, model_id, cell, day, round_, det, d),
                "asset": asset,
                "s2_cell": cell,
                "partition_date": day,
                "round": int(round_),
                "model_id": model_id,
                "decision": "accepted" if d.accepted else "rejected",
                "reason": d.reason,
                "metrics": _metrics_json(metrics),
                "run_id": run_id,
                "snapshot_id": snapshot_id,
                "created_at": created_at,
            }
        )
    return list({r["log_id"]: r for r in rows}.values())


def write(
    con: duckdb.DuckDBPyConnection,
    labels: Sequence[dict[str, Any]],
    logs: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], int]:
    """(label rows inserted, log rows inserted), in one transaction: ids already in the lake (a
    re-run, or a retracted label) are never inserted again."""
    return write_backfill(con, labels, logs)


def backfill(
    con: duckdb.DuckDBPyConnection,
    detections: Sequence[Mapping[str, Any] | Detection],
    *,
    cell: str,
    date: dt.date,
    round: int,  # the labels column's name (shadows the builtin here only)
    model_id: str,
    rules: AcceptanceRules | None = None,
    run_id: str | None = None,
    s2_level: int,
    h3_resolution: int = 11,
    asset: str = "validated_backfill",
    refine: Refiner | None = None,
    calibration: Calibration | None = None,
) -> BackfillResult:
    """Decide every detection, confirm the accepted ones with the mask factory (`refine`),
    insert them as labels and log all decisions (module docstring).

    A detection is a Detection or a dict with `geometry` (WKB, EPSG:4326), `score`, and
    optionally `area_m2`, `msi_pvi`, `vhr_pv_score` and `prediction_id`. `rules` default to the
    round's `calibration` applied to the documented defaults; the log records the bounds used and
    the calibration's digest. `s2_level` / `h3_resolution` are the lake's indexing settings.
    """
    if rules is None:
        rules = calibration.apply() if calibration is not None else AcceptanceRules()
    day = date.date() if isinstance(date, dt.datetime) else date
    dets = [
        _repaired(d if isinstance(d, Detection) else Detection.from_dict(d)) for d in detections
    ]
    # Best score first; ties by a content key, so the order (and every decision) is stable.
    dets.sort(key=lambda d: (-_finite(d.score), _detection_key(d)))
    ids = [model_label_id(model_id, cell, day, round, d.geometry) for d in dets]
    base_snapshot = current_snapshot_id(con)
    if not dets:
        return BackfillResult(0, 0, {}, 0, 0, 0, base_snapshot)
    active = _active_labels_near(con, [d.geometry for d in dets], exclude=set(ids))
    decisions, refinements = confirm_with_masks(
        dets, decide_all(dets, ids, active, rules), refine, rules.min_area_m2
    )
    created_at = _now()
    digest = calibration.digest if calibration is not None else None
    thresholds = {**rules.as_dict(), "calibration": digest}
    labels = label_rows(
        dets,
        ids,
        decisions,
        refinements,
        cell=cell,
        day=day,
        round_=round,
        model_id=model_id,
        s2_level=s2_level,
        h3_resolution=h3_resolution,
        created_at=created_at,
        run_id=run_id,
        calibration=digest,
    )
    logs = log_rows(
        dets,
        ids,
        decisions,
        asset=asset,
        cell=cell,
        day=day,
        round_=round,
        model_id=model_id,
        run_id=run_id,
        snapshot_id=base_snapshot,
        created_at=created_at,
        thresholds=thresholds,
    )
    inserted, logged = write(con, labels, logs)
    return _result(dets, ids, decisions, inserted, logged, current_snapshot_id(con))


def _result(
    dets: Sequence[Detection],
    ids: Sequence[str],
    decisions: Sequence[Any],
    inserted: Sequence[Mapping[str, Any]],
    logged: int,
    snapshot_id: int,
) -> BackfillResult:
    """The counts and decisions a backfill reports, from what it decided and wrote."""
    accepted = [label_id for label_id, d in zip(ids, decisions, strict=True) if d.accepted]
    rejected = Counter(d.rule for d in decisions if not d.accepted)
    reasons = Counter(d.reason for d in decisions if not d.accepted)
    return BackfillResult(
        n_detections=len(dets),
        accepted=len(accepted),
        rejected={str(k): v for k, v in sorted(rejected.items())},
        inserted=len(inserted),
        already_present=len(accepted) - len(inserted),
        logged=logged,
        snapshot_id=snapshot_id,
        label_ids=tuple(accepted),
        new_cells=tuple(sorted({c for r in inserted for c in (r["s2_cells"] or [])})),
        reasons=dict(sorted(reasons.items())),
        decided=tuple(
            DecidedDetection(det, d.accepted, d.rule, d.reason)
            for det, d in zip(dets, decisions, strict=True)
        ),
    )


def _as_date(value: Any) -> dt.date | None:
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if isinstance(value, dt.datetime):  # includes pandas Timestamp
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    return None


def partition_metrics(
    con: duckdb.DuckDBPyConnection,
    detections: Sequence[Mapping[str, Any] | Detection],
    *,
    cell: str,
    date: dt.date,
    truth: Any | None = None,
    iou_threshold: float = 0.5,
    exclude_model_id: str | None = None,
) -> dict[str, PartitionMetrics]:
    """Metrics of the detections against the cell's labels (and the hidden truth, if given).

    - "labels": the active polygon labels that meet the cell as of `date` (as `seed_labels`
      reads them). Point labels have no shape to score IoU against and are left out; labels
      proposed by `exclude_model_id` are left out so a model is not scored against itself.
    - "truth" (when `truth` is a GeoDataFrame in EPSG:4326, e.g. the synthetic world's
      truth_frame): installations meeting the cell and installed by `date` (when the frame has
      an `install_date` column).
    """
    day = date.date() if isinstance(date, dt.datetime) else date
    preds = [
        (d if isinstance(d, Detection) else Detection.from_dict(d)).geometry for d in detections
    ]
    labels = labels_for_cell(con, cell, day)
    refs = []
    for gtype, geom, model in zip(
        labels.column("geometry_type").to_pylist(),
        labels.column("geometry").to_pylist(),
        labels.column("model_id").to_pylist(),
        strict=True,
    ):
        if gtype != "polygon" or (exclude_model_id is not None and model == exclude_model_id):
            continue
        refs.append(as_geometry(geom))
    out = {"labels": compute_metrics(preds, refs, iou_threshold=iou_threshold)}
    if truth is not None:
        keep = truth_in_cell(truth, cell, day)
        out["truth"] = compute_metrics(preds, keep, iou_threshold=iou_threshold)
    return out


def truth_in_cell(truth: Any, cell: str, date: dt.date) -> list[Any]:
    """Truth installations (a GeoDataFrame in EPSG:4326) meeting the cell, installed by `date`
    (when the frame has an `install_date` column): what detections of the partition can match."""
    day = date.date() if isinstance(date, dt.datetime) else date
    polygon = cell_polygon(cell)
    keep = []
    dates = truth["install_date"].tolist() if "install_date" in truth.columns else None
    for i, geom in enumerate(truth.geometry.values):
        if geom is None or geom.is_empty or not geom.intersects(polygon):
            continue
        installed = _as_date(dates[i]) if dates is not None else None
        if installed is not None and installed > day:
            continue
        keep.append(geom)
    return keep
