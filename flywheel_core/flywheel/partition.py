"""One `validated_backfill` partition: the round's detections measured, decided, confirmed by the
mask factory, written back as labels, and their rejections mined for hard negatives.

Steps, in order (what a failure leaves behind in brackets):
1. read the model's detections of the partition from DuckLake `predictions`, and the round's
   calibration from the model's registry row (a model registered without one falls back to the
   documented defaults, said in the result) [nothing written];
2. measure them against the cell's labels and, for a synthetic world, its hidden truth: figures
   for the materialization only; nothing downstream reads them [nothing written];
3. `backfill`: decide, confirm each accepted detection with the mask factory over the VHR chips
   of the date that show it, write labels and the decision log in one transaction [all or none];
4. mine hard-negative candidates from the rejections (one more transaction) [the backfill stays;
   a re-run replaces the partition's candidates].
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import lancedb
import numpy as np
import shapely
from PIL import Image, ImageDraw
from shapely import wkb

from flywheel_core.flywheel.acceptance import Detection
from flywheel_core.flywheel.backfill import BackfillResult, Refinement, backfill, partition_metrics
from flywheel_core.flywheel.calibration import Calibration, default_calibration
from flywheel_core.flywheel.hard_negatives import DEFAULT_K, HardNegativeResult, hard_negatives
from flywheel_core.flywheel.metrics import PartitionMetrics
from flywheel_core.lake.predictions import predictions_for
from flywheel_core.lake.quote import sql_and, sql_eq, sql_range
from flywheel_core.lake.spatial_filters import box_of, box_shape, lon_in_range_sql, padded_box
from flywheel_core.masks.detections import refine_detections
from flywheel_core.masks.factory import FactorySettings
from flywheel_core.masks.types import MaskBackend
from flywheel_core.preview import placeholder

VHR_CHIPS_TABLE = "vhr_chips"
CHIP_MARGIN_DEG = 0.005  # chips are at most a few hundred metres: their centres lie this close


@dataclass(frozen=True)
class PartitionBackfill:
    result: BackfillResult
    metrics: dict[str, PartitionMetrics]
    calibration: Calibration
    hard_negatives: HardNegativeResult | None
    chips: list[dict]  # the VHR chips the detections were confirmed on (for the preview)


def detections_of(
    con: duckdb.DuckDBPyConnection, model_id: str, cell: str, day: dt.date
) -> list[dict[str, Any]]:
    """The partition's predictions as the detection dicts `backfill` decides."""
    out = []
    for r in predictions_for(con, model_id, cell, day):
        measured = json.loads(r["metrics"] or "{}")
        out.append(
            {
                "geometry": r["geometry"],
                "score": r["score"],
                "area_m2": r["area_m2"],
                "msi_pvi": measured.get("msi_pvi"),
                "vhr_pv_score": measured.get("vhr_pv_score"),
                "prediction_id": r["prediction_id"],
            }
        )
    return out


def model_calibration(model: dict[str, Any]) -> Calibration:
    stored = (model.get("params") or {}).get("calibration")
    if stored:
        return Calibration.from_dict(stored)
    return default_calibration("the model was registered without a calibration")


def chips_near(
    db: lancedb.DBConnection, day: dt.date, bounds: Sequence[float], table: str = VHR_CHIPS_TABLE
) -> list[dict]:
    """VHR chips of `day` (any cell) whose footprint meets the lon/lat `bounds` (west, south, east,
    north; west > east across the date line, as `box_of` gives)."""
    if table not in db.table_names():
        return []
    west, south, east, north = padded_box(bounds, 2 * CHIP_MARGIN_DEG, CHIP_MARGIN_DEG)
    where = sql_and(
        sql_eq("date", day.isoformat()),
        lon_in_range_sql("center_lon", west, east),
        sql_range("center_lat", south, north),
    )
    rows = db.open_table(table).search().where(where).limit(None).to_arrow().to_pylist()
    area = box_shape(bounds)
    return [r for r in rows if wkb.loads(r["footprint"]).intersects(area)]


def backfill_partition(
    con: duckdb.DuckDBPyConnection,
    db: lancedb.DBConnection,
    model: dict[str, Any],
    *,
    cell: str,
    day: dt.date,
    s2_level: int,
    h3_resolution: int,
    backend_for: Callable[[float], MaskBackend] | None,
    factory: FactorySettings | None = None,
    hard_negative_k: int = DEFAULT_K,
    truth: Any | None = None,
    run_id: str | None = None,
) -> PartitionBackfill:
    """Steps 1–4 of the module docstring for one (cell, date) and the date's model.

    `backend_for(gsd_m)` builds (or fetches from a cache) the mask back end for the chips' GSD;
    None skips the confirmation (detection polygons become labels as they are).
    """
    detections = detections_of(con, model["model_id"], cell, day)
    calibration = model_calibration(model)
    metrics = partition_metrics(
        con, detections, cell=cell, date=day, truth=truth, exclude_model_id=model["model_id"]
    )
    chips: list[dict] = []

    def refine(accepted: Sequence[Detection]) -> list[Refinement]:
        chips[:] = chips_near(db, day, box_of([d.geometry for d in accepted]))
        if backend_for is None or not chips:
            why = "no mask back end" if backend_for is None else "no chip shows the detections"
            return [Refinement(True, None, why, {}) for _ in accepted]
        return refine_detections(accepted, chips, backend_for(chips[0]["gsd_m"]), factory)

    result = backfill(
        con,
        detections,
        cell=cell,
        date=day,
        round=model["round"],
        model_id=model["model_id"],
        calibration=calibration,
        refine=refine,
        run_id=run_id,
        s2_level=s2_level,
        h3_resolution=h3_resolution,
    )
    mined = None
    if hard_negative_k > 0:
        # After the backfill's commit, so chips its new labels cover count as labeled.
        mined = hard_negatives(
            db,
            con,
            result.decided,
            cell=cell,
            date=day,
            round=model["round"],
            model_id=model["model_id"],
            k=hard_negative_k,
            run_id=run_id,
        )
    return PartitionBackfill(result, metrics, calibration, mined, chips)


def decisions_preview(outcome: PartitionBackfill, cell: str, max_px: int = 512) -> Image.Image:
    """The cell's chips that show detections, accepted outlines green, rejected red."""
    from affine import Affine

    from flywheel_core.imagery.mosaic import chips_mosaic
    from flywheel_core.masks.prompts import to_pixels

    rows = [r for r in outcome.chips if r["cell"] == cell]  # one scene grid: the cell's
    if not rows or not outcome.result.decided:
        return placeholder(f"{outcome.result.n_detections} detections, no chip to draw them on")
    mosaic = chips_mosaic(rows, max_px)
    r0 = min(r["row_off"] for r in rows)
    c0 = min(r["col_off"] for r in rows)
    span = max(max(r["row_off"] for r in rows) - r0, max(r["col_off"] for r in rows) - c0)
    step = max(1, int(np.ceil((span + rows[0]["height"]) / max_px)))
    ref = rows[0]
    origin = Affine(*ref["transform"]) * Affine.translation(
        c0 - ref["col_off"], r0 - ref["row_off"]
    )
    img = Image.fromarray(mosaic).convert("RGB")
    draw = ImageDraw.Draw(img)
    for d in outcome.result.decided:
        colour = (40, 220, 60) if d.accepted else (235, 50, 40)
        for part in shapely.get_parts(to_pixels(d.detection.geometry, ref["crs"], origin)):
            if part.geom_type == "Polygon":
                draw.line([(x / step, y / step) for x, y in part.exterior.coords], colour, 2)
    return img
