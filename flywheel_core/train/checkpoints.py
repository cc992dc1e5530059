"""Where a registered model's weights live, and which earlier model a round fine-tunes.

A round's checkpoint is stored under `models/<model_id>/model.ckpt` in the object store (local
folder or S3) and fetched once into a local cache by whoever runs it (predictions, or the next
round's warm start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel_core.store.objects import ObjectStore

# The TrainConfig fields that shape the network: a checkpoint fits a round only when all agree.
NETWORK_FIELDS = ("arch", "encoder_name", "encoder_depth", "decoder_channels", "bands")


def checkpoint_key(model_id: str) -> str:
    return f"models/{model_id}/model.ckpt"


def cached_checkpoint(store: ObjectStore, model_id: str, cache_root: Path) -> Path:
    """The model's checkpoint in `cache_root/<model_id>/`, fetched from `store` the first time."""
    cache = cache_root / model_id / "model.ckpt"
    if not cache.exists():
        store.get(checkpoint_key(model_id), cache)
    return cache


def _comparable(value: Any) -> Any:
    """A config value as stored (JSON turns tuples into lists)."""
    return list(value) if isinstance(value, tuple) else value


def warm_start_parent(
    previous: dict[str, Any] | None, config: dict[str, Any]
) -> tuple[str | None, str]:
    """(model id to start from or None, why): the previous round's model when its network has
    the shape this round's config asks for. A changed architecture or band set trains afresh."""
    if previous is None:
        return None, "no earlier round's model: training a fresh network"
    theirs = previous.get("params", {}).get("config", {})
    for name in NETWORK_FIELDS:
        a, b = _comparable(theirs.get(name)), _comparable(config.get(name))
        if a != b:
            return None, (
                f"previous model {previous['model_id']} has {name}={a!r}, this round {b!r}: "
                "training a fresh network"
            )
    return previous["model_id"], f"fine-tuning {previous['model_id']} (the previous round's model)"
