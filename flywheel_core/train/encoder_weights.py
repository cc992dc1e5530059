"""Pretrained encoder weights from local files and caches only: nothing is ever downloaded.

`encoder_weights` in a training config is one of

- None: random initialization;
- a path to a local state-dict file (`.pth`/`.pt`/`.bin`: torch, `.safetensors`);
- a known weights name of the encoder ("imagenet", and "ssl"/"swsl" where smp has them), looked
  up in the caches that torchvision, timm and segmentation-models-pytorch fill when they download:
  the torch hub checkpoints folder (`$TORCH_HOME/hub/checkpoints`, `~/.cache/torch/hub/checkpoints`)
  under torchvision's and timm's file names for the encoder (e.g. `resnet18-f37072fd.pth`,
  `resnet18_a1_0-d63eafa0.pth`), and the Hugging Face hub cache (`$HF_HUB_CACHE`,
  `$HF_HOME/hub`, `~/.cache/huggingface/hub`) for the smp-hub and timm repositories
  (`smp-hub/resnet18.imagenet`, `timm/resnet18.a1_in1k`, ...), read as `HF_HUB_OFFLINE=1` would.

A name whose files are in none of those places is not an error: the encoder stays random, a
WARNING lists the files looked for, and the description says
`random (imagenet weights not found in <folders>: offline)`, so a round's record tells which init
it really had.

Loading matches tensors by name (an encoder wrapped as `model.` by smp's timm encoders too) and
shape. A first convolution saved for 3 bands (RGB) and used with more input channels (R, G, B,
NIR, + MSI) is adapted as smp does for pretrained encoders: the RGB filters are kept for the first
three channels, every further channel gets the mean of the RGB filters, and the whole kernel is
scaled by 3 / channels so a grey input gives the activation it had with 3 bands. Anything else
whose shape differs is skipped and reported.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

RANDOM = "random"
# torchvision / older smp file names that the APIs below no longer list
LEGACY_TORCH_HUB = {
    ("resnet18", "imagenet"): ["resnet18-5c106cde.pth"],
    ("resnet34", "imagenet"): ["resnet34-333f7ec4.pth"],
    ("resnet50", "imagenet"): ["resnet50-19c8e357.pth"],
}
TIMM_TAGS = {"ssl": "fb_ssl", "swsl": "fb_swsl"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Candidates:
    """Where a weights name is looked for: file names in torch hub folders, HF repos."""

    torch_hub_files: list[str]
    hf_repos: list[str]


def torch_hub_dirs() -> list[Path]:
    """Torch hub checkpoint folders, `$TORCH_HOME` (or XDG) first, then `~/.cache/torch`."""
    dirs = []
    if os.environ.get("TORCH_HOME"):
        dirs.append(Path(os.environ["TORCH_HOME"]).expanduser() / "hub" / "checkpoints")
    if os.environ.get("XDG_CACHE_HOME"):
        dirs.append(Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "torch/hub/checkpoints")
    dirs.append(Path.home() / ".cache" / "torch" / "hub" / "checkpoints")
    return list(dict.fromkeys(dirs))


def hf_hub_dirs() -> list[Path]:
    """Hugging Face hub cache folders (as huggingface_hub resolves them, read at call time)."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]).expanduser())
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    if os.environ.get("XDG_CACHE_HOME"):
        dirs.append(Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return list(dict.fromkeys(dirs))


def known_names(encoder_name: str) -> list[str]:
    """Weights names looked up in the caches for this encoder (smp's, or "imagenet")."""
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders.get(encoder_name, {}).get("pretrained_settings", {})
    return sorted({"imagenet", *settings})


def _timm_tags(model: str, name: str) -> list[str]:
    import timm

    try:
        default = timm.models.get_pretrained_cfg(model)
    except Exception:  # not a timm architecture
        return []
    tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{model}.*") if "." in t]
    if name in TIMM_TAGS:
        return [t for t in tags if t.startswith(TIMM_TAGS[name])]
    if name != "imagenet":
        return []
    in1k = [t for t in tags if "in1k" in t and not t.startswith(("fb_ssl", "fb_swsl"))]
    first = [default.tag] if default is not None and default.tag in in1k else []
    return list(dict.fromkeys([*first, *(["tv_in1k"] if "tv_in1k" in in1k else []), *in1k]))


def candidates(encoder_name: str, name: str) -> Candidates:
    """File names and HF repos that would hold `name` weights for `encoder_name`."""
    from segmentation_models_pytorch.encoders import encoders

    model = encoder_name.removeprefix("tu-")
    files: list[str] = []
    repos: list[str] = []
    smp_settings = encoders.get(encoder_name, {}).get("pretrained_settings", {}).get(name)
    if smp_settings and smp_settings.get("repo_id"):
        repos.append(smp_settings["repo_id"])
    if name == "imagenet":
        try:
            import torchvision

            for w in torchvision.models.get_model_weights(model):
                if "IMAGENET" in w.name:
                    files.append(w.url.rsplit("/", 1)[-1])
        except Exception:  # not a torchvision architecture
            pass
    files += LEGACY_TORCH_HUB.get((model, name), [])
    import timm

    for tag in _timm_tags(model, name):
        cfg = timm.models.get_pretrained_cfg(f"{model}.{tag}")
        if cfg is None:
            continue
        urls = [cfg.url] if isinstance(cfg.url, str) else list(cfg.url or ())
        files += [url.rsplit("/", 1)[-1] for url in urls if url]
        if cfg.hf_hub_id:
            repos.append(cfg.hf_hub_id)
    return Candidates(list(dict.fromkeys(files)), list(dict.fromkeys(repos)))


def _hf_snapshot_files(cache: Path, repo: str) -> list[Path]:
    snapshots = cache / f"models--{repo.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return []
    found = []
    for snap in sorted(snapshots.iterdir()):
        found += [snap / f for f in WEIGHT_FILES if (snap / f).is_file()]
    return found


def find_weights(encoder_name: str, name: str) -> tuple[Path | None, list[Path]]:
    """(the first cached file for `name`, every path looked at), searching locally only."""
    cand = candidates(encoder_name, name)
    looked: list[Path] = []
    for folder in torch_hub_dirs():
        for f in cand.torch_hub_files:
            path = folder / f
            looked.append(path)
            if path.is_file():
                return path, looked
    for cache in hf_hub_dirs():
        for repo in cand.hf_repos:
            looked.append(cache / f"models--{repo.replace('/', '--')}")
            hits = _hf_snapshot_files(cache, repo)
            if hits:
                return hits[0], looked
    return None, looked


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A (O, 3, k, k) RGB kernel for `in_channels` inputs: RGB kept, extra channels get the RGB
    mean, all scaled by 3 / in_channels (smp's rule for pretrained encoders with more bands)."""
    extra = weight.mean(dim=1, keepdim=True).expand(-1, in_channels - 3, -1, -1)
    return torch.cat([weight, extra], dim=1) * (3.0 / in_channels)


def load_into(encoder: nn.Module, state: dict[str, torch.Tensor], source: str) -> int:
    """Copy matching tensors of `state` into `encoder`; the number of tensors loaded."""
    own = encoder.state_dict()
    prefix = ""
    if not any(k in own for k in state) and any(f"model.{k}" in own for k in state):
        prefix = "model."  # smp's timm-universal encoders wrap the timm model as `.model`
    usable: dict[str, torch.Tensor] = {}
    adapted: list[str] = []
    for key, value in state.items():
        target = own.get(prefix + key)
        if target is None:
            continue
        if target.shape == value.shape:
            usable[prefix + key] = value
        elif (
            value.ndim == 4
            and target.ndim == 4
            and value.shape[1] == 3
            and target.shape[1] > 3
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
        ):
            usable[prefix + key] = adapt_first_conv(value, target.shape[1]).to(target.dtype)
            adapted.append(key)
    skipped = sorted(set(state) - {k.removeprefix(prefix) for k in usable})
    encoder.load_state_dict(usable, strict=False)
    log.info(
        "encoder weights from %s: %d tensors loaded (%s adapted from RGB), %d skipped%s",
        source,
        len(usable),
        ", ".join(adapted) or "none",
        len(skipped),
        f" ({', '.join(skipped[:5])}{'...' if len(skipped) > 5 else ''})" if skipped else "",
    )
    return len(usable)


def _short(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in dict.fromkeys(paths))


def init_encoder(encoder: nn.Module, encoder_name: str, weights: str | None) -> str:
    """Initialize `encoder` from `weights` (see the module doc); how it was initialized.

    Raises FileNotFoundError for a value that is neither an existing file nor a known name.
    """
    if not weights:
        return RANDOM
    path = Path(weights).expanduser()
    if path.is_file():
        return _load(encoder, path, f"{weights} (local file)")
    names = known_names(encoder_name)
    if weights not in names:
        raise FileNotFoundError(
            f"encoder_weights must be a local state-dict file or one of {names} (looked up in "
            f"local caches only; nothing is downloaded): {weights}"
        )
    found, looked = find_weights(encoder_name, weights)
    if found is None:
        folders = [*torch_hub_dirs(), *hf_hub_dirs()]
        log.warning(
            "%s weights for %s not found locally (offline: nothing is downloaded); the encoder "
            "starts from random weights. Looked for: %s",
            weights,
            encoder_name,
            _short(looked) or "(no known file names for this encoder)",
        )
        return f"{RANDOM} ({weights} weights not found in {_short(folders)}: offline)"
    return _load(encoder, found, f"{weights} ({found})")


def _load(encoder: nn.Module, path: Path, description: str) -> str:
    if load_into(encoder, read_state_dict(path), str(path)) == 0:
        log.warning("%s has no tensor that fits the encoder; it stays random", path)
        return f"{RANDOM} (no tensor of {path} fits the encoder)"
    return description
