"""Mask quality against the synthetic world's hidden truth.

For each stored mask, the true installation it is about is the one that overlaps the prompt most
(clipped to the chip, installed by the scene date); the mask and the raw prompt are both scored
against it, so the numbers say what the factory added over the label it started from.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
from affine import Affine
from rasterio.features import rasterize
from shapely import wkb
from shapely.geometry import box

from flywheel_core.masks.factory import unpack
from flywheel_core.masks.prompts import to_pixels
from flywheel_core.masks.qa import iou


@dataclass(frozen=True)
class MaskScore:
    uid: str
    backend: str
    weights: str
    accepted: bool
    label_geometry_type: str
    iou_mask: float
    iou_prompt: float


def _truth_in_chip(truth: gpd.GeoDataFrame, chip: dict) -> list[np.ndarray]:
    footprint = wkb.loads(chip["footprint"])
    live = truth[(truth["install_date"].astype(str) <= chip["date"]) & truth.intersects(footprint)]
    if live.empty:
        return []
    t = Affine(*chip["transform"])
    shape = (chip["height"], chip["width"])
    local = live.to_crs(chip["crs"])
    return [
        rasterize([(g, 1)], out_shape=shape, transform=t, dtype="uint8").astype(bool)
        for g in local.geometry
    ]


def score_masks(
    masks: list[dict], chips: dict[str, dict], truth: gpd.GeoDataFrame
) -> list[MaskScore]:
    cache: dict[str, list[np.ndarray]] = {}
    out = []
    for m in masks:
        chip = chips[m["chip_id"]]
        if m["chip_id"] not in cache:
            cache[m["chip_id"]] = _truth_in_chip(truth, chip)
        h, w = m["height"], m["width"]
        region_px = to_pixels(
            wkb.loads(m["prompt_geometry"]), chip["crs"], Affine(*chip["transform"])
        )
        region_px = region_px.intersection(box(0, 0, w, h))
        region = (
            rasterize([(region_px, 1)], out_shape=(h, w), dtype="uint8").astype(bool)
            if not region_px.is_empty
            else np.zeros((h, w), bool)
        )
        mask = unpack(m["mask"], h, w)
        objects = cache[m["chip_id"]]
        target = max(
            objects,
            key=lambda o: (np.count_nonzero(o & region), np.count_nonzero(o & mask)),
            default=None,
        )
        if target is None or not (target & (region | mask)).any():
            target = np.zeros((h, w), bool)
        out.append(
            MaskScore(
                uid=m["uid"],
                backend=m["backend"],
                weights=m["weights"],
                accepted=m["accepted"],
                label_geometry_type=m["label_geometry_type"],
                iou_mask=iou(mask, target),
                iou_prompt=iou(region, target),
            )
        )
    return out


def summarize(scores: list[MaskScore]) -> dict[str, dict[str, float]]:
    """Per back end: counts, acceptance, median IoU with truth, share where mask beats prompt."""
    groups: dict[str, list[MaskScore]] = defaultdict(list)
    for s in scores:
        weights = "no weights" if s.weights == "none" else f"{s.weights} weights"
        groups[f"{s.backend} ({weights})"].append(s)
    out = {}
    for name, group in sorted(groups.items()):
        ious = np.array([s.iou_mask for s in group])
        prompts = np.array([s.iou_prompt for s in group])
        accepted = np.array([s.accepted for s in group])
        out[name] = {
            "masks": len(group),
            "acceptance_rate": float(accepted.mean()),
            "median_iou_truth": float(np.median(ious)),
            "median_iou_truth_accepted": float(np.median(ious[accepted]))
            if accepted.any()
            else 0.0,
            "median_iou_prompt_truth": float(np.median(prompts)),
            "share_mask_beats_prompt": float(np.mean(ious > prompts)),
        }
    return out
