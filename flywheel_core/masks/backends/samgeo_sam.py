"""SAM (Meta's segment_anything checkpoints) through segment-geospatial's `SamGeo`.

The checkpoint must be a local file: `SamGeo` downloads Meta's weights whenever its checkpoint
path does not exist, so this back end checks the path first and raises
`ModelWeightsNotFoundError` before samgeo is ever called. samgeo (and torch) are imported only
when a back end is built.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from flywheel_core.masks.backends.prompting import (
    MASK_THRESHOLD,
    ModelWeightsNotFoundError,
    best_candidate,
    predicted_iou,
    read_json,
    rgb_image,
    sam_prompt,
    stability_score,
)
from flywheel_core.masks.types import Prompt, RawMask

SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
SIDECAR_SUFFIX = ".flywheel.json"


def sidecar_path(checkpoint: str | Path) -> Path:
    """`<checkpoint>.flywheel.json`: what the flywheel knows about a checkpoint file."""
    path = Path(checkpoint)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def checkpoint_is_random(checkpoint: str | Path) -> bool:
    """True when the file name says 'random' or the sidecar says `"random_weights": true`."""
    path = Path(checkpoint)
    if "random" in path.name.lower():
        return True
    return bool(read_json(sidecar_path(path)).get("random_weights", False))


def _check_model_type(model_type: str) -> None:
    if model_type not in SAM_MODEL_TYPES:
        raise ValueError(
            f"unknown SAM model type {model_type!r}: expected one of {', '.join(SAM_MODEL_TYPES)}"
        )


class SamGeoBackend:
    """Prompted SAM through `samgeo.SamGeo(automatic=False)`: one image encoding per chip."""

    name = "samgeo"

    def __init__(
        self, checkpoint: str | Path, model_type: str = "vit_b", device: str = "cpu"
    ) -> None:
        _check_model_type(model_type)
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            # Never let SamGeo see a missing path: it would download Meta's checkpoint.
            raise ModelWeightsNotFoundError(
                f"SAM checkpoint not found: {path} (model type {model_type}). Nothing is "
                "downloaded at run time: copy a segment_anything checkpoint (e.g. "
                "sam_vit_b_01ec64.pth) to that path, or write random weights for a demo with "
                "flywheel_core.masks.backends.samgeo_sam.write_random_sam_checkpoint"
            )
        self.checkpoint = path
        self.model_type = model_type
        self.device = str(device)
        self.model_id = f"samgeo:{model_type}:{path.name}"
        self.trained = not checkpoint_is_random(path)

        # samgeo's package import prints a hint about its optional SamGeo 3 extra: not ours.
        with contextlib.redirect_stdout(io.StringIO()):
            from samgeo.samgeo import SamGeo

        self._sam = SamGeo(
            model_type=model_type, automatic=False, device=self.device, checkpoint=str(path)
        )

    def segment(self, image: np.ndarray, prompts: list[Prompt]) -> list[RawMask]:
        """One `RawMask` per prompt, in order; the chip is encoded once."""
        if not prompts:
            return []
        rgb = rgb_image(image)
        self._sam.set_image(rgb)
        return [self._decode(prompt) for prompt in prompts]

    def _decode(self, prompt: Prompt) -> RawMask:
        arrays = sam_prompt(prompt)
        # samgeo takes a single box as a list of 4 Python floats.
        box = None if arrays.box is None else [float(v) for v in arrays.box]
        # return_logits=True: the "masks" come back as mask logits upscaled to the chip's
        # resolution (segment_anything's postprocess_masks), so the stability score is computed
        # at mask resolution, exactly as SAM's automatic generator does; the third output is the
        # low-res (256x256) logits, not needed here.
        logits, scores, _low_res = self._sam.predict(
            point_coords=arrays.points,
            point_labels=arrays.labels,
            boxes=box,
            multimask_output=True,
            return_logits=True,
            return_results=True,
        )
        logits = np.asarray(logits, dtype=np.float32)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        best = best_candidate(scores)
        best_logits = logits[best]
        return RawMask(
            mask=best_logits > MASK_THRESHOLD,
            predicted_iou=predicted_iou(scores[best]),
            stability_score=stability_score(best_logits),
            extra={"predicted_iou_raw": float(scores[best]), "candidate": float(best)},
        )


def write_random_sam_checkpoint(path: str | Path, model_type: str = "vit_b") -> Path:
    """Write a random-weight segment_anything checkpoint (state dict) plus its sidecar.

    For tests and the offline demo: the architecture is real, the weights are not, and the
    sidecar `<path>.flywheel.json` says `"random_weights": true` so every output is marked
    untrained. Seeded, so the same file comes out every time.
    """
    _check_model_type(model_type)
    import torch
    from segment_anything import sam_model_registry

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = sam_model_registry[model_type]()
    torch.save(model.state_dict(), path)
    sidecar_path(path).write_text(
        json.dumps({"random_weights": True, "model_type": model_type}, indent=2) + "\n"
    )
    return path
