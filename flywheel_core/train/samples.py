"""Training samples in the seed schema: one row per chip, image + mask + MSI + metadata.

Positives are chips whose every mask was accepted (their masks are merged into one); a chip with a
rejected mask is ambiguous and left out. Negatives are chips no label meets and where the spectral
PV score finds (almost) nothing PV-like; with 30 % seed labels most unlabeled PV would otherwise
enter as a false negative. They are kept at `negative_ratio` per positive, chosen by a hash of the
chip id so a rerun picks the same ones.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from shapely import wkb
from shapely.geometry import MultiPolygon, Polygon
from shapely.ops import unary_union

from flywheel_core.imagery.vhr_chips import chip_image
from flywheel_core.masks.backends.classical import pv_score
from flywheel_core.masks.factory import unpack
from flywheel_core.store.lance_tables import pixels_field
from flywheel_core.train.splits import block_of, split_of

NAMESPACE = uuid.UUID("5b0c8f0e-7d1a-4a57-9a43-2f0e8d6c7b11")

MASK_QA_TYPE = pa.struct(
    [
        ("label_id", pa.string()),
        ("backend", pa.string()),
        ("model_id", pa.string()),
        ("weights", pa.string()),
        ("iou_with_prompt", pa.float64()),
        ("predicted_iou", pa.float64()),
        ("stability_score", pa.float64()),
        ("area_ratio", pa.float64()),
        ("mask_area_m2", pa.float64()),
    ]
)

METADATA_TYPE = pa.struct(
    [
        ("cell", pa.string()),
        ("date", pa.string()),
        ("chip_id", pa.string()),
        ("s2_token", pa.string()),
        ("s2_token_level", pa.int16()),
        ("h3_cell", pa.string()),
        ("split_block", pa.string()),
        ("split_level", pa.int16()),
        ("split", pa.string()),
        ("negative", pa.bool_()),
        ("sensor", pa.string()),
        ("msi_sensor", pa.string()),
        ("crs", pa.string()),
        ("transform", pa.list_(pa.float64())),
        ("gsd_m", pa.float64()),
        ("footprint", pa.binary()),
        ("vhr_shape", pa.list_(pa.int32())),
        ("vhr_dtype", pa.string()),
        ("vhr_bands", pa.list_(pa.string())),
        ("msi_shape", pa.list_(pa.int32())),
        ("msi_channels", pa.list_(pa.string())),
        ("msi_gsd_m", pa.float64()),
        ("cloud_fraction", pa.float64()),
        ("mask_qa", pa.list_(MASK_QA_TYPE)),
    ]
)

TRAINING_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("uuid", pa.string()),
        ("cell", pa.string()),
        ("date", pa.string()),
        ("split", pa.string()),
        ("prompt_geometry", pa.binary()),  # WKB EPSG:4326 of the merged prompts; null for negatives
        pixels_field("vhr_image_chip"),  # uint8 (bands, H, W), shape in metadata.vhr_shape
        pixels_field("generated_mask"),  # uint8 (H, W), 1 = panel
        pixels_field("msi_image_chip"),  # float32 (channels, h, w), shape in metadata.msi_shape
        ("metadata", METADATA_TYPE),
    ]
)


@dataclass(frozen=True)
class SampleSettings:
    negative_ratio: float = 1.0
    negative_max_pv_fraction: float = 0.001
    negative_score_cut: float = 18.0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)


def _rank(chip_id: str) -> str:
    return hashlib.sha256(chip_id.encode()).hexdigest()


def _msi_stack(msi: dict) -> tuple[np.ndarray, list[str]]:
    h, w = msi["height"], msi["width"]
    refl = np.frombuffer(msi["reflectance"], np.float32).reshape(-1, h, w)
    idx = np.frombuffer(msi["indices"], np.float32).reshape(-1, h, w)
    return np.concatenate([refl, idx]), list(msi["band_names"]) + list(msi["index_names"])


def _qa(m: dict) -> dict:
    return {k: m[k] for k in MASK_QA_TYPE.names}


def _row(chip: dict, msi: dict, masks: list[dict], split_level: int, fractions: tuple) -> dict:
    h, w = chip["height"], chip["width"]
    merged = np.zeros((h, w), dtype=np.uint8)
    for m in masks:
        merged |= unpack(m["mask"], m["height"], m["width"]).astype(np.uint8)
    prompts = [wkb.loads(m["prompt_geometry"]) for m in masks]
    prompt_union = unary_union(prompts) if prompts else None
    if prompt_union is not None and isinstance(prompt_union, Polygon):
        prompt_union = MultiPolygon([prompt_union])
    stack, channels = _msi_stack(msi)
    block = block_of(chip["center_lon"], chip["center_lat"], split_level)
    split = split_of(block, fractions)
    sample_id = str(uuid.uuid5(NAMESPACE, chip["chip_id"]))
    return {
        "uid": chip["chip_id"],
        "uuid": sample_id,
        "cell": chip["cell"],
        "date": chip["date"],
        "split": split,
        "prompt_geometry": wkb.dumps(prompt_union) if prompt_union is not None else None,
        "vhr_image_chip": chip["image"],
        "generated_mask": merged.tobytes(),
        "msi_image_chip": stack.astype(np.float32).tobytes(),
        "metadata": {
            "cell": chip["cell"],
            "date": chip["date"],
            "chip_id": chip["chip_id"],
            "s2_token": chip["s2_token"],
            "s2_token_level": chip["s2_token_level"],
            "h3_cell": chip["h3_cell"],
            "split_block": block,
            "split_level": split_level,
            "split": split,
            "negative": not masks,
            "sensor": chip["sensor"],
            "msi_sensor": msi["sensor"],
            "crs": chip["crs"],
            "transform": list(chip["transform"]),
            "gsd_m": chip["gsd_m"],
            "footprint": chip["footprint"],
            "vhr_shape": [chip["bands"], h, w],
            "vhr_dtype": chip["dtype"],
            "vhr_bands": list(chip["band_names"]),
            "msi_shape": list(stack.shape),
            "msi_channels": channels,
            "msi_gsd_m": msi["gsd_m"],
            "cloud_fraction": msi["cloud_fraction"],
            "mask_qa": [_qa(m) for m in masks],
        },
    }


def pv_like_fraction(chip: dict, cut: float) -> float:
    return float(np.mean(pv_score(chip_image(chip).transpose(1, 2, 0)) > cut))


def build_samples(
    chips: list[dict],
    msi: list[dict],
    masks: list[dict],
    settings: SampleSettings,
    split_level: int,
) -> tuple[list[dict], dict[str, int]]:
    """(rows, counts): positives from accepted masks, negatives at the configured ratio."""
    msi_by_chip = {m["chip_id"]: m for m in msi}
    masks_by_chip: dict[str, list[dict]] = {}
    for m in masks:
        masks_by_chip.setdefault(m["chip_id"], []).append(m)
    rows, counts = (
        [],
        {"positives": 0, "negatives": 0, "ambiguous": 0, "no_msi": 0, "pv_like_unlabeled": 0},
    )
    negatives = []
    for chip in chips:
        if chip["chip_id"] not in msi_by_chip:
            counts["no_msi"] += 1
            continue
        ms = masks_by_chip.get(chip["chip_id"], [])
        if ms and all(m["accepted"] for m in ms):
            rows.append(
                _row(chip, msi_by_chip[chip["chip_id"]], ms, split_level, settings.split_fractions)
            )
            counts["positives"] += 1
        elif ms:
            counts["ambiguous"] += 1
        elif (
            pv_like_fraction(chip, settings.negative_score_cut) > settings.negative_max_pv_fraction
        ):
            counts["pv_like_unlabeled"] += 1
        else:
            negatives.append(chip)
    keep = round(settings.negative_ratio * counts["positives"])
    for chip in sorted(negatives, key=lambda c: _rank(c["chip_id"]))[:keep]:
        rows.append(
            _row(chip, msi_by_chip[chip["chip_id"]], [], split_level, settings.split_fractions)
        )
        counts["negatives"] += 1
    return rows, counts
