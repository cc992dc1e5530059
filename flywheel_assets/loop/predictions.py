"""`predictions`: the round's model over a cell's whole VHR scene, as a COG and as polygons.

The run itself is `flywheel_core.infer.partition.predict_partition`; the asset resolves the
model, its checkpoint and the scenes, and stores what comes back.
"""

import tempfile
from pathlib import Path
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    asset,
)
from shapely import wkb

from flywheel_assets.metadata import preview_metadata
from flywheel_assets.partitions import SETTINGS, by_date, cell_date
from flywheel_assets.resources import ImageryResource
from flywheel_assets.scenes import partition_scene
from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.lake.models import latest_model, registry_name
from flywheel_core.lake.predictions import prediction_row, replace_predictions
from flywheel_core.lake.quote import sql_and
from flywheel_core.partitions import CellDate
from flywheel_core.preview import placeholder
from flywheel_core.train.checkpoints import cached_checkpoint
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.gpu import GPUResource
from flywheel_resources.lancedb_io import LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource


class PredictionConfig(Config):
    tile: int = 256
    overlap: int = 64
    threshold: float = 0.5
    min_area_m2: float = 2.0
    group_distance_m: float = 8.5  # rows of one ground-mounted array (≈ 8 m apart) = one object


def _msi_rows(lancedb: LanceDBResource, cell: str, day: str) -> list[dict]:
    db = lancedb.connect()
    if "msi_chips" not in db.table_names():
        return []
    table = db.open_table("msi_chips")
    where = sql_and({"cell": cell, "date": day})
    return table.search().where(where).limit(None).to_arrow().to_pylist()


def _load_model(store: Any, gpu: GPUResource, model_id: str) -> Any:
    """The registered model's weights, fetched once into the local cache, on the GPU resource."""
    from flywheel_core.train.trainer import load_model  # lightning: imported by the step only

    cache = cached_checkpoint(store, model_id, SETTINGS.model_cache_dir)
    return gpu.load("pv-seg", model_id, lambda dev, dtype: load_model(cache).to(dev))


def _prediction_rows(
    result: Any, model: dict[str, Any], part: CellDate, cog_uri: str
) -> list[dict[str, Any]]:
    """One `predictions` row per detection, with its features and where its probabilities are."""
    return [
        prediction_row(
            wkb.dumps(d.geometry),
            model_id=model["model_id"],
            round_no=model["round"],
            cell=part.cell,
            day=part.date,
            score=d.score,
            area_m2=d.area_m2,
            h3_resolution=SETTINGS.h3_resolution,
            metrics={**d.features, "bands": result.bands, "cog_uri": cog_uri},
        )
        for d in result.detections
    ]


@asset(
    partitions_def=cell_date,
    deps=[
        AssetDep("model_checkpoint", partition_mapping=by_date()),
        "vhr_chips",
        "msi_chips",
    ],
    group_name="loop",
    pool="gpu",
    kinds={"pytorch", "ducklake", "cog"},
)
def predictions(
    context: AssetExecutionContext,
    config: PredictionConfig,
    ducklake: DuckLakeResource,
    lancedb: LanceDBResource,
    objects: ObjectStoreResource,
    imagery: ImageryResource,
    gpu: GPUResource,
) -> MaterializeResult:
    """Tiled, blended inference over the cell's scene; polygons with score and area in DuckLake."""
    # scipy and rasterio load here, in the step, so that loading the code location stays fast
    from flywheel_core.infer.msi_channels import MissingChannelsError
    from flywheel_core.infer.partition import PredictionSettings, predict_partition

    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    day = part.date.isoformat()
    with ducklake.connect() as con:
        model = latest_model(con, registry_name(day))
    if model is None:
        raise Failure(f"no model registered for {day}: materialize model_checkpoint[{day}] first")
    model_id = model["model_id"]
    bands = model["params"].get("config", {}).get("bands", "vhr")
    area = cell_polygon(part.cell)
    vhr = partition_scene(context, imagery, "vhr", part)
    store = objects.store()
    module = _load_model(store, gpu, model_id)
    rows: list[dict[str, Any]] = []
    cog_uri, tiles = "none", 0
    facts: dict[str, Any] = {}
    if vhr is None:
        context.log.warning(f"no VHR scene for {part.key}: no predictions")
        img = placeholder(f"{part.key}: no scene")
    else:
        s2 = partition_scene(context, imagery, "msi", part) if bands != "vhr" else None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                result = predict_partition(
                    vhr.files["image"],
                    s2.files if s2 is not None else None,
                    module,
                    area=area,
                    msi_rows=_msi_rows(lancedb, part.cell, day),
                    out_dir=Path(tmp),
                    settings=PredictionSettings(**config.model_dump()),
                    bands=bands,
                    s2_scene_id=s2.scene_id if s2 is not None else None,
                    device=gpu.torch_device(),
                    batch_size=gpu.batch_size,
                    progress=lambda done, total: (
                        context.log.info(f"{done}/{total} tiles")
                        if done == total or done % 32 == 0
                        else None
                    ),
                    tags={"model": model_id, "cell": part.cell, "date": day},
                )
            except MissingChannelsError as exc:
                raise Failure(f"model {model_id} ({bands}) on {part.key}: {exc}") from exc
            cog_uri = store.put(
                result.probability_path, f"predictions/{part.cell}/{day}/{model_id}.tif"
            )
        tiles, img = result.tiles, result.preview
        facts = {
            "bands": result.bands,
            "channels": len(result.channels),
            "msi_scene": result.msi_scene or "none",
            "seconds": {k: round(v, 2) for k, v in result.timings.items()},
        }
        rows = _prediction_rows(result, model, part, cog_uri)
    with ducklake.connect() as con:
        replace_predictions(con, model_id, part.cell, part.date, rows)
    return MaterializeResult(
        metadata={
            "model_id": model_id,
            "round": model["round"],
            "detections": len(rows),
            "tiles": tiles,
            "probability_cog": cog_uri,
            "total_area_m2": float(sum(r["area_m2"] for r in rows)),
            **facts,
            **preview_metadata(img, imagery.previews_dir, "predictions", part),
        }
    )
