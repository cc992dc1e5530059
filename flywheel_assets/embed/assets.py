"""`dinov3_embeddings` on `cell × date`: one DINOv3 vector per VHR chip, in Lance and Parquet."""

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    asset,
)
from pydantic import Field

from flywheel_assets.metadata import preview_metadata
from flywheel_assets.partitions import SETTINGS, cell_date
from flywheel_assets.resources import ImageryResource
from flywheel_core.embed.preview import embedding_preview
from flywheel_core.partitions import CellDate
from flywheel_core.preview import placeholder
from flywheel_resources.gpu import GPUResource
from flywheel_resources.lancedb_io import LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource

if TYPE_CHECKING:
    from flywheel_core.embed.dinov3 import DinoModel

DATASET = "vhr_chips"
# flywheel_core.embed.table.DEFAULT_MIN_ROWS, repeated here because that module imports lancedb
# and a config default is read when the code location loads (test_import_cost checks they agree).
DEFAULT_MIN_ROWS = 10_000


class EmbeddingConfig(Config):
    model: str = Field(
        default=os.environ.get("FLYWHEEL_DINOV3_MODEL", "tiny"),
        description=(
            "'tiny' (built-in random weights, marked untrained), a folder saved with "
            "save_pretrained (absolute, or under the GPU resource's model_dir), or a hub id "
            "already in the local Hugging Face cache, e.g. facebook/dinov3-vitl16-pretrain-sat493m."
        ),
    )
    batch_size: int = Field(default=0, description="Chips per forward; 0: the GPU resource's.")
    patch_vectors: bool = Field(
        default=False,
        description="Also store one vector per patch token (dinov3_patch_embeddings).",
    )
    mean: list[float] = Field(default=[], description="RGB mean override (else from the model).")
    std: list[float] = Field(default=[], description="RGB std override (else from the model).")
    min_index_rows: int = Field(
        default=DEFAULT_MIN_ROWS,
        description="Build the ANN index once the table has this many rows.",
    )
    max_duplicate_fraction: float = Field(
        default=0.01, description="The duplicate_vectors check fails above this share of rows."
    )


def _source(model: str, gpu: GPUResource) -> str:
    from flywheel_core.embed.dinov3 import TINY_SOURCES  # torch: imported by the step only

    if model in TINY_SOURCES:
        return "tiny"
    path = gpu.model_path(model)
    return str(path) if path.exists() else model


def _load(config: EmbeddingConfig, gpu: GPUResource) -> "DinoModel":
    from flywheel_core.embed.dinov3 import load_dinov3

    source = _source(config.model, gpu)
    mean = tuple(config.mean) or None
    std = tuple(config.std) or None
    return gpu.load(
        "dinov3",
        f"{source}|{mean}|{std}",
        lambda dev, dtype: load_dinov3(source, dev, dtype, mean=mean, std=std),
    )


def _check(name: str, passed: bool, metadata: dict, description: str) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        passed=bool(passed),
        metadata={"why": description, **metadata},
        severity=AssetCheckSeverity.ERROR,
    )


@asset(
    partitions_def=cell_date,
    deps=["vhr_chips"],
    group_name="embed",
    pool="gpu",
    kinds={"pytorch", "lancedb", "parquet"},
    check_specs=[
        AssetCheckSpec("coverage", asset="dinov3_embeddings", description="A vector per chip."),
        AssetCheckSpec("no_nan_vectors", asset="dinov3_embeddings", description="No NaN/inf."),
        AssetCheckSpec("no_zero_vectors", asset="dinov3_embeddings", description="No dead inputs."),
        AssetCheckSpec(
            "duplicate_vectors",
            asset="dinov3_embeddings",
            description="Identical vectors for different chips stay below the configured share.",
        ),
    ],
)
def dinov3_embeddings(
    context: AssetExecutionContext,
    config: EmbeddingConfig,
    gpu: GPUResource,
    lancedb: LanceDBResource,
    objects: ObjectStoreResource,
    imagery: ImageryResource,
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """DINOv3 CLS and mean-patch vectors of the partition's chips; Parquet export, QA, ANN index."""
    # torch and lancedb load here, in the step, so that loading the code location stays fast
    from flywheel_core.embed.partition import embed_partition, tile_batches
    from flywheel_core.store.lance_tables import partition_filter

    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    day = part.date.isoformat()
    batch_size = config.batch_size or gpu.batch_size
    try:
        expected, chunks = tile_batches(
            lancedb.connect(), DATASET, partition_filter(part.as_filter()), 4 * batch_size
        )
    except FileNotFoundError as exc:
        raise Failure(f"{exc} (dinov3_embeddings reads the vhr_chips of {part.key})") from exc
    dino = _load(config, gpu)
    device = gpu.describe()
    context.log.info(
        f"DINOv3 {dino.model_id} ({dino.dim}-d) on {device['device']} ({device['device_reason']}), "
        f"{expected} chips in {part.key}"
    )
    if not dino.trained:
        context.log.warning(
            f"{dino.model_id} has RANDOM weights (built-in offline configuration): its vectors "
            "are for plumbing only, stored with trained=False; neighbours mean nothing"
        )
    if expected == 0:
        context.log.warning(
            f"no vhr_chips in {part.key}: the partition materializes empty (an empty export "
            "replaces any earlier one)"
        )
    run = embed_partition(
        dino,
        chunks,
        expected,
        dataset=DATASET,
        cell=part.cell,
        date=day,
        lancedb_uri=lancedb.uri,
        store=objects.store(),
        batch_size=batch_size,
        patch_vectors=config.patch_vectors,
        min_index_rows=config.min_index_rows,
        progress=context.log.info,
    )
    qa = run.qa
    img = (
        embedding_preview(run.vectors, run.thumbs, run.places, part.key)
        if run.rows
        else placeholder(f"{part.key}: no chips, no vectors")
    )
    metadata = {
        "model_id": dino.model_id,
        "trained": dino.trained,
        "dim": dino.dim,
        "rows": run.rows,
        "chips": expected,
        "patch_rows": run.patch_rows,
        "export_uri": run.export_uri,
        "index_status": run.index_status,
        "lance_version": run.lance_version,
        "tiles_per_second": round(run.tiles_per_second, 2),
        "device": str(device["device"]),
        "norm_mean": qa["norm_mean"] or 0.0,
        "norm_std": qa["norm_std"] or 0.0,
        **preview_metadata(img, imagery.previews_dir, "dinov3_embeddings", part),
    }
    if not dino.trained:
        metadata["warning"] = "UNTRAINED: random-weight model, vectors are not meaningful"
    if expected == 0:
        metadata["note"] = f"no vhr_chips in {part.key}"
    yield MaterializeResult(metadata=metadata)
    counts = {
        "rows": qa["rows"],
        "expected_tiles": qa["expected_tiles"],
        "tiles_with_vector": qa["tiles_with_vector"],
    }
    yield _check(
        "coverage",
        qa["coverage"] == 1.0 and qa["rows"] == expected and qa["duplicate_uids"] == 0,
        {**counts, "coverage": float(qa["coverage"]), "duplicate_uids": qa["duplicate_uids"]},
        "chips with a finite, non-zero vector / chips, from the Parquet export",
    )
    yield _check(
        "no_nan_vectors",
        qa["nan_vectors"] == 0,
        {"nan_vectors": qa["nan_vectors"]},
        "vectors with a NaN or inf value",
    )
    yield _check(
        "no_zero_vectors",
        qa["zero_vectors"] == 0,
        {"zero_vectors": qa["zero_vectors"]},
        "all-zero vectors (a zero CLS token: dead input)",
    )
    yield _check(
        "duplicate_vectors",
        qa["duplicate_fraction"] <= config.max_duplicate_fraction,
        {
            "duplicate_vectors": qa["duplicate_vectors"],
            "duplicate_fraction": float(qa["duplicate_fraction"]),
            "max_duplicate_fraction": config.max_duplicate_fraction,
        },
        "vectors identical to another chip's",
    )
