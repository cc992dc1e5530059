"""`sam_masks` and `training_data` on `cell × date`."""

from collections import Counter
from collections.abc import Iterator

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
    Output,
    asset,
)

from flywheel_assets.masks.config import MaskFactoryConfig, TrainingDataConfig, load_mask_backend
from flywheel_assets.metadata import preview_metadata
from flywheel_assets.partitions import SETTINGS, cell_date
from flywheel_assets.resources import ImageryResource
from flywheel_core.lake.hard_negatives import candidates_for_cell
from flywheel_core.masks.prompts import PromptSettings
from flywheel_core.masks.timing import StageTimer
from flywheel_core.partitions import CellDate
from flywheel_core.preview import placeholder
from flywheel_core.train.preview import samples_sheet
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.gpu import GPUResource


@asset(
    partitions_def=cell_date,
    io_manager_key="lance_io",
    group_name="masks",
    pool="gpu",
    kinds={"lancedb", "pytorch"},
    check_specs=[
        AssetCheckSpec(
            "acceptance_rate",
            asset="sam_masks",
            description="Share of accepted masks is at least the configured floor.",
        )
    ],
)
def sam_masks(
    context: AssetExecutionContext,
    config: MaskFactoryConfig,
    gpu: GPUResource,
    imagery: ImageryResource,
    vhr_chips: pa.Table,
    seed_labels: pa.Table,
) -> Iterator[Output | AssetCheckResult]:
    """A QA'd mask per (label, chip): prompts from seed labels, one back end, shared refinement."""
    # lancedb and geopandas load here, in the step, so that loading the code location stays fast
    from flywheel_core.imagery.vhr_chips import rows_to_table
    from flywheel_core.masks.factory import SAM_MASK_SCHEMA, FactorySettings, iter_masks, weights_of
    from flywheel_core.masks.preview import masks_sheet

    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    chips = vhr_chips.to_pylist()
    labels = seed_labels.to_pylist()
    gsd = chips[0]["gsd_m"] if chips else 0.3125
    device = gpu.describe()
    backend = load_mask_backend(gpu, config, gsd)
    weights = weights_of(backend)
    if weights == "random":
        context.log.warning(
            f"{backend.model_id} has RANDOM weights (built-in offline configuration): "
            "its masks are "
            "not meaningful and are marked weights='random'"
        )
    context.log.info(
        f"mask back end {backend.model_id} on {device['device']} ({device['device_reason']})"
    )
    settings = FactorySettings(
        prompts=PromptSettings(
            polygon_kind=config.polygon_prompt,  # type: ignore[arg-type]
            positive_points=config.positive_points,
            negative_points=config.negative_points,
        )
    )
    snapshot = labels[0]["ducklake_snapshot_id"] if labels else None
    timer = StageTimer()
    rows: list[dict] = []
    for row in iter_masks(chips, labels, backend, settings, timer, snapshot):
        rows.append(row)
        if len(rows) % 20 == 0:
            context.log.info(f"{len(rows)} masks")
    if not labels:
        context.log.warning(f"no seed labels in {part.key}: no prompts, the partition is empty")
    accepted = sum(r["accepted"] for r in rows)
    rate = accepted / len(rows) if rows else 1.0
    reasons = Counter(r["reason"] for r in rows if not r["accepted"])
    img = (
        masks_sheet({c["chip_id"]: c for c in chips}, rows)
        if rows
        else placeholder(f"{part.key}: no prompts")
    )
    table = rows_to_table(rows, SAM_MASK_SCHEMA)
    yield Output(
        table,
        metadata={
            "masks": len(rows),
            "accepted": accepted,
            "acceptance_rate": rate,
            "rejection_reasons": MetadataValue.json(dict(reasons.most_common(10))),
            "backend": backend.name,
            "model_id": backend.model_id,
            "weights": weights,
            "device": device["device"],
            "seconds_by_stage": MetadataValue.json(
                {k: round(v, 3) for k, v in timer.seconds.items()}
            ),
            "share_outside_model": timer.share_outside(),
            **preview_metadata(img, imagery.previews_dir, "sam_masks", part),
        },
    )
    yield AssetCheckResult(
        check_name="acceptance_rate",
        passed=rate >= config.min_acceptance_rate,
        metadata={"acceptance_rate": rate, "floor": config.min_acceptance_rate, "masks": len(rows)},
    )


@asset(
    partitions_def=cell_date,
    io_manager_key="lance_io",
    group_name="masks",
    kinds={"lancedb"},
    check_specs=[
        AssetCheckSpec(
            "split_by_block",
            asset="training_data",
            description="Every spatial block of the partition falls in exactly one split.",
        )
    ],
)
def training_data(
    context: AssetExecutionContext,
    config: TrainingDataConfig,
    imagery: ImageryResource,
    ducklake: DuckLakeResource,
    vhr_chips: pa.Table,
    msi_chips: pa.Table,
    sam_masks: pa.Table,
) -> Iterator[Output | AssetCheckResult]:
    """Samples in the seed schema: accepted masks as positives; label-free chips as negatives,
    hard ones where earlier rounds recorded hard-negative candidates."""
    # lancedb and geopandas load here, in the step, so that loading the code location stays fast
    from flywheel_core.imagery.vhr_chips import rows_to_table
    from flywheel_core.train.samples import TRAINING_SCHEMA, SampleSettings, build_samples

    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    settings = SampleSettings(
        negative_ratio=config.negative_ratio,
        hard_negative_ratio=config.hard_negative_ratio,
        negative_max_pv_fraction=config.negative_max_pv_fraction,
    )
    with ducklake.connect() as con:
        candidates = candidates_for_cell(con, part.cell, part.date)
    rows, counts = build_samples(
        vhr_chips.to_pylist(),
        msi_chips.to_pylist(),
        sam_masks.to_pylist(),
        settings,
        SETTINGS.split_block_level,
        hard_candidates=candidates,
    )
    if not rows:
        context.log.warning(f"no training samples in {part.key}: {counts}")
    splits = Counter(r["split"] for r in rows)
    blocks: dict[str, set[str]] = {}
    for r in rows:
        blocks.setdefault(r["metadata"]["split_block"], set()).add(r["split"])
    table = rows_to_table(rows, TRAINING_SCHEMA)
    yield Output(
        table,
        metadata={
            "samples": len(rows),
            **{k: v for k, v in counts.items()},
            "by_split": MetadataValue.json(dict(splits)),
            "split_level": SETTINGS.split_block_level,
            **preview_metadata(
                samples_sheet(rows) if rows else placeholder(f"{part.key}: no samples"),
                imagery.previews_dir,
                "training_data",
                part,
            ),
        },
    )
    mixed = [b for b, s in blocks.items() if len(s) > 1]
    yield AssetCheckResult(
        check_name="split_by_block",
        passed=not mixed,
        metadata={"blocks": len(blocks), "blocks_in_two_splits": len(mixed)},
    )
