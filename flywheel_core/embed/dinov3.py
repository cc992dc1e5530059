"""Loading a DINOv3 ViT (Hugging Face `DINOv3ViTModel`) with the statistics it was trained with.

A model comes from one of three places: the built-in tiny configuration ("tiny" or None: random
weights, the real architecture, for tests and the offline demo), a local folder written by
`save_pretrained`, or a hub model id. Nothing is downloaded at run time: an id loads only from
the local Hugging Face cache unless `HF_HUB_OFFLINE=0`, and a miss says how to provide weights.

The normalisation statistics are part of the model: the satellite (SAT-493M) checkpoints were
trained on imagery normalised with their own mean and std, the web (LVD-1689M) ones with
ImageNet's. Feeding one the other's statistics shifts every input and silently degrades the
vectors, so the choice is made here, from the model id or config, and can be overridden.

`last_hidden_state` of `DINOv3ViTModel` is [CLS, register tokens, patch tokens] after the final
layer norm (transformers 5.x, `DINOv3ViTEmbeddings.forward` concatenates them in that order);
register tokens carry no location, so the patch mean must skip them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flywheel_core.errors import FlywheelError

log = logging.getLogger(__name__)

TINY_SOURCES = (None, "", "tiny", "dinov3-tiny-random")
TINY_MODEL_ID = "dinov3-tiny-random"
RANDOM_WEIGHTS_KEY = "flywheel_random_weights"  # set in config.json of a saved tiny model

SAT_MEAN = (0.430, 0.411, 0.296)
SAT_STD = (0.213, 0.156, 0.143)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Small enough that a CPU batch of 16 runs in milliseconds; 4 registers like the real
# checkpoints, so the register handling is exercised by every test.
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 48,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "patch_size": 16,
    "image_size": 64,
    "num_register_tokens": 4,
    "layerscale_value": 1.0,
}
TINY_SEED = 0


class DinoModelNotFoundError(FlywheelError, RuntimeError):
    """No weights where the source points, and nothing may be downloaded."""


@dataclass
class DinoModel:
    model: Any  # transformers.DINOv3ViTModel in eval mode
    model_id: str
    trained: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dim: int
    patch_size: int
    image_size: int

    @property
    def num_register_tokens(self) -> int:
        return int(getattr(self.model.config, "num_register_tokens", 0))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def describe(self) -> dict[str, str | int | bool]:
        return {
            "model_id": self.model_id,
            "trained": self.trained,
            "dim": self.dim,
            "patch_size": self.patch_size,
            "image_size": self.image_size,
            "register_tokens": self.num_register_tokens,
            "mean": ",".join(f"{m:.3f}" for m in self.mean),
            "std": ",".join(f"{s:.3f}" for s in self.std),
        }


def normalisation_for(
    name: str, preprocessor: dict[str, Any] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for a model: SAT-493M by name first, else the saved preprocessor, else ImageNet.

    The name wins over a preprocessor file because a SAT checkpoint re-saved with a generic
    processor would otherwise be fed ImageNet statistics.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if "sat493m" in key or "sat493" in key:
        return SAT_MEAN, SAT_STD
    if preprocessor and preprocessor.get("image_mean") and preprocessor.get("image_std"):
        return tuple(map(float, preprocessor["image_mean"])), tuple(
            map(float, preprocessor["image_std"])
        )
    return IMAGENET_MEAN, IMAGENET_STD


def _how_to_provide(where: str) -> str:
    return (
        f"{where}. Nothing is downloaded at run time (no model hub here): save the model with "
        "`save_pretrained` into a local folder (config.json + model.safetensors) and pass that "
        "folder (e.g. under the GPU resource's model_dir, or FLYWHEEL_DINOV3_MODEL=/path), or use "
        "'tiny' for the built-in random-weight configuration"
    )


def _int(value: Any) -> int:
    return int(value[0] if isinstance(value, list | tuple) else value)


def _finish(
    model: Any,
    model_id: str,
    trained: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device | str,
    dtype: torch.dtype,
) -> DinoModel:
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    cfg = model.config
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB); got {mean} and {std}")
    return DinoModel(
        model=model,
        model_id=model_id,
        trained=trained,
        mean=tuple(mean),
        std=tuple(std),
        dim=int(cfg.hidden_size),
        patch_size=_int(cfg.patch_size),
        image_size=_int(cfg.image_size),
    )


def tiny_model() -> Any:
    """The tiny random-weight DINOv3ViTModel, identical on every call (seeded)."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    config = DINOv3ViTConfig(**TINY_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = DINOv3ViTModel(config)
    model.config.__dict__[RANDOM_WEIGHTS_KEY] = True
    return model


def save_tiny(folder: str | Path) -> Path:
    """Write the tiny model as a local folder (config.json marks it random), for folder loading."""
    folder = Path(folder)
    model = tiny_model()
    model.save_pretrained(folder)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config[RANDOM_WEIGHTS_KEY] = True
    config["_name_or_path"] = TINY_MODEL_ID
    config_file.write_text(json.dumps(config, indent=2))
    return folder


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _load_folder(path: Path, dtype: torch.dtype) -> tuple[Any, str, bool, str, dict | None]:
    """(model, model_id, trained, name hint for the statistics, preprocessor config)."""
    from transformers import DINOv3ViTModel

    config = _read_json(path / "config.json")
    if config is None:
        raise DinoModelNotFoundError(_how_to_provide(f"DINOv3 folder {path} has no config.json"))
    if config.get("model_type") != "dinov3_vit":
        raise ValueError(
            f"{path}: config.json has model_type {config.get('model_type')!r}, expected "
            "'dinov3_vit' (a DINOv3ViTModel saved with save_pretrained)"
        )
    try:
        model = DINOv3ViTModel.from_pretrained(str(path), dtype=dtype)
    except OSError as exc:
        raise DinoModelNotFoundError(
            _how_to_provide(f"DINOv3 folder {path} has a config but no loadable weights ({exc})")
        ) from exc
    trained = not bool(config.get(RANDOM_WEIGHTS_KEY, False))
    name = str(config.get("_name_or_path") or "")
    model_id = TINY_MODEL_ID if name == TINY_MODEL_ID and not trained else str(path.resolve())
    # The folder name usually carries the checkpoint's name (dinov3-vitl16-pretrain-sat493m).
    hint = f"{path.name} {name}"
    return model, model_id, trained, hint, _read_json(path / "preprocessor_config.json")


def _load_hub(model_id: str, dtype: torch.dtype) -> Any:
    from transformers import DINOv3ViTModel

    local_only = os.environ.get("HF_HUB_OFFLINE") != "0"
    try:
        return DINOv3ViTModel.from_pretrained(model_id, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        where = (
            f"DINOv3 model {model_id!r} is neither a local folder nor in the local Hugging Face "
            "cache, and this machine is offline (the hub is only asked when HF_HUB_OFFLINE=0)"
            if local_only
            else f"DINOv3 model {model_id!r} could not be fetched from the hub ({exc})"
        )
        raise DinoModelNotFoundError(_how_to_provide(where)) from exc


def _looks_like_hub_id(source: str) -> bool:
    return not source.startswith(("/", ".", "~")) and source.count("/") == 1


def load_dinov3(
    source: str | None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> DinoModel:
    """A DINOv3ViTModel in eval mode on `device`, with its normalisation statistics.

    `source`: None or "tiny" (built-in random weights, `trained=False`), a local folder, or a hub
    id such as "facebook/dinov3-vitl16-pretrain-sat493m". `mean`/`std` override the statistics
    chosen from the model's name.
    """
    if source in TINY_SOURCES:
        model = tiny_model()
        m, s = normalisation_for(TINY_MODEL_ID)
        dino = _finish(model, TINY_MODEL_ID, False, mean or m, std or s, device, dtype)
    else:
        assert source is not None
        path = Path(source).expanduser()
        if path.exists():
            if not path.is_dir():
                raise DinoModelNotFoundError(
                    _how_to_provide(f"DINOv3 model {path} is a file, expected a folder")
                )
            model, model_id, trained, hint, preprocessor = _load_folder(path, dtype)
            m, s = normalisation_for(hint, preprocessor)
        elif _looks_like_hub_id(source):
            model = _load_hub(source, dtype)
            model_id, trained = source, True
            m, s = normalisation_for(source)
        else:
            raise DinoModelNotFoundError(
                _how_to_provide(f"DINOv3 model folder {path} does not exist")
            )
        dino = _finish(model, model_id, trained, mean or m, std or s, device, dtype)
    if not dino.trained:
        log.warning(
            "%s has RANDOM weights: its vectors are for plumbing and tests, not for search "
            "quality (stored with trained=False)",
            dino.model_id,
        )
    log.info(
        "DINOv3 %s: %d-d, patch %d, image %d px, %d register tokens, on %s",
        dino.model_id,
        dino.dim,
        dino.patch_size,
        dino.image_size,
        dino.num_register_tokens,
        device,
    )
    return dino
