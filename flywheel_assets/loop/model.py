"""`model_checkpoint`: one training round per date, on every cell's training data up to that date.

Partition mapping: the asset is partitioned by the date dimension alone and declares
`training_data` through `MultiToSingleDimensionPartitionMapping("date")`, so the UI shows which
cell partitions of the same date feed it. It reads more than that on purpose: the data module
streams every `training_data` row with `date <= partition date` (all cells, all earlier dates)
from Lance at one pinned table version, recorded with the model, because a round learns from
everything the flywheel knows by then. Dagster has no "all earlier partitions" mapping for a
multi-partitioned upstream, hence the version pin as the exact record of what was read.
"""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    asset,
)
from flywheel_core.train.trainer import TrainConfig, train_model

from flywheel_assets.partitions import SETTINGS, date_partitions
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.lake.models import register_model, registry_name
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.lancedb_io import LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource

date_only = date_partitions(SETTINGS)


class ModelConfig(Config):
    epochs: int | None = None
    batch_size: int | None = None
    bands: str | None = None  # "vhr" or "vhr+msi"
    encoder_name: str | None = None
    arch: str | None = None


def round_of(db: Any, day: str) -> tuple[int, int]:
    """(round number, training samples up to `day`): round k = the k-th date with training data."""
    table = db.open_table("training_data")
    dates = table.search().where(f"date <= '{day}'").select(["date"]).limit(None).to_arrow()
    days = sorted(set(dates["date"].to_pylist()))
    return len(days), dates.num_rows


@asset(
    partitions_def=date_only,
    deps=[
        AssetDep("training_data", partition_mapping=MultiToSingleDimensionPartitionMapping("date"))
    ],
    group_name="loop",
    pool="gpu",
    kinds={"pytorch", "ducklake"},
)
def model_checkpoint(
    context: AssetExecutionContext,
    config: ModelConfig,
    ducklake: DuckLakeResource,
    lancedb: LanceDBResource,
    objects: ObjectStoreResource,
) -> MaterializeResult:
    """A segmentation model trained on all training data up to the date, registered in DuckLake."""
    day = context.partition_key
    db = lancedb.connect()
    if "training_data" not in db.table_names():
        raise Failure(
            f"no training_data table under {lancedb.uri}: materialize training_data first"
        )
    round_no, n_samples = round_of(db, day)
    if n_samples == 0:
        raise Failure(f"no training samples dated on or before {day}: nothing to train on")
    overrides = {k: v for k, v in config.model_dump().items() if v is not None}
    train_config = TrainConfig(
        **{**asdict(TrainConfig()), **overrides, "as_of_date": day, "seed": round_no}
    )
    with ducklake.connect() as con:
        snapshot = current_snapshot_id(con)
        label_count = con.execute("SELECT count(*) FROM labels WHERE status = 'active'").fetchone()[
            0
        ]
    name = registry_name(day)
    run_dir = SETTINGS.data_dir / "runs" / name
    context.log.info(f"round {round_no}: training {name} on {n_samples} samples up to {day}")
    result = train_model(lancedb.uri, "training_data", run_dir, train_config, run_name=name)
    params = {
        "config": result.config,
        "lance_versions": {"training_data": result.lance_version},
        "lance_uri": lancedb.uri,
        "ducklake_snapshot_id": snapshot,
        "wandb_run_id": result.wandb_run_id,
        "wandb_dir": str(result.wandb_dir),
        "partition_date": day,
    }
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[
        :10
    ]
    model_id = f"{name}-{digest}"
    checkpoint_uri = objects.store().put(
        Path(result.checkpoint_path), f"models/{model_id}/model.ckpt"
    )
    with ducklake.connect() as con:
        register_model(
            con,
            {
                "model_id": model_id,
                "name": name,
                "round": round_no,
                "architecture": f"{result.config.get('arch')}/{result.config.get('encoder_name')}",
                "checkpoint_uri": checkpoint_uri,
                "training_snapshot_id": snapshot,
                "training_label_count": label_count,
                "params": params,
                "metrics": result.metrics,
                "status": "ready",
            },
        )
    flat = {k: v for k, v in result.metrics.items() if isinstance(v, int | float) and v is not None}
    return MaterializeResult(
        metadata={
            "model_id": model_id,
            "round": round_no,
            "checkpoint_uri": checkpoint_uri,
            "training_samples": n_samples,
            "lance_version_training_data": result.lance_version,
            "ducklake_snapshot_id": snapshot,
            "wandb_run_id": result.wandb_run_id or "none",
            "wandb_dir": MetadataValue.path(str(result.wandb_dir)),
            "weights": "trained here from random initialization (no pretrained encoder)",
            "seconds": round(result.seconds, 1),
            **{k.replace("/", "_"): float(v) for k, v in flat.items()},
        }
    )
