"""One partition's prediction run, end to end: scene in, probability COG and detections out.

Kept out of the Dagster `predictions` asset (which resolves the model, the scenes and the stores
around it) so the whole run is testable without Dagster, like `flywheel_core.embed.partition`.

Steps: the model's input channels are resolved (its `channels` hyperparameter, checked against
the registered `bands`); for a `vhr+msi` model the Sentinel-2 channels are read once over the
scene (`flywheel_core.infer.msi_channels`) — a missing scene or band fails here, before any tile
runs; `predict_raster` writes the blended probability COG into `out_dir`; `vectorize_probabilities`
turns it into detections inside the cell; each detection gets the features the backfill's
acceptance rules read (`vhr_pv_score`: median VHR spectral PV score under it; `msi_pvi`: mean
Sentinel-2 PV index of the partition's stored MSI chips under it; `max_score`; `n_parts`); and a
preview with a colour scale is drawn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rasterio
from PIL import Image
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from flywheel_core.imagery.msi_sample import mean_index
from flywheel_core.infer.msi_channels import MSIStack, read_msi_stack, split_channels
from flywheel_core.infer.preview import probability_preview
from flywheel_core.infer.spectral import median_pv_score
from flywheel_core.infer.tiled import TiledResult, predict_raster, torch_predictor
from flywheel_core.infer.vectorize import vectorize_probabilities

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BANDS = ("vhr", "vhr+msi")  # a registered model's params.config.bands
PROBABILITY_FILE = "probability.tif"


@dataclass(frozen=True)
class PredictionSettings:
    """What decides a partition's detections besides the model (the asset's config)."""

    tile: int = 256
    overlap: int = 64
    threshold: float = 0.5
    min_area_m2: float = 2.0
    group_distance_m: float = 8.5  # rows of one ground-mounted array (≈ 8 m apart) = one object


@dataclass(frozen=True)
class PartitionDetection:
    geometry: Polygon | MultiPolygon  # EPSG:4326
    geometry_local: Polygon | MultiPolygon  # the VHR scene's CRS
    score: float  # mean probability over its pixels
    area_m2: float
    n_pixels: int
    # What the backfill reads: max_score, n_parts, msi_pvi (None: no valid MSI pixel under it),
    # vhr_pv_score (None: no VHR pixel under it, or fewer than 3 bands).
    features: dict[str, float | int | None]


@dataclass
class PartitionPrediction:
    detections: list[PartitionDetection]
    probability_path: Path
    tiles: int
    bands: str  # "vhr" or "vhr+msi"
    channels: list[str]  # the model's input channels, in the order they were fed
    tiled: TiledResult
    preview: Image.Image
    msi_scene: str | None = None
    msi_valid_fraction: float | None = None  # of the 10 m grid over the scene, vhr+msi only
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step and in total

    @property
    def total_area_m2(self) -> float:
        return float(sum(d.area_m2 for d in self.detections))


def model_bands(module: Any, bands: str | None = None) -> tuple[str, list[str] | None]:
    """("vhr" | "vhr+msi", the model's channel names or None) of a loaded model.

    `bands` is the registered model's `params.config.bands`; the channel names come from the
    model's `channels` hyperparameter (`flywheel_core.train.dataset` names the MSI ones `msi_*`).
    The two must agree. A model without channel names can only be fed VHR bands.
    """
    if bands is not None and bands not in BANDS:
        raise ValueError(f"bands must be one of {BANDS}, got {bands!r}")
    channels = getattr(module, "channels", None)
    if channels is None:
        if bands == "vhr+msi":
            raise ValueError(
                "the model is registered with bands='vhr+msi' but its checkpoint lists no channel "
                "names, so the order of its MSI channels is unknown"
            )
        return "vhr", None
    _, msi = split_channels(channels)
    derived = "vhr+msi" if msi else "vhr"
    if bands is not None and bands != derived:
        raise ValueError(
            f"the model is registered with bands={bands!r} but its channels {list(channels)} "
            f"are a {derived!r} model's"
        )
    return derived, list(channels)


def vhr_band_indices(src: rasterio.io.DatasetReader, names: Sequence[str]) -> list[int]:
    """1-based scene bands for the model's VHR channels: by band description where the scene
    names all of them, else the first `len(names)` bands in order."""
    descriptions = list(src.descriptions or ())
    if all(n in descriptions for n in names):
        return [descriptions.index(n) + 1 for n in names]
    if src.count < len(names):
        raise ValueError(
            f"{src.name} has {src.count} bands; the model takes {len(names)} VHR channels "
            f"({', '.join(names)})"
        )
    if any(descriptions):
        log.warning(
            "%s describes its bands as %s, not the model's %s: feeding bands 1..%d in order",
            src.name,
            descriptions,
            list(names),
            len(names),
        )
    return list(range(1, len(names) + 1))


def predict_partition(
    vhr_href: str | Path,
    s2_assets: Mapping[str, str] | None,
    module: torch.nn.Module,
    *,
    area: BaseGeometry,
    msi_rows: Sequence[dict],
    out_dir: str | Path,
    settings: PredictionSettings | None = None,
    bands: str | None = None,
    s2_scene_id: str | None = None,
    device: Any = "cpu",
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    tags: Mapping[str, object] | None = None,
) -> PartitionPrediction:
    """Predict the VHR scene at `vhr_href` with `module` (a `PVSegmentationModule`).

    s2_assets: the Sentinel-2 L2A scene's band name -> href (None: no scene); read only for a
        `vhr+msi` model, which fails with `MissingChannelsError` (naming what is missing) when
        the scene or one of its bands is absent, before any tile runs.
    area: the cell polygon (EPSG:4326); detections whose centroid lies outside are dropped.
    msi_rows: the partition's stored `msi_chips` rows, for each detection's `msi_pvi`.
    out_dir: the probability COG is written to `out_dir / "probability.tif"`.
    bands: the registered model's `params.config.bands` (None: taken from the model's channels).
    device, batch_size, progress(done, total): passed to the tiled inference.
    tags: added to the COG's tags (with `bands` and `channels`).
    """
    settings = settings or PredictionSettings()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    kind, channels = model_bands(module, bands)
    with rasterio.open(vhr_href) as src:
        scene_transform, width, height = src.transform, src.width, src.height
        if channels is None:
            band_idx, fed = None, [src.descriptions[i] or f"band{i + 1}" for i in range(src.count)]
        else:
            vhr_names, _ = split_channels(channels)
            band_idx, fed = vhr_band_indices(src, vhr_names), list(channels)

    stack: MSIStack | None = None
    extra = None
    if kind == "vhr+msi":
        t0 = time.perf_counter()
        _, msi_names = split_channels(channels or [])
        stack = read_msi_stack(s2_assets, vhr_href, msi_names, scene_id=s2_scene_id)
        extra = stack.extra(scene_transform, width, height)
        timings["msi_channels"] = time.perf_counter() - t0

    out_dir = Path(out_dir)
    prob_path = out_dir / PROBABILITY_FILE
    all_tags: dict[str, object] = {"bands": kind, "channels": ",".join(fed)}
    if stack is not None:
        all_tags["msi_scene"] = stack.scene_id or ""
    all_tags.update(tags or {})
    tiled = predict_raster(
        vhr_href,
        prob_path,
        torch_predictor(module, device),
        tile=settings.tile,
        overlap=settings.overlap,
        batch_size=batch_size,
        bands=band_idx,
        extra=extra,
        progress=progress,
        tags=all_tags,
    )
    timings["inference"] = tiled.seconds
    timings["model"] = tiled.predict_seconds

    t0 = time.perf_counter()
    found = vectorize_probabilities(
        prob_path,
        threshold=settings.threshold,
        min_area_m2=settings.min_area_m2,
        group_distance_m=settings.group_distance_m,
        clip_to=area,
    )
    timings["vectorize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with rasterio.open(vhr_href) as scene:
        spectral = [median_pv_score(scene, d.geometry_local) for d in found]
    rows = list(msi_rows)
    detections = [
        PartitionDetection(
            geometry=d.geometry,
            geometry_local=d.geometry_local,
            score=d.score,
            area_m2=d.area_m2,
            n_pixels=d.n_pixels,
            features={
                "max_score": d.max_score,
                "n_parts": d.n_parts,
                "msi_pvi": mean_index(d.geometry, rows, "pvi"),
                "vhr_pv_score": vhr_score,
            },
        )
        for d, vhr_score in zip(found, spectral, strict=True)
    ]
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    preview = probability_preview(
        prob_path, detections, vhr_href=vhr_href, threshold=settings.threshold
    )
    timings["preview"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return PartitionPrediction(
        detections=detections,
        probability_path=prob_path,
        tiles=tiled.tiles,
        bands=kind,
        channels=fed,
        tiled=tiled,
        preview=preview,
        msi_scene=stack.scene_id if stack is not None else None,
        msi_valid_fraction=stack.valid_fraction if stack is not None else None,
        timings=timings,
    )
