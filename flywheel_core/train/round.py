"""One training round: train on everything known by the date, calibrate the acceptance bounds on
the round's own data, and the registry row that lets the round be replayed.

Steps (what a failure leaves behind in brackets):
1. `round_of`: the round number (the k-th date with training data) and the samples up to it;
2. `train_model`: pins the `training_data` version, trains (from the previous round's weights
   when the caller passes its checkpoint: `flywheel_core.train.checkpoints.warm_start_parent`),
   keeps the best val weights and writes the checkpoint under `out_dir` [a run folder; nothing
   registered];
3. `calibrate_model`: the trained model on the round's validation chips and its labelled panels'
   pixels (flywheel_core.flywheel.calibration) [still nothing registered];
4. `registry_row`: config, Lance version, DuckLake snapshot, W&B run, encoder init and the
   calibration, under a model id that is a digest of them; the caller stores the checkpoint and
   registers the row (flywheel_core.lake.models.register_model, one transaction).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from flywheel_core.flywheel.calibration import Calibration, calibrate_model
from flywheel_core.lake.quote import sql_range
from flywheel_core.train.trainer import TrainConfig, TrainResult, load_model, train_model

TABLE = "training_data"


def round_of(db: Any, day: str) -> tuple[int, int]:
    """(round number, training samples up to `day`): round k = the k-th date with training data."""
    table = db.open_table(TABLE)
    dates = (
        table.search().where(sql_range("date", high=day)).select(["date"]).limit(None).to_arrow()
    )
    days = sorted(set(dates["date"].to_pylist()))
    return len(days), dates.num_rows


def round_config(day: str, round_no: int, overrides: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a round: defaults, the user's overrides, the date and a seed per round."""
    overrides = dict(overrides)
    if str(overrides.get("encoder_weights", "")).lower() in ("none", "random"):
        overrides["encoder_weights"] = None
    return TrainConfig(
        **{**asdict(TrainConfig()), **overrides, "as_of_date": day, "seed": round_no}
    )


@dataclass(frozen=True)
class TrainedRound:
    name: str
    round: int
    result: TrainResult
    calibration: Calibration


def train_round(
    lance_uri: str,
    day: str,
    round_no: int,
    out_dir: Path,
    config: TrainConfig,
    name: str,
    init_checkpoint: Path | None = None,
) -> TrainedRound:
    """Steps 2 and 3 of the module docstring (`init_checkpoint`: `config.init_model_id`'s)."""
    result = train_model(
        lance_uri, TABLE, out_dir, config, run_name=name, init_checkpoint=init_checkpoint
    )
    model = load_model(result.checkpoint_path)
    calibration = calibrate_model(
        model.predict_proba,
        result.lance_uri,
        result.lance_version,
        as_of=day,
        cells=config.cells,
        bands=config.bands,
    )
    return TrainedRound(name, round_no, result, calibration)


def registry_row(
    trained: TrainedRound,
    *,
    lance_uri: str,
    day: str,
    snapshot: int,
    label_count: int,
    checkpoint_uri: str | None = None,
) -> dict[str, Any]:
    """The `models` row (flywheel_core.lake.models); `model_id` = name + digest of params."""
    r = trained.result
    params = {
        "config": r.config,
        "lance_versions": {TABLE: r.lance_version},
        "lance_uri": lance_uri,
        "ducklake_snapshot_id": snapshot,
        "wandb_run_id": r.wandb_run_id,
        "wandb_dir": str(r.wandb_dir),
        "partition_date": day,
        "encoder_init": r.encoder_init,
        "weights_kept": r.weights,
        "history": r.history,
        "calibration": trained.calibration.to_dict(),
    }
    text = json.dumps(params, sort_keys=True, default=str)
    model_id = f"{trained.name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    return {
        "model_id": model_id,
        "name": trained.name,
        "round": trained.round,
        "architecture": f"{r.config.get('arch')}/{r.config.get('encoder_name')}",
        "checkpoint_uri": checkpoint_uri,
        "training_snapshot_id": snapshot,
        "training_label_count": label_count,
        "params": params,
        "metrics": r.metrics,
        "parent_model_id": r.config.get("init_model_id"),
        "status": "ready",
    }


def learning_curve(
    history: list[dict[str, Any]], size: tuple[int, int] = (480, 220)
) -> Image.Image:
    """Val IoU (blue) and val loss (orange, scaled to its maximum) against the optimiser step."""
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    pad = 28
    draw.rectangle([pad, 8, w - 8, h - pad], outline=(160, 160, 160))
    if not history:
        draw.text((pad + 8, h // 2), "no validation split: final weights kept", fill=(0, 0, 0))
        return img
    steps = np.array([float(e["step"]) for e in history])
    top = max(float(steps.max()), 1.0)

    def xy(step: float, value: float) -> tuple[float, float]:
        return pad + (w - 8 - pad) * step / top, (h - pad) - (h - pad - 8) * value

    loss = np.array([float(e.get("loss", 0.0)) for e in history])
    scale = float(loss.max()) or 1.0
    for values, colour in (
        ([float(e.get("iou", 0.0)) for e in history], (31, 119, 180)),
        (list(loss / scale), (255, 127, 14)),
    ):
        points = [xy(s, v) for s, v in zip(steps, values, strict=True)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    draw.text((pad + 4, 10), "val IoU", fill=(31, 119, 180))
    draw.text((pad + 64, 10), f"val loss / {scale:.2f}", fill=(255, 127, 14))
    draw.text((pad, h - pad + 6), f"step 0 .. {int(top)}", fill=(0, 0, 0))
    return img
