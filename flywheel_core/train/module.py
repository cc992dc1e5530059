"""The PV segmentation model: a segmentation-models-pytorch network in a LightningModule.

Weights are random unless `encoder_weights` names a local state-dict file: nothing is ever
downloaded. Loss is Dice + BCE on logits; pixel IoU and F1 at threshold 0.5 are logged per split
as `train/iou`, `val/iou`, `test/iou`, `*/f1` and `*/loss`, accumulated over the whole epoch
(micro-averaged over pixels, not averaged over batches).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
THRESHOLD = 0.5


def _load_encoder_weights(encoder: nn.Module, path: str) -> None:
    """Load a local state dict into the encoder; tensors whose shape differs (e.g. a 3-band first
    conv for a 4-band input) are skipped and reported. Never fetches anything."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"encoder_weights must be a local state-dict file (no downloads here): {path}"
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = encoder.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    encoder.load_state_dict(usable, strict=False)
    log.info(
        "encoder weights from %s: %d tensors loaded, %d skipped%s",
        path,
        len(usable),
        len(skipped),
        f" ({', '.join(skipped[:5])}...)" if skipped else "",
    )


def build_network(
    arch: str,
    encoder_name: str,
    encoder_depth: int,
    decoder_channels: Sequence[int] | int | None,
    in_channels: int,
    encoder_weights: str | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    kwargs: dict[str, Any] = dict(model_kwargs)
    cls = getattr(smp, arch, None)
    if cls is None:
        raise ValueError(f"unknown segmentation-models-pytorch architecture {arch!r}")
    accepted = inspect.signature(cls).parameters
    if decoder_channels is not None:
        if "decoder_channels" in accepted:
            kwargs["decoder_channels"] = (
                list(decoder_channels)
                if not isinstance(decoder_channels, int)
                else decoder_channels
            )
        else:
            log.warning("%s takes no decoder_channels; ignoring %s", arch, decoder_channels)
    net = smp.create_model(
        arch,
        encoder_name=encoder_name,
        encoder_weights=None,
        encoder_depth=encoder_depth,
        in_channels=in_channels,
        classes=1,
        **kwargs,
    )
    if encoder_weights:
        _load_encoder_weights(net.encoder, encoder_weights)
    prune_unused(net, in_channels)
    return net


def prune_unused(net: nn.Module, in_channels: int, size: int = 64) -> list[str]:
    """Replace submodules that take no part in the forward pass with `nn.Identity`.

    A shallow encoder (`encoder_depth` < 5) still carries the deeper stages' weights (for
    resnet18 at depth 3: 10.6 M of 11.4 M parameters), which would only bloat checkpoints. One
    forward/backward on zeros in eval mode (no RNG, no batch-norm statistics touched) finds the
    parameters that get no gradient; the largest modules made only of those are dropped.
    """
    was_training = net.training
    net.eval()
    try:
        net.zero_grad(set_to_none=True)
        net(torch.zeros(1, in_channels, size, size)).sum().backward()
        unused = {n for n, p in net.named_parameters() if p.grad is None}
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was_training)
    dropped: list[str] = []
    for name, module in list(net.named_modules()):
        if not name or any(name.startswith(d + ".") for d in dropped):
            continue
        params = [f"{name}.{n}" for n, _ in module.named_parameters()]
        if params and all(p in unused for p in params):
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, child, nn.Identity())
            dropped.append(name)
    if dropped:
        log.debug("dropped unused modules: %s", ", ".join(dropped))
    return dropped


def _metrics() -> MetricCollection:
    return MetricCollection(
        {"iou": BinaryJaccardIndex(threshold=THRESHOLD), "f1": BinaryF1Score(threshold=THRESHOLD)}
    )


class PVSegmentationModule(LightningModule):
    """Binary PV segmentation. Input (B, C, H, W) float, output logits (B, 1, H, W)."""

    def __init__(
        self,
        in_channels: int = 4,
        arch: str = "Unet",
        encoder_name: str = "resnet18",
        encoder_depth: int = 3,
        decoder_channels: Sequence[int] | int | None = (64, 32, 16),
        encoder_weights: str | None = None,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        scheduler: str = "onecycle",
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        channels: Sequence[str] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        data_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if scheduler not in ("onecycle", "none"):
            raise ValueError(f"scheduler must be 'onecycle' or 'none', got {scheduler!r}")
        if channels is not None and len(channels) != in_channels:
            raise ValueError(f"{len(channels)} channel names for in_channels={in_channels}")
        self.save_hyperparameters()
        self.model = build_network(
            arch,
            encoder_name,
            encoder_depth,
            decoder_channels,
            in_channels,
            encoder_weights,
            **(model_kwargs or {}),
        )
        self.dice = smp.losses.DiceLoss(mode="binary", from_logits=True)
        self.metrics = nn.ModuleDict({f"{stage}_metrics": _metrics() for stage in STAGES})
        # The prefix test_step logs under: the trainer also scores the train split through
        # `Trainer.test` (without augmentation) by setting this to "train".
        self.test_prefix = "test"

    @property
    def channels(self) -> list[str] | None:
        ch = self.hparams.get("channels")
        return list(ch) if ch is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return self.hparams.dice_weight * self.dice(logits, target) + self.hparams.bce_weight * bce

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """PV probability per pixel, (B, 1, H, W) in [0, 1], computed in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(x.to(self.device, dtype=torch.float32)))
        finally:
            self.train(was_training)

    def _step(self, batch: dict[str, Any], stage: str, metrics: str | None = None) -> torch.Tensor:
        image, mask = batch["image"], batch["mask"]
        logits = self(image)
        loss = self.loss(logits, mask)
        m = self.metrics[f"{metrics or stage}_metrics"]
        m.update(logits.detach().sigmoid(), mask.int())
        n = image.shape[0]
        on_step = stage == "train" and self.training
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        if on_step:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=n)
        self.log_dict(
            {f"{stage}/{k}": v for k, v in m.items()}, on_step=False, on_epoch=True, batch_size=n
        )
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, self.test_prefix, metrics=self.test_prefix)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.scheduler == "none":
            return opt
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams.lr, total_steps=max(total, 1), pct_start=0.15
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
