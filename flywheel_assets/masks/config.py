"""Run configuration of the mask factory, editable in the launchpad or with `--config`."""

import os

from dagster import Config
from pydantic import Field

from flywheel_core.masks.types import MaskBackend
from flywheel_resources.gpu import GPUResource

PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
# flywheel_core.masks.backends.registry.BACKENDS, repeated here because the registry imports the
# classical back end (scipy) and this description is read when the code location loads
# (test_import_cost checks that they agree).
BACKENDS = ("classical", "samgeo", "transformers")


class MaskFactoryConfig(Config):
    backend: str = Field(
        default=os.environ.get("FLYWHEEL_MASK_BACKEND", "classical"),
        description=f"One of {', '.join(BACKENDS)}.",
    )
    model: str = Field(
        default=os.environ.get("FLYWHEEL_MASK_MODEL", ""),
        description=(
            "samgeo: checkpoint file; transformers: model folder or id. Empty or "
            "'random-vit_b' / 'tiny-random-sam': a random-weight model of the real architecture "
            "(offline demo and tests; marked untrained)."
        ),
    )
    samgeo_model_type: str = Field(default="vit_b", description="vit_b, vit_l or vit_h.")
    polygon_prompt: str = Field(default="polygon", description="box, point or polygon.")
    positive_points: int = 1
    negative_points: int = 0
    min_acceptance_rate: float = Field(
        default=0.5, description="The acceptance_rate check fails the partition below this."
    )


class TrainingDataConfig(Config):
    negative_ratio: float = Field(
        default=1.0, description="Clean negative chips kept per positive (at least 2)."
    )
    hard_negative_ratio: float = Field(
        default=1.0,
        description="Hard negatives (chips where earlier rounds recorded hard-negative "
        "candidates, with no label on them) kept per positive (at least 1 when there are any).",
    )
    negative_max_pv_fraction: float = Field(
        default=0.001, description="A label-free chip with more PV-like pixels is not a negative."
    )


def load_mask_backend(gpu: GPUResource, config: MaskFactoryConfig, gsd_m: float) -> MaskBackend:
    """The configured back end for chips of `gsd_m`, loaded once per process by the GPU
    resource (sam_masks and validated_backfill's confirmation share the cached one)."""
    from flywheel_core.masks.backends.registry import build_backend  # scipy: step only

    return gpu.load(
        config.backend,
        f"{config.model}|{config.samgeo_model_type}|{gsd_m}",
        lambda dev, dtype: build_backend(
            config.backend,
            config.model,
            gsd_m=gsd_m,
            device=str(dev),
            dtype=PRECISION[str(dtype).removeprefix("torch.")],
            model_dir=gpu.model_dir,
            samgeo_model_type=config.samgeo_model_type,
        ),
    )
