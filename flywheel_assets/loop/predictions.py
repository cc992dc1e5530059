"""`predictions`: the round's model over a cell's whole VHR scene, as a COG and as polygons."""

import tempfile
from pathlib import Path

import numpy as np
import rasterio
from dagster import (
    AssetDep,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MultiToSingleDimensionPartitionMapping,
    asset,
)
from PIL import Image
from shapely import wkb

from flywheel_assets.metadata import preview_metadata
from flywheel_assets.partitions import SETTINGS, cell_date
from flywheel_assets.resources import ImageryResource
from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery.msi_sample import mean_index
from flywheel_core.infer.spectral import mean_pv_score
from flywheel_core.infer.tiled import predict_raster, torch_predictor
from flywheel_core.infer.vectorize import vectorize_probabilities
from flywheel_core.lake.models import latest_model, registry_name
from flywheel_core.lake.predictions import prediction_row, replace_predictions
from flywheel_core.partitions import CellDate, window_end
from flywheel_core.preview import placeholder
from flywheel_core.train.trainer import load_model
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


def _probability_preview(path: Path, detections: list) -> Image.Image:
    from PIL import ImageDraw

    with rasterio.open(path) as src:
        step = max(1, int(np.ceil(max(src.width, src.height) / 512)))
        prob = src.read(1, out_shape=(src.height // step, src.width // step))
        inv = ~src.transform
    img = Image.fromarray(prob).convert("RGB")
    draw = ImageDraw.Draw(img)
    for d in detections:
        for part in getattr(d.geometry_local, "geoms", [d.geometry_local]):
            ring = [inv * (x, y) for x, y in part.exterior.coords]
            draw.line([(c / step, r / step) for c, r in ring], fill=(255, 214, 0), width=1)
    return img


@asset(
    partitions_def=cell_date,
    deps=[
        AssetDep(
            "model_checkpoint", partition_mapping=MultiToSingleDimensionPartitionMapping("date")
        ),
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
    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    day = part.date.isoformat()
    with ducklake.connect() as con:
        model = latest_model(con, registry_name(day))
    if model is None:
        raise Failure(f"no model registered for {day}: materialize model_checkpoint[{day}] first")
    if model["params"].get("config", {}).get("bands", "vhr") != "vhr":
        raise Failure(
            "this model takes Sentinel-2 channels; tiled inference feeds VHR bands only so far "
            "(train with bands='vhr')"
        )
    area = cell_polygon(part.cell)
    ref = imagery.catalog().find(
        imagery.vhr_collection, area, part.date, window_end(part.date, SETTINGS.date_grain)
    )
    store = objects.store()
    cache = SETTINGS.data_dir / "cache" / "models" / model["model_id"] / "model.ckpt"
    if not cache.exists():
        store.get(f"models/{model['model_id']}/model.ckpt", cache)
    module = gpu.load("pv-seg", model["model_id"], lambda dev, dtype: load_model(cache).to(dev))
    rows, detections, cog_uri, tiles = [], [], "none", 0
    if ref is None:
        context.log.warning(f"no VHR scene for {part.key}: no predictions")
        img = placeholder(f"{part.key}: no scene")
    else:
        msi_rows = []
        db = lancedb.connect()
        if "msi_chips" in db.table_names():
            msi_rows = (
                db.open_table("msi_chips")
                .search()
                .where(f"cell = '{part.cell}' AND date = '{day}'")
                .limit(None)
                .to_arrow()
                .to_pylist()
            )
        with tempfile.TemporaryDirectory() as tmp:
            prob = Path(tmp) / "probability.tif"
            result = predict_raster(
                ref.assets["image"],
                prob,
                torch_predictor(module, gpu.torch_device()),
                tile=config.tile,
                overlap=config.overlap,
                batch_size=gpu.batch_size,
                progress=lambda done, total: (
                    context.log.info(f"{done}/{total} tiles")
                    if done == total or done % 32 == 0
                    else None
                ),
                tags={"model": model["model_id"], "cell": part.cell, "date": day},
            )
            tiles = result.tiles
            cog_uri = store.put(prob, f"predictions/{part.cell}/{day}/{model['model_id']}.tif")
            detections = vectorize_probabilities(
                prob,
                threshold=config.threshold,
                min_area_m2=config.min_area_m2,
                group_distance_m=config.group_distance_m,
                clip_to=area,
            )
            img = _probability_preview(prob, detections)
        with rasterio.open(ref.assets["image"]) as scene:
            spectral = [mean_pv_score(scene, d.geometry_local) for d in detections]
        for d, vhr_score in zip(detections, spectral, strict=True):
            pvi = mean_index(d.geometry, msi_rows, "pvi")
            rows.append(
                prediction_row(
                    wkb.dumps(d.geometry),
                    model_id=model["model_id"],
                    round_no=model["round"],
                    cell=part.cell,
                    day=part.date,
                    score=d.score,
                    area_m2=d.area_m2,
                    h3_resolution=SETTINGS.h3_resolution,
                    metrics={
                        "max_score": d.max_score,
                        "n_parts": d.n_parts,
                        "msi_pvi": pvi,
                        "vhr_pv_score": vhr_score,
                        "cog_uri": cog_uri,
                    },
                )
            )
    with ducklake.connect() as con:
        replace_predictions(con, model["model_id"], part.cell, part.date, rows)
    return MaterializeResult(
        metadata={
            "model_id": model["model_id"],
            "round": model["round"],
            "detections": len(rows),
            "tiles": tiles,
            "probability_cog": cog_uri,
            "total_area_m2": float(sum(r["area_m2"] for r in rows)),
            **preview_metadata(img, imagery.previews_dir, "predictions", part),
        }
    )
