"""`validated_backfill`: predictions measured and, where the rules agree, made labels."""

import json

import geopandas as gpd
from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from flywheel_assets.partitions import SETTINGS, cell_date
from flywheel_assets.resources import ImageryResource
from flywheel_core.flywheel.acceptance import AcceptanceRules
from flywheel_core.flywheel.backfill import backfill, partition_metrics, truth_in_cell
from flywheel_core.flywheel.hard_negatives import DEFAULT_K, hard_negatives
from flywheel_core.lake.models import latest_model, registry_name
from flywheel_core.lake.predictions import predictions_for
from flywheel_core.partitions import CellDate
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.lancedb_io import LanceDBResource


class BackfillConfig(Config):
    hard_negative_k: int = Field(
        default=DEFAULT_K,
        ge=0,
        description="Nearest unlabeled chips recorded per rejected or false-positive detection "
        "(0 turns hard-negative mining off).",
    )


def _truth(imagery: ImageryResource) -> gpd.GeoDataFrame | None:
    """The synthetic world's hidden truth beside its catalog, when there is one."""
    from pathlib import Path

    path = Path(imagery.catalog_path).parent / "truth.parquet"
    return gpd.read_parquet(path) if path.exists() else None


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
) -> MaterializeResult:
    """Object- and pixel-level metrics per partition; accepted detections become model labels;
    the embedding neighbours of rejected and false-positive detections become hard-negative
    candidates."""
    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    day = part.date.isoformat()
    truth = _truth(imagery)
    with ducklake.connect() as con:
        model = latest_model(con, registry_name(day))
        if model is None:
            raise Failure(
                f"no model registered for {day}: materialize model_checkpoint[{day}] first"
            )
        detections = []
        for r in predictions_for(con, model["model_id"], part.cell, part.date):
            measured = json.loads(r["metrics"] or "{}")
            detections.append(
                {
                    "geometry": r["geometry"],
                    "score": r["score"],
                    "area_m2": r["area_m2"],
                    "msi_pvi": measured.get("msi_pvi"),
                    "vhr_pv_score": measured.get("vhr_pv_score"),
                    "prediction_id": r["prediction_id"],
                }
            )
        # Measured before the backfill, against the labels the model was trained from.
        metrics = partition_metrics(
            con,
            detections,
            cell=part.cell,
            date=part.date,
            truth=truth,
            exclude_model_id=model["model_id"],
        )
        result = backfill(
            con,
            detections,
            cell=part.cell,
            date=part.date,
            round=model["round"],
            model_id=model["model_id"],
            rules=AcceptanceRules(),
            run_id=context.run_id,
            s2_level=SETTINGS.s2_level,
            h3_resolution=SETTINGS.h3_resolution,
        )
        mined = None
        if config.hard_negative_k > 0:
            # After the backfill's commit, so chips its new labels cover count as labeled.
            mined = hard_negatives(
                lancedb.connect(),
                con,
                result.decided,
                cell=part.cell,
                date=part.date,
                round=model["round"],
                model_id=model["model_id"],
                truth=truth_in_cell(truth, part.cell, part.date) if truth is not None else None,
                k=config.hard_negative_k,
                run_id=context.run_id,
            )
    context.log.info(
        f"{result.n_detections} detections: {result.accepted} accepted "
        f"({result.inserted} new labels), rejected {result.rejected}"
    )
    if mined is not None and mined.no_embeddings:
        context.log.warning(
            f"no dinov3_embeddings for {part.cell} {day}: {mined.queries} rejected or "
            "false-positive detection(s) left without hard-negative candidates "
            "(materialize dinov3_embeddings for the partition to mine them)"
        )
    elif mined is not None:
        context.log.info(
            f"hard negatives: {mined.queries} queries -> {mined.candidates} candidates "
            f"(+{mined.inserted} new, -{mined.deleted} gone, {mined.no_query_chip} without a chip)"
            + ("; the embeddings are untrained (random weights)" if mined.trained is False else "")
        )
    flat = {}
    for ref, m in metrics.items():
        for k, v in m.as_dict().items():
            if isinstance(v, int | float):
                flat[f"{ref}_{k}"] = float(v)
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
            "ducklake_snapshot_id": result.snapshot_id,
            "hard_negative_candidates": mined.candidates if mined is not None else 0,
            "hard_negatives": MetadataValue.json(mined.as_metadata() if mined else {"off": True}),
            **flat,
        }
    )
