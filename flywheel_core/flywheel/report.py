"""What one flywheel round achieved, read back from the lake: the figures `flywheel rounds` prints
and `bench/flywheel.py` tabulates.

Recall and precision compare the active labels with a synthetic world's hidden truth
(flywheel_core.flywheel.truth_eval): the truth is read here, for measuring, and nowhere upstream.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import geopandas as gpd

from flywheel_core.flywheel.truth_eval import label_truth
from flywheel_core.lake.backfill import model_decisions
from flywheel_core.lake.hard_negatives import count_for_date
from flywheel_core.lake.models import latest_model, registry_name
from flywheel_core.lake.report import active_labels_as_of


@dataclass(frozen=True)
class RoundReport:
    round: int
    date: str
    labels_by_source: dict[str, int]
    test_iou: float | None
    recall: float
    precision: float
    installations: int
    accepted: int  # detections this round's backfill accepted (new model labels)
    rejected: dict[str, int]  # this round's rejections by rule
    hard_negatives: int  # candidates this round's backfill recorded
    calibration: dict[str, float | None] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # samples, best step, encoder init
    seconds: float | None = None

    @property
    def n_labels(self) -> int:
        return sum(self.labels_by_source.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_labels": self.n_labels}


def round_report(
    con: duckdb.DuckDBPyConnection,
    truth: gpd.GeoDataFrame,
    cells: list[str],
    day: dt.date,
    round_no: int,
    seconds: float | None = None,
) -> RoundReport:
    """The round's labels against the truth of `cells`, and what its model and backfill did."""
    labels = active_labels_as_of(con, day)
    by_source = Counter(lab["source_kind"] for lab in labels)
    quality = label_truth(labels, truth, cells, day)
    model = latest_model(con, registry_name(day.isoformat())) or {}
    accepted, rejected = model_decisions(con, model["model_id"]) if model else (0, {})
    mined = count_for_date(con, day)
    metrics = model.get("metrics", {})
    params = model.get("params", {})
    stored = (params.get("calibration") or {}).get("thresholds", {})
    calibration = {k: t.get("value") for k, t in stored.items()}
    training = {
        k: metrics.get(k)
        for k in ("train/samples", "val/samples", "test/samples", "val/iou", "best_step")
        if k in metrics
    }
    training["encoder_init"] = params.get("encoder_init")
    return RoundReport(
        round=round_no,
        date=day.isoformat(),
        labels_by_source=dict(sorted(by_source.items())),
        test_iou=metrics.get("test/iou"),
        recall=quality.recall,
        precision=quality.precision,
        installations=quality.installations,
        accepted=accepted,
        rejected=rejected,
        hard_negatives=int(mined),
        calibration=calibration,
        training=training,
        seconds=seconds,
    )
