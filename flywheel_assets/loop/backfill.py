"""`validated_backfill`: predictions measured and, where the calibrated rules and the mask factory
agree, made labels (flywheel_core.flywheel.partition has the steps)."""

from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from flywheel_assets.masks.config import MaskFactoryConfig, load_mask_backend
from flywheel_assets.metadata import preview_metadata
from flywheel_assets.partitions import SETTINGS, cell_date
from flywheel_assets.resources import ImageryResource
from flywheel_core.lake.models import latest_model, registry_name
from flywheel_core.masks.types import MaskBackend
from flywheel_core.partitions import CellDate
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.gpu import GPUResource
from flywheel_resources.lancedb_io import LanceDBResource

if TYPE_CHECKING:
    import geopandas as gpd

# flywheel_core.flywheel.hard_negatives.DEFAULT_K, repeated here because that module imports
# lancedb and a config default is read when the code location loads (test_import_cost checks
# that they agree).
DEFAULT_K = 5


class BackfillConfig(Config):
    hard_negative_k: int = Field(
        default=DEFAULT_K,
        ge=0,
        description="Nearest unlabeled chips recorded per rejected detection (0: no mining).",
    )
    refine: bool = Field(
        default=True,
        description="Confirm accepted detections with the mask factory (their label geometry is "
        "then the refined mask); off: the detection polygon becomes the label as it is.",
    )
    masks: MaskFactoryConfig = Field(
        default_factory=MaskFactoryConfig,
        description="Mask back end for the confirmation (the same settings as sam_masks).",
    )


def _truth(imagery: ImageryResource) -> "gpd.GeoDataFrame | None":
    """The synthetic world's hidden truth (when the resource names it), for the figures only."""
    import geopandas as gpd  # pandas and GDAL bindings: imported by the step only

    path = Path(imagery.truth_path) if imagery.truth_path else None
    return gpd.read_parquet(path) if path is not None and path.exists() else None


@asset(
    partitions_def=cell_date,
    deps=["predictions", "seed_labels", "dinov3_embeddings"],
    group_name="loop",
    kinds={"ducklake"},
)
def validated_backfill(
    context: AssetExecutionContext,
    config: BackfillConfig,
    ducklake: DuckLakeResource,
    imagery: ImageryResource,
    lancedb: LanceDBResource,
    gpu: GPUResource,
) -> MaterializeResult:
    """Object- and pixel-level metrics per partition; detections the round's calibrated rules
    accept and the mask factory confirms become model labels; the embedding neighbours of
    rejected detections become hard-negative candidates."""
    # lancedb loads here, in the step, so that loading the code location stays fast
    from flywheel_core.flywheel.partition import backfill_partition, decisions_preview

    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    day = part.date.isoformat()

    def backend_for(gsd: float) -> MaskBackend:
        return load_mask_backend(gpu, config.masks, gsd)

    with ducklake.connect() as con:
        model = latest_model(con, registry_name(day))
        if model is None:
            raise Failure(
                f"no model registered for {day}: materialize model_checkpoint[{day}] first"
            )
        out = backfill_partition(
            con,
            lancedb.connect(),
            model,
            cell=part.cell,
            day=part.date,
            s2_level=SETTINGS.s2_level,
            h3_resolution=SETTINGS.h3_resolution,
            backend_for=backend_for if config.refine else None,
            hard_negative_k=config.hard_negative_k,
            truth=_truth(imagery),
            run_id=context.run_id,
        )
    result, mined = out.result, out.hard_negatives
    context.log.info(
        f"{result.n_detections} detections: {result.accepted} accepted "
        f"({result.inserted} new labels), rejected {result.rejected}; "
        f"calibration {out.calibration.digest}: {out.calibration.summary()}"
    )
    if mined is not None and mined.no_embeddings:
        context.log.warning(
            f"no dinov3_embeddings for {part.cell} {day}: {mined.queries} rejected "
            "detection(s) left without hard-negative candidates "
            "(materialize dinov3_embeddings for the partition to mine them)"
        )
    flat = {
        f"{ref}_{k}": round(float(v), 4)
        for ref, m in out.metrics.items()
        for k, v in m.as_dict().items()
        if isinstance(v, int | float)
    }
    return MaterializeResult(
        metadata={
            "model_id": model["model_id"],
            "round": model["round"],
            "detections": result.n_detections,
            "accepted": result.accepted,
            "labels_inserted": result.inserted,
            "already_present": result.already_present,
            "rejected": MetadataValue.json(result.rejected),
            "rejection_reasons": MetadataValue.json(result.reasons),
            "calibration": MetadataValue.json(
                {"digest": out.calibration.digest, **out.calibration.values()}
            ),
            "ducklake_snapshot_id": result.snapshot_id,
            "hard_negative_candidates": mined.candidates if mined is not None else 0,
            "hard_negatives": MetadataValue.json(mined.as_metadata() if mined else {"off": True}),
            **flat,
            **preview_metadata(
                decisions_preview(out, part.cell), imagery.previews_dir, "validated_backfill", part
            ),
        }
    )
