"""From chips and labels to QA'd masks: prompt, segment, refine, assess, one chip at a time."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import shapely
from affine import Affine
from rasterio.env import env_ctx_if_needed
from shapely import wkb
from shapely.geometry import MultiPolygon, box
from shapely.geometry.base import BaseGeometry

from flywheel_core.imagery.vhr_chips import chip_image
from flywheel_core.lake.spatial_filters import LABEL_BBOX_COLUMNS, box_meets, box_of
from flywheel_core.masks.prompts import PromptSettings, chip_prompts, to_lonlat_many
from flywheel_core.masks.qa import AcceptanceRules, MaskQA, assess
from flywheel_core.masks.refine import RefineSettings, rasterize_each, refine_many
from flywheel_core.masks.timing import StageTimer
from flywheel_core.masks.types import MaskBackend, Prompt, RawMask

log = logging.getLogger(__name__)

SAM_MASK_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("chip_id", pa.string()),
        ("label_id", pa.string()),
        ("cell", pa.string()),
        ("date", pa.string()),
        ("backend", pa.string()),
        ("model_id", pa.string()),
        ("weights", pa.string()),  # trained | random | none
        ("prompt_kind", pa.string()),
        ("label_geometry_type", pa.string()),
        ("clipped", pa.bool_()),
        ("prompt_box", pa.list_(pa.float32(), 4)),
        ("prompt_points", pa.list_(pa.float32())),  # x0, y0, x1, y1, ... in chip pixels
        ("prompt_point_labels", pa.list_(pa.int8())),
        ("prompt_geometry", pa.binary()),  # WKB, EPSG:4326
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("raw_mask", pa.binary()),  # np.packbits of the (height, width) bool mask
        ("mask", pa.binary()),  # refined, packbits
        ("mask_geometry", pa.binary()),  # refined polygon, WKB EPSG:4326 (null when empty)
        ("mask_area_m2", pa.float64()),
        ("iou_with_prompt", pa.float64()),
        ("predicted_iou", pa.float64()),
        ("stability_score", pa.float64()),
        ("area_ratio", pa.float64()),
        ("accepted", pa.bool_()),
        ("reason", pa.string()),
        ("ducklake_snapshot_id", pa.int64()),
    ]
)


@dataclass(frozen=True)
class FactorySettings:
    prompts: PromptSettings = field(default_factory=PromptSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)
    rules: AcceptanceRules = field(default_factory=AcceptanceRules)


def polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """A valid polygon or multipolygon: a ring reprojected to lon/lat can pinch, and repairing it
    can leave lines or points beside the polygons, which are dropped."""
    if geometry.is_valid:
        return geometry
    parts = [
        g
        for g in shapely.get_parts(shapely.make_valid(geometry))
        if g.geom_type in ("Polygon", "MultiPolygon")
    ]
    return shapely.union_all(parts) if parts else MultiPolygon()


def union(geometries: list[BaseGeometry]) -> BaseGeometry:
    """The polygonal union of lon/lat pieces; on a GEOS topology error (pieces that almost
    coincide after reprojection) the union is redone on a 1e-9° (0.1 mm) grid."""
    pieces = [polygonal(g) for g in geometries]
    try:
        return polygonal(shapely.union_all(pieces))
    except shapely.errors.GEOSException:
        return polygonal(shapely.union_all(pieces, grid_size=1e-9))


def pack(mask: np.ndarray) -> bytes:
    return np.packbits(mask.astype(bool), axis=None).tobytes()


def unpack(data: bytes, height: int, width: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=height * width)
    return bits.reshape(height, width).astype(bool)


def channels_last(bands: np.ndarray) -> np.ndarray:
    """A (C, H, W) array as a new C-contiguous (H, W, C) one, the layout back ends take; one
    band at a time, several times faster than numpy's copy of the transposed view."""
    out = np.empty((*bands.shape[1:], bands.shape[0]), dtype=bands.dtype)
    for i, band in enumerate(bands):
        out[..., i] = band
    return out


def weights_of(backend: MaskBackend) -> str:
    return getattr(backend, "weights", None) or ("trained" if backend.trained else "random")


def labels_meeting(chip: dict, labels: list[dict]) -> list[dict]:
    """Labels whose prompt footprint's bbox meets the chip's footprint bbox (a cheap prefilter;
    either box may cross the date line, west > east)."""
    footprint = box_of(wkb.loads(chip["footprint"]))
    return [lab for lab in labels if box_meets([lab[c] for c in LABEL_BBOX_COLUMNS], footprint)]


@dataclass(frozen=True)
class _Assessed:
    """One prompt's answer after the shared refinement and QA."""

    refined: np.ndarray
    qa: MaskQA
    mask_geom: BaseGeometry | None
    prompt_geom: BaseGeometry


def _refine_and_assess(
    chip: dict, prompts: list[Prompt], raws: list[RawMask], settings: FactorySettings
) -> list[_Assessed]:
    """The "refinement" stage for one chip's prompts: refine, QA against each prompt's
    footprint raster, and both geometries back in lon/lat. Each step runs once for all the
    prompts (footprints and refined polygons rasterized in one batch, every geometry
    reprojected in one call), giving what it gives for each prompt on its own."""
    transform = Affine(*chip["transform"])
    gsd = abs(transform.a)
    h, w = chip["height"], chip["width"]
    regions = rasterize_each([p.region for p in prompts], (h, w))
    refined = refine_many([raw.mask for raw in raws], gsd, settings.refine)
    qas = [
        assess(mask, region, prompt, raw, gsd, settings.rules)
        for prompt, raw, region, (mask, _) in zip(prompts, raws, regions, refined, strict=True)
    ]
    polygons = [polygon for _, polygon in refined if polygon is not None]
    in_frame = list(shapely.intersection([p.region for p in prompts], box(0, 0, w, h)))
    lonlat = iter(
        [polygonal(g) for g in to_lonlat_many(polygons + in_frame, chip["crs"], transform)]
    )
    mask_geoms = [next(lonlat) if polygon is not None else None for _, polygon in refined]
    return [
        _Assessed(mask, qa, mask_geom, next(lonlat))
        for (mask, _), qa, mask_geom in zip(refined, qas, mask_geoms, strict=True)
    ]


def _row(
    chip: dict,
    prompt: Prompt,
    raw: RawMask,
    done: _Assessed,
    backend: MaskBackend,
    weights: str,
    snapshot_id: int | None,
) -> dict:
    """The stored row (SAM_MASK_SCHEMA) of one prompt: masks bit-packed, geometries as WKB."""
    qa = done.qa
    return {
        "uid": f"{chip['chip_id']}|{prompt.label_id}",
        "chip_id": chip["chip_id"],
        "label_id": prompt.label_id,
        "cell": chip["cell"],
        "date": chip["date"],
        "backend": backend.name,
        "model_id": backend.model_id,
        "weights": weights,
        "prompt_kind": prompt.kind,
        "label_geometry_type": prompt.source_geometry,
        "clipped": prompt.clipped,
        "prompt_box": list(prompt.box),
        "prompt_points": prompt.points.reshape(-1).astype(float).tolist(),
        "prompt_point_labels": prompt.point_labels.astype(int).tolist(),
        "prompt_geometry": wkb.dumps(done.prompt_geom),
        "height": chip["height"],
        "width": chip["width"],
        "raw_mask": pack(raw.mask),
        "mask": pack(done.refined),
        "mask_geometry": wkb.dumps(done.mask_geom) if done.mask_geom is not None else None,
        "mask_area_m2": qa.area_m2,
        "iou_with_prompt": qa.iou_with_prompt,
        "predicted_iou": qa.predicted_iou,
        "stability_score": qa.stability_score,
        "area_ratio": qa.area_ratio,
        "accepted": qa.accepted,
        "reason": qa.reason,
        "ducklake_snapshot_id": snapshot_id,
    }


def chip_rows(
    chip: dict,
    labels: list[dict],
    backend: MaskBackend,
    settings: FactorySettings,
    timer: StageTimer,
    snapshot_id: int | None = None,
) -> list[dict]:
    """Every row of one chip, each step inside its stage of `timer` (see masks/timing.py)."""
    with timer.stage("prompting"):
        prompts = chip_prompts(labels_meeting(chip, labels), chip, settings.prompts)
    if not prompts:
        return []
    with timer.stage("io"):
        image = channels_last(chip_image(chip))
    with timer.stage("model"):
        raws = backend.segment(image, prompts)
    with timer.stage("refinement"):
        assessed = _refine_and_assess(chip, prompts, raws, settings)
    with timer.stage("rows"):
        weights = weights_of(backend)
        return [
            _row(chip, prompt, raw, done, backend, weights, snapshot_id)
            for prompt, raw, done in zip(prompts, raws, assessed, strict=True)
        ]


def iter_masks(
    chips: Iterable[dict],
    labels: list[dict],
    backend: MaskBackend,
    settings: FactorySettings,
    timer: StageTimer | None = None,
    snapshot_id: int | None = None,
) -> Iterator[dict]:
    """One row per (label, chip) pair, in chip order; chips no label meets cost nothing.

    Each chip runs inside one GDAL environment (rasterio's `env_ctx_if_needed`): without it
    every rasterize/polygonize call sets up and tears down its own, which cost more than the
    rasterization itself on a 256² chip. The environment closes before the chip's rows are
    yielded, so no GDAL configuration stays open while the caller runs.
    """
    timer = timer or StageTimer()
    for chip in chips:
        with timer.remainder("other"), env_ctx_if_needed():
            rows = chip_rows(chip, labels, backend, settings, timer, snapshot_id)
        yield from rows
