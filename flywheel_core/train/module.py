"""The PV segmentation model: a segmentation-models-pytorch network in a LightningModule.

The encoder starts from random weights, a local state-dict file or cached pretrained weights
("imagenet", looked up in local caches only: see `encoder_weights`); nothing is ever downloaded,
and `encoder_init` says what was used. A model restored from a checkpoint does not look its
encoder weights up again (the checkpoint has them). Loss is Dice + BCE on logits; pixel IoU and
F1 at threshold 0.5 are logged per split as `train/iou`, `val/iou`, `test/iou`, `*/f1` and
`*/loss`, accumulated over the whole epoch (micro-averaged over pixels, not averaged over
batches).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

from flywheel_core.train.dataset import model_batch
from flywheel_core.train.encoder_weights import init_encoder

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
THRESHOLD = 0.5
RESTORED = "restored from checkpoint"
# set while a checkpoint is loaded: its weights replace the encoder's, so none are looked up
_RESTORING: contextvars.ContextVar[bool] = contextvars.ContextVar("restoring", default=False)


def build_network(
    arch: str,
    encoder_name: str,
    encoder_depth: int,
    decoder_channels: Sequence[int] | int | None,
    in_channels: int,
    encoder_weights: str | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """The network alone (see `create_network` for how its encoder was initialized)."""
    return create_network(
        arch,
        encoder_name,
        encoder_depth,
        decoder_channels,
        in_channels,
        encoder_weights,
        **model_kwargs,
    )[0]


def create_network(
    arch: str,
    encoder_name: str,
    encoder_depth: int,
    decoder_channels: Sequence[int] | int | None,
    in_channels: int,
    encoder_weights: str | None = None,
    **model_kwargs: Any,
) -> tuple[nn.Module, str]:
    """(network, encoder init): smp's network, its encoder initialized by `init_encoder` (before
    unused deep stages are pruned, so a full pretrained state dict fits)."""
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
    init = init_encoder(net.encoder, encoder_name, encoder_weights)
    prune_unused(net, in_channels)
    return net, init


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
        restoring = _RESTORING.get()
        self.model, init = create_network(
            arch,
            encoder_name,
            encoder_depth,
            decoder_channels,
            in_channels,
            None if restoring else encoder_weights,
            **(model_kwargs or {}),
        )
        # NHWC: oneDNN's CPU convolutions are faster forward and backward in this layout; the
        # weights are the same numbers, only their memory order differs
        self.model = self.model.to(memory_format=torch.channels_last)
        # how the encoder was initialized: "random", "<file> (local file)", "imagenet (<file>)",
        # "random (imagenet weights not found in ...: offline)" or "restored from checkpoint"
        self.encoder_init: str = RESTORED if restoring else init
        self.dice = smp.losses.DiceLoss(mode="binary", from_logits=True)
        self.metrics = nn.ModuleDict({f"{stage}_metrics": _metrics() for stage in STAGES})
        # The prefix test_step logs under: the trainer also scores the train split through
        # `Trainer.test` (without augmentation) by setting this to "train".
        self.test_prefix = "test"

    @classmethod
    def load_from_checkpoint(cls, *args: Any, **kwargs: Any) -> PVSegmentationModule:
        """Lightning's loader, without looking the encoder's initial weights up again."""
        token = _RESTORING.set(True)
        try:
            return super().load_from_checkpoint(*args, **kwargs)
        finally:
            _RESTORING.reset(token)

    @property
    def channels(self) -> list[str] | None:
        ch = self.hparams.get("channels")
        return list(ch) if ch is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x.contiguous(memory_format=torch.channels_last)).contiguous()
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return (
            self.hparams["dice_weight"] * self.dice(logits, target)
            + self.hparams["bce_weight"] * bce
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Loader batches arrive with uint8 pixels (a quarter of the bytes to move); here, on the
        device, they become the float input the network takes: VHR ÷ 255, the photometric change
        of train batches, MSI channels appended, the mask as float 0/1 (`dataset.model_batch`)."""
        return model_batch(batch)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """PV probability per pixel, (B, 1, H, W) in [0, 1], computed in eval mode. `x` is the
        float input (VHR in 0..1): a uint8 chip would be read as 0..255, so it is refused."""
        if not x.is_floating_point():
            raise TypeError(f"predict_proba takes float input in 0..1, got {x.dtype}")
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
        assert isinstance(m, MetricCollection)
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
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        if self.hparams["scheduler"] == "none":
            return opt
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams["lr"], total_steps=max(total, 1), pct_start=0.15
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
