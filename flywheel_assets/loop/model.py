"""`model_checkpoint`: one training round per date, on every cell's training data up to that date.

Partition mapping: the asset is partitioned by the date dimension alone and declares
`training_data` through `MultiToSingleDimensionPartitionMapping("date")`, so the UI shows which
cell partitions of the same date feed it. It reads more than that on purpose: the data module
streams every `training_data` row with `date <= partition date` (all cells, all earlier dates)
from Lance at one pinned table version, recorded with the model, because a round learns from
everything the flywheel knows by then. Dagster has no "all earlier partitions" mapping for a
multi-partitioned upstream, hence the version pin as the exact record of what was read.
The steps (train, calibrate, registry row) are flywheel_core.train.round's.
"""

from dataclasses import replace
from pathlib import Path

from dagster import (
    AssetDep,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from flywheel_assets.partitions import SETTINGS, by_date, date_partitions
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.lake.models import previous_model, register_model, registry_name
from flywheel_core.lake.report import active_label_count
from flywheel_core.preview import markdown_image, save
from flywheel_core.train.checkpoints import cached_checkpoint, checkpoint_key, warm_start_parent
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.lancedb_io import LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource

date_only = date_partitions(SETTINGS)


class ModelConfig(Config):
    """Overrides of `TrainConfig` for a round (unset: the TrainConfig default)."""

    steps: int | None = None  # optimiser steps (the OneCycle schedule spans them)
    batch_size: int | None = None
    bands: str | None = None  # "vhr" or "vhr+msi"
    encoder_name: str | None = None
    arch: str | None = None
    # "imagenet" (local caches only), a local state-dict file, or "none" for random weights
    encoder_weights: str | None = None
    positive_fraction: float | None = None  # share of draws from chips with panels
    patience: int | None = None  # val evaluations without improvement before stopping
    val_every: int | None = None  # steps between val evaluations
    # start from the previous round's model when its network has the same shape (fine-tuning);
    # False: every round trains a fresh network
    warm_start: bool = True


@asset(
    partitions_def=date_only,
    deps=[AssetDep("training_data", partition_mapping=by_date())],
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
    """A segmentation model trained on all training data up to the date, its acceptance bounds
    calibrated on that data, registered in DuckLake."""
    # lightning and torch load here, in the step, so that loading the code location stays fast
    from flywheel_core.train.round import (
        learning_curve,
        registry_row,
        round_config,
        round_of,
        train_round,
    )

    day = context.partition_key
    db = lancedb.connect()
    if "training_data" not in db.table_names():
        raise Failure(
            f"no training_data table under {lancedb.uri}: materialize training_data first"
        )
    round_no, n_samples = round_of(db, day)
    if n_samples == 0:
        raise Failure(f"no training samples dated on or before {day}: nothing to train on")
    overrides = config.model_dump(exclude_none=True, exclude={"warm_start"})
    with ducklake.connect() as con:
        snapshot = current_snapshot_id(con)
        label_count = active_label_count(con)
        previous = previous_model(con, day) if config.warm_start else None
    train_config = round_config(day, round_no, overrides)
    parent, why = warm_start_parent(previous, train_config.to_dict())
    train_config = replace(train_config, init_model_id=parent)
    init = cached_checkpoint(objects.store(), parent, SETTINGS.model_cache_dir) if parent else None
    name = registry_name(day)
    context.log.info(f"round {round_no}: training {name} on {n_samples} samples up to {day}; {why}")
    trained = train_round(
        lancedb.uri, day, round_no, SETTINGS.data_dir / "runs" / name, train_config, name, init
    )
    row = registry_row(
        trained, lance_uri=lancedb.uri, day=day, snapshot=snapshot, label_count=label_count
    )
    row["checkpoint_uri"] = objects.store().put(
        Path(trained.result.checkpoint_path), checkpoint_key(row["model_id"])
    )
    with ducklake.connect() as con:
        register_model(con, row)
    result, cal = trained.result, trained.calibration
    context.log.info(f"calibration {cal.digest}: {cal.summary()}")
    curve = learning_curve(result.history)
    path = save(curve, Path(SETTINGS.data_dir / "previews" / "model_checkpoint" / f"{day}.png"))
    flat = {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}
    return MaterializeResult(
        metadata={
            "model_id": row["model_id"],
            "round": round_no,
            "checkpoint_uri": row["checkpoint_uri"],
            "training_samples": n_samples,
            "lance_version_training_data": result.lance_version,
            "ducklake_snapshot_id": snapshot,
            "wandb_run_id": result.wandb_run_id or "none",
            "wandb_dir": MetadataValue.path(str(result.wandb_dir)),
            "encoder_init": result.encoder_init,
            "weights": f"trained here (encoder: {result.encoder_init}); kept the {result.weights}",
            "calibration": MetadataValue.json({"digest": cal.digest, **cal.values()}),
            "calibration_methods": MetadataValue.json(
                {k: t.method for k, t in cal.thresholds.items()}
            ),
            "val_curve": MetadataValue.json(result.history),
            "preview": MetadataValue.md(markdown_image(curve, f"model_checkpoint {day}")),
            "preview_path": MetadataValue.path(str(path.resolve())),
            "seconds": round(result.seconds, 1),
            **{k.replace("/", "_"): round(float(v), 4) for k, v in flat.items()},
        }
    )
