"""Choosing a mask back end by name, including the built-in offline configurations.

`model` names weights: a checkpoint file (samgeo), a folder or model id (transformers). The
special names below build a random-weight model of the real architecture on first use, for tests
and the offline demo; such a back end reports `trained = False`, and every mask it makes says so.
"""

from __future__ import annotations

from pathlib import Path

from flywheel_core.errors import FlywheelError
from flywheel_core.masks.backends.classical import ClassicalBackend
from flywheel_core.masks.types import MaskBackend

BACKENDS = ("classical", "samgeo", "transformers")
TINY_TRANSFORMERS = "tiny-random-sam"
RANDOM_SAMGEO = "random-vit_b"


class BackendError(FlywheelError, ValueError):
    """An unknown back end, or weights that are not where the configuration says."""


def build_backend(
    name: str,
    model: str = "",
    *,
    gsd_m: float,
    device: str = "cpu",
    dtype: str = "fp32",
    model_dir: str | Path = "data/models",
    samgeo_model_type: str = "vit_b",
) -> MaskBackend:
    if name == "classical":
        return ClassicalBackend(gsd_m=gsd_m)
    if name == "transformers":
        from flywheel_core.masks.backends.hf_sam import TransformersSamBackend, write_tiny_sam

        if model in ("", TINY_TRANSFORMERS):
            folder = Path(model_dir) / TINY_TRANSFORMERS
            if not (folder / "config.json").exists():
                write_tiny_sam(folder)
            model = str(folder)
        return TransformersSamBackend(model, device=device, dtype=dtype)
    if name == "samgeo":
        from flywheel_core.masks.backends.samgeo_sam import (
            SamGeoBackend,
            write_random_sam_checkpoint,
        )

        if model in ("", RANDOM_SAMGEO):
            path = Path(model_dir) / f"sam_{samgeo_model_type}_random.pth"
            if not path.exists():
                write_random_sam_checkpoint(path, model_type=samgeo_model_type)
            model = str(path)
        return SamGeoBackend(model, model_type=samgeo_model_type, device=device)
    raise BackendError(f"unknown mask back end {name!r}; choose one of {', '.join(BACKENDS)}")
