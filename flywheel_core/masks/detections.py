"""Accepted detections through the mask factory, the way seed labels go through it.

A model's detection polygon is a prompt like a label polygon: the same prompts, back end,
refinement and QA (`iter_masks`) on every chip it meets. The detection is confirmed when the
chips whose masks were accepted hold at least `MIN_CONFIRMED_SHARE` of its area (every chip, for
one that fits in one); its refined footprint is then the union of those masks (lon/lat), which
becomes the label's geometry. Otherwise it is refused with the masks' reasons, as a seed label
whose mask is rejected makes its chip ambiguous rather than a training positive. A detection the
chips show less than `MIN_CONFIRMED_SHARE` of (predictions cover the whole scene, chips only
part of it) cannot be confirmed or refuted and passes with its own polygon: the mask of a sliver
at a chip's edge would become the label of a system it shows a tenth of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import shapely
from shapely import wkb
from shapely.geometry.base import BaseGeometry

from flywheel_core.flywheel.acceptance import Detection
from flywheel_core.flywheel.backfill import Refinement
from flywheel_core.masks.factory import FactorySettings, iter_masks, union, weights_of
from flywheel_core.masks.types import MaskBackend

# A detection across chips (a ground-mounted farm) is confirmed when the chips whose masks were
# accepted hold this share of it: a sliver at a chip edge with an empty mask does not veto it.
MIN_CONFIRMED_SHARE = 0.8


def _prompt_label(key: str, geometry: BaseGeometry) -> dict[str, Any]:
    """A detection as the label row `iter_masks` expects (a polygon, its own prompt)."""
    blob = wkb.dumps(geometry)
    x0, y0, x1, y1 = geometry.bounds
    return {
        "label_id": key,
        "geometry_type": "polygon",
        "geometry": blob,
        "prompt_geometry": blob,
        "bbox_xmin": x0,
        "bbox_ymin": y0,
        "bbox_xmax": x1,
        "bbox_ymax": y1,
    }


def _key(det: Detection, i: int) -> str:
    return det.prediction_id or f"detection-{i}"


def refine_detections(
    detections: Sequence[Detection],
    chips: Sequence[dict],
    backend: MaskBackend,
    settings: FactorySettings | None = None,
) -> list[Refinement]:
    """One Refinement per detection, in order. `chips` are VHR chip rows (any cell) of the
    detections' date; a detection no chip shows is passed as it is (no geometry of its own:
    the label keeps the detection's polygon)."""
    settings = settings or FactorySettings()
    keys = [_key(d, i) for i, d in enumerate(detections)]
    labels = [_prompt_label(k, d.geometry) for k, d in zip(keys, detections, strict=True)]
    masks: dict[str, list[dict]] = {k: [] for k in keys}
    for row in iter_masks(chips, labels, backend, settings):
        masks[row["label_id"]].append(row)
    out = []
    for key, detection in zip(keys, detections, strict=True):
        rows = masks[key]
        provenance: dict[str, Any] = {
            "backend": backend.name,
            "model_id": backend.model_id,
            "weights": weights_of(backend),
            "chips": [r["chip_id"] for r in rows],
            "iou_with_prompt": [round(float(r["iou_with_prompt"]), 4) for r in rows],
            "stability_score": [
                None if r["stability_score"] is None else round(float(r["stability_score"]), 4)
                for r in rows
            ],
        }
        if not rows:  # e.g. at the edge of the world, in a cell nobody chipped: nothing to confirm
            out.append(Refinement(True, None, "no chip shows the detection", provenance))
            continue
        refused = [r for r in rows if not r["accepted"]]
        shown = [shapely.area(wkb.loads(r["prompt_geometry"])) for r in rows]
        whole = shapely.area(detection.geometry) or sum(shown)
        provenance["shown_share"] = round(min(1.0, sum(shown) / whole), 4) if whole else 0.0
        if provenance["shown_share"] < MIN_CONFIRMED_SHARE:
            # mostly where no chip was cut (predictions cover the whole scene): the masks of a
            # sliver at a chip edge speak for neither the detection's shape nor its existence
            why = f"chips show {provenance['shown_share']:.0%} of the detection: unconfirmed"
            out.append(Refinement(True, None, why, provenance))
            continue
        confirmed = sum(a for a, r in zip(shown, rows, strict=True) if r["accepted"])
        provenance["confirmed_share"] = round(confirmed / whole, 4) if whole else 0.0
        if provenance["confirmed_share"] < MIN_CONFIRMED_SHARE:
            reasons = "; ".join(sorted({r["reason"] for r in refused}))
            out.append(Refinement(False, None, reasons, provenance))
            continue
        parts = [
            wkb.loads(r["mask_geometry"])
            for r in rows
            if r["accepted"] and r["mask_geometry"] is not None
        ]
        footprint = union(parts) if parts else None
        if footprint is None or footprint.is_empty:
            out.append(Refinement(False, None, "empty mask", provenance))
            continue
        area = sum(r["mask_area_m2"] for r in rows if r["accepted"])
        provenance["mask_area_m2"] = round(float(area), 2)
        out.append(Refinement(True, footprint, "accepted", provenance))
    return out
