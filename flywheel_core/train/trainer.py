"""One training round: Lance `training_data` at a pinned version → Lightning → checkpoint + W&B run.

`train_model` seeds everything, pins the table version before reading anything, trains for
`steps` optimiser steps on the train split (positive-aware sampling with replacement; crops, D4
and photometric augmentation), scores val every `val_every` steps, keeps the best weights by val
IoU and stops after `patience` evaluations without improvement (with no val split, or one with
fewer than `min_val_positives` chips with panels: all steps, final weights), then, with the
kept weights, scores val and test (skipped, with None metrics, when a split is empty) and the
train split itself without augmentation, logs config, metrics, the val curve and a few image /
mask / prediction panels to Weights & Biases (offline unless WANDB_API_KEY is set), and returns
what a registry needs to reproduce the round: checkpoint path, metrics, W&B run id, Lance
version, the config and how the encoder was initialized.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from flywheel_core.train.datamodule import PVDataModule
from flywheel_core.train.dataset import LanceChipDataset, collate_samples, table_uri
from flywheel_core.train.module import PVSegmentationModule

log = logging.getLogger(__name__)

WANDB_PROJECT = "lightning-lance"
METRIC_NAMES = ("iou", "f1", "loss")
DEFAULT_STEPS = 200


@dataclass
class TrainConfig:
    """Everything that decides a training round's result (with the Lance version).

    Training length is `steps` optimiser steps, whatever the number of chips (the OneCycle
    schedule spans them); val is scored every `val_every` steps and the best weights by val IoU
    are kept (see `BestWeights`). See the field comments for the defaults' reasons.
    """

    arch: str = "Unet"
    encoder_name: str = "resnet18"
    encoder_depth: int = 3
    decoder_channels: tuple[int, ...] | None = (64, 32, 16)
    # None (random), a local state-dict file, or "imagenet" (looked up in local caches only;
    # random with a warning when absent: the result's `encoder_init` says which it was)
    encoder_weights: str | None = "imagenet"
    bands: str = "vhr"
    # enough for a seed-only round to fit its few positive chips under photometric
    # augmentation: round 1 of munich-s0, phoenix-s6 and nairobi-s4 reached train IoU 0.72-0.96
    # at 200 steps, 0.26-0.27 (phoenix, nairobi) at 100
    steps: int = DEFAULT_STEPS
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # random training crops (no-op on smaller chips); 96² rather than 128² keeps the demo's
    # three rounds of 200 steps within its 5-minute budget; val/test run on whole chips
    crop_size: int | None = 96
    positive_fraction: float | None = 0.7  # share of draws from chips with panels; None: uniform
    positive_crop_prob: float = 0.7  # chance a crop of a chip with panels is centred on one
    photometric: bool = True  # gain/contrast/gamma/colour/haze/noise on the VHR channels
    val_every: int = 25  # steps between val evaluations (each scores every val chip)
    patience: int = 4  # evaluations without a better val IoU before stopping early
    # Val chips with panels needed to select weights and stop on val (a default, not fitted).
    # A seed-only round's val split may hold one small labelled object (phoenix-s6: one 15 m²
    # system, val IoU 0.00-0.10 while test scored 0.70-0.95): selecting on it picked
    # mid-schedule weights, where the end of the OneCycle schedule is the steadier choice.
    min_val_positives: int = 3
    # The previous round's model whose weights start this round (fine-tuning, so what a round
    # learnt carries over and a round's few new labels refine it instead of retraining from
    # scratch); None: a fresh network. Its checkpoint is passed to `train_model`; the id here
    # makes it part of the round's record (and of its model id).
    init_model_id: str | None = None
    num_workers: int = 0
    seed: int = 0
    as_of_date: str | None = None
    cells: list[str] | None = None
    num_threads: int | None = None  # torch intra-op threads for the round; None: torch's default
    precision: str = "32-true"
    accelerator: str = "cpu"
    deterministic: bool = True
    log_images: int = 4

    @classmethod
    def tiny(cls, **overrides: Any) -> TrainConfig:
        """A few-second configuration for tests and smoke runs (same code path)."""
        base: dict[str, Any] = dict(
            encoder_depth=2,
            decoder_channels=(16, 8),
            encoder_weights=None,
            steps=40,
            val_every=10,
            batch_size=4,
            lr=2e-2,
            crop_size=None,
            log_images=2,
        )
        base.update(overrides)
        return cls(**base)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.min_val_positives < 0:
            raise ValueError(f"min_val_positives must be >= 0, got {self.min_val_positives}")
        if self.val_every < 1 or self.patience < 1:
            raise ValueError(
                f"val_every and patience must be >= 1: {self.val_every}/{self.patience}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["decoder_channels"] is not None:
            d["decoder_channels"] = list(d["decoder_channels"])
        return d


@dataclass
class TrainResult:
    checkpoint_path: Path
    metrics: dict[str, float | int | None]
    wandb_run_id: str | None
    wandb_dir: Path | None
    lance_uri: str
    lance_version: int
    config: dict[str, Any]
    seconds: float
    channels: list[str] = field(default_factory=list)
    # how the encoder started: "random", "imagenet (<file>)", "<file> (local file)" or
    # "random (imagenet weights not found in ...: offline)"
    encoder_init: str = "random"
    # which weights were kept: the best val IoU's, or the final ones (no val split)
    weights: str = ""
    # the val curve: one {"step", "loss", "iou", "f1"} per evaluation (empty without val)
    history: list[dict[str, float | int]] = field(default_factory=list)


class BestWeights(Callback):
    """Keeps the best weights by val IoU, stops after `patience` evaluations without a better one.

    Better means a higher val IoU, or the same IoU (within `tol`, e.g. all zero early on) with a
    lower val loss. Lightning validates every `val_every` steps; this callback also asks for a
    last validation at the final step (by setting `should_stop` there, which makes Lightning
    validate before it stops), so the last weights compete too. `restore(module)` loads the best.
    With `select=False` (too few val chips with panels to trust) the curve is still recorded
    and logged, but nothing stops early and `restore` keeps the final weights.
    Logs one line per evaluation.
    """

    def __init__(self, steps: int, patience: int, tol: float = 1e-4, select: bool = True) -> None:
        self.steps = steps
        self.patience = patience
        self.tol = tol
        self.select = select
        self.history: list[dict[str, float | int]] = []
        self.best: dict[str, float | int] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0
        self.stopped_step: int | None = None
        self._train_loss: float | None = None
        self._start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            v = float(loss)
            self._train_loss = v if self._train_loss is None else 0.9 * self._train_loss + 0.1 * v
        last = self.history[-1]["step"] if self.history else 0
        if trainer.global_step >= self.steps and last < trainer.global_step:
            trainer.should_stop = True  # Lightning then validates this last step, then stops

    def better(self, iou: float, loss: float) -> bool:
        if self.best is None:
            return True
        if iou > self.best["iou"] + self.tol:
            return True
        return abs(iou - self.best["iou"]) <= self.tol and loss < self.best["loss"]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        step = int(trainer.global_step)
        point = {"step": step, **{k: float(m[f"val/{k}"]) for k in ("loss", "iou", "f1")}}
        self.history.append(point)
        if self.better(point["iou"], point["loss"]):
            self.best, self.bad = point, 0
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()
            }
        else:
            self.bad += 1
            if self.select and self.bad >= self.patience and step < self.steps:
                trainer.should_stop = True
                self.stopped_step = step
        assert self.best is not None
        log.info(
            "step %d/%d (%.1fs): train loss %s, val loss %.3f iou %.3f f1 %.3f; best iou %.3f "
            "at step %d%s",
            step,
            self.steps,
            time.perf_counter() - self._start,
            f"{self._train_loss:.3f}" if self._train_loss is not None else "n/a",
            point["loss"],
            point["iou"],
            point["f1"],
            self.best["iou"],
            self.best["step"],
            f"; no better val IoU in {self.bad} evaluations: stopping" if self.stopped_step else "",
        )

    @property
    def best_step(self) -> int | None:
        return int(self.best["step"]) if self.best is not None else None

    def restore(self, module: L.LightningModule) -> bool:
        """Load the best weights into `module`; False when there were no evaluations, or
        when not selecting (the final weights stay)."""
        if self.best_state is None or not self.select:
            return False
        module.load_state_dict(self.best_state)
        return True


class StepLog(Callback):
    """Without a val split: one log line per block of steps (train loss)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        parts = [f"{k} {float(m[k]):.3f}" for k in ("train/loss", "train/iou") if k in m]
        log.info(
            "step %d/%d (%.1fs, no val split): %s",
            trainer.global_step,
            self.steps,
            time.perf_counter() - self._start,
            ", ".join(parts),
        )


WandbMode = Literal["online", "offline", "disabled", "shared"]


def _wandb_mode() -> WandbMode:
    if os.environ.get("WANDB_MODE"):
        return cast(WandbMode, os.environ["WANDB_MODE"])  # wandb.init rejects other values
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _panel(image: torch.Tensor, mask: torch.Tensor, prob: torch.Tensor) -> np.ndarray:
    """RGB | mask | prediction side by side, uint8 (H, 3W, 3)."""
    rgb = image[:3].clamp(0, 1).permute(1, 2, 0).numpy()
    m = np.repeat(mask[0].numpy()[..., None], 3, axis=2)
    p = np.repeat(prob[0].numpy()[..., None], 3, axis=2)
    sep = np.ones((rgb.shape[0], 2, 3), dtype=np.float32)
    return (np.concatenate([rgb, sep, m, sep, p], axis=1) * 255).round().astype(np.uint8)


def sample_panels(
    model: PVSegmentationModule, dm: PVDataModule, n: int
) -> tuple[list[np.ndarray], list[str]]:
    """Up to n panels from the first non-empty of val, test, train (none for n <= 0)."""
    for split in ("val", "test", "train") if n > 0 else ():
        if dm.sizes[split]:
            ds = dm.eval_dataloader(split).dataset
            assert isinstance(ds, LanceChipDataset)
            picks = np.linspace(0, len(ds) - 1, num=min(n, len(ds))).round().astype(int)
            batch = collate_samples(ds.__getitems__(sorted(set(picks.tolist()))))
            prob = model.predict_proba(batch["image"]).cpu()
            panels = [
                _panel(x, m, p) for x, m, p in zip(batch["image"], batch["mask"], prob, strict=True)
            ]
            return panels, [f"{split} {uid}" for uid in batch["uid"]]
    return [], []


def _make_logger(out_dir: Path, run_name: str, config: dict[str, Any]) -> Any:
    """A W&B run under `out_dir/wandb`, offline unless WANDB_API_KEY is set, for Lightning."""
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    out_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
        name=run_name,
        dir=str(out_dir),
        mode=_wandb_mode(),
        config=config,
        reinit="create_new",
        settings=wandb.Settings(
            silent=True, console="off", x_disable_stats=True, disable_git=True, save_code=False
        ),
    )
    return WandbLogger(experiment=run)


def train_model(
    lance_uri: str,
    table: str,
    out_dir: Path,
    config: TrainConfig,
    run_name: str,
    version: int | None = None,
    init_checkpoint: Path | None = None,
) -> TrainResult:
    """Train one model on `<lance_uri>/<table>` at `version` (latest when None, then recorded).

    With `init_checkpoint` (the checkpoint of `config.init_model_id`) the network starts from its
    weights (`warm_start`). Raises `EmptySplitError` when the train split selects nothing; empty
    val/test splits are skipped and their metrics reported as None.
    """
    if (init_checkpoint is None) != (config.init_model_id is None):
        raise ValueError("init_checkpoint and config.init_model_id go together")
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    # Lightning's start-up notes (accelerators, tips) are noise in an asset's log; warnings stay
    chatty = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = chatty.level
    try:
        chatty.setLevel(logging.WARNING)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        return _train(lance_uri, table, Path(out_dir), config, run_name, version, init_checkpoint)
    finally:
        # leave the process as we found it (Lightning's deterministic=True is process-wide)
        chatty.setLevel(level)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def build_datamodule(uri: str, version: int | None, config: TrainConfig) -> PVDataModule:
    """The round's data at `version` (pinned here), train loader in blocks of `val_every`."""
    dm = PVDataModule(
        uri,
        version,
        bands=config.bands,
        as_of=config.as_of_date,
        cells=config.cells,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        seed=config.seed,
        crop_size=config.crop_size,
        positive_fraction=config.positive_fraction,
        positive_crop_prob=config.positive_crop_prob,
        photometric=config.photometric,
        steps_per_epoch=min(config.val_every, config.steps),
    )
    dm.check()
    return dm


def build_module(dm: PVDataModule, config: TrainConfig, data_info: dict) -> PVSegmentationModule:
    return PVSegmentationModule(
        in_channels=dm.in_channels,
        arch=config.arch,
        encoder_name=config.encoder_name,
        encoder_depth=config.encoder_depth,
        decoder_channels=config.decoder_channels,
        encoder_weights=config.encoder_weights,
        lr=config.lr,
        weight_decay=config.weight_decay,
        channels=dm.channels,
        data_info=data_info,
    )


def warm_start(model: PVSegmentationModule, checkpoint: Path, model_id: str) -> str:
    """Load a previous model's network weights into `model`; how the network started.

    The networks must match (architecture, encoder, depth, channels): a checkpoint of another
    shape is refused with the first mismatch named, rather than silently training from scratch
    under a record that says it fine-tuned."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = model.model.state_dict()
    missing = sorted(set(own) - set(weights))
    wrong = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or wrong:
        first = missing[0] if missing else f"{wrong[0]} {tuple(weights[wrong[0]].shape)}"
        raise ValueError(
            f"{checkpoint} ({model_id}) does not fit this network: {len(missing)} missing and "
            f"{len(wrong)} differently shaped tensors, first {first}"
        )
    model.model.load_state_dict({k: weights[k] for k in own})
    return f"warm start from {model_id}"


def build_trainer(
    config: TrainConfig, logger: Any, callbacks: list[Callback], has_val: bool, out_dir: Path
) -> L.Trainer:
    """`steps` optimiser steps; val every `val_every` steps (and at the last, see BestWeights)."""
    val = (
        {"val_check_interval": config.val_every, "check_val_every_n_epoch": None}
        if has_val
        else {"limit_val_batches": 0}
    )
    return L.Trainer(
        max_steps=config.steps,
        max_epochs=-1,
        accelerator=config.accelerator,
        devices=1,
        precision=cast(Any, config.precision),  # a string Lightning checks, e.g. "32-true"
        deterministic=config.deterministic,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(out_dir),
        **val,
    )


def score_splits(
    trainer: L.Trainer, model: PVSegmentationModule, dm: PVDataModule
) -> dict[str, float | int | None]:
    """Every split scored the same way: whole chips, no augmentation, the kept weights."""
    metrics: dict[str, float | int | None] = {}
    for split in ("train", "val", "test"):
        metrics[f"{split}/samples"] = dm.sizes[split]
        if not dm.sizes[split]:
            log.info("%s split is empty: no %s metrics", split, split)
            metrics.update({f"{split}/{k}": None for k in METRIC_NAMES})
            continue
        positives = int(sum(dm.datasets[split].positive()))
        metrics[f"{split}/positive_samples"] = positives
        model.test_prefix = split
        scores = trainer.test(model, dataloaders=dm.eval_dataloader(split), verbose=False)[0]
        metrics.update({f"{split}/{k}": float(scores[f"{split}/{k}"]) for k in METRIC_NAMES})
        if not positives:
            # IoU and F1 of the PV class over chips without a single labelled panel pixel are 0
            # for any stray pixel: a count of false alarms, not a score of what the model learnt
            log.info("%s split has no labelled panels: no %s IoU or F1", split, split)
            metrics.update({f"{split}/{k}": None for k in METRIC_NAMES if k != "loss"})
    model.test_prefix = "test"
    return metrics


def _selection(
    best: BestWeights, steps_run: int, val_positives: int, needed: int
) -> tuple[str, dict[str, Any]]:
    """(what the kept weights are, the selection's scalar metrics)."""
    scalars = {
        "best_step": best.best_step if best.select else None,
        "stopped_step": best.stopped_step,
        "steps_run": steps_run,
        "best_val_iou": float(best.best["iou"]) if best.best else None,
    }
    if best.best is None:
        return (
            f"final weights after {steps_run} steps (no val split: nothing to select on)",
            scalars,
        )
    if not best.select:
        return (
            f"final weights after {steps_run} steps (val has {val_positives} chips with panels, "
            f"fewer than min_val_positives={needed}: too few to select on)",
            scalars,
        )
    stop = f"stopped early at step {best.stopped_step}" if best.stopped_step else "ran all steps"
    return f"best val IoU {best.best['iou']:.3f} at step {best.best_step} ({stop})", scalars


def _log_plan(
    config: TrainConfig,
    dm: PVDataModule,
    model: PVSegmentationModule,
    val_positives: int,
    select: bool,
) -> None:
    log.info(
        "%d steps of %d, val every %d (%s), positives %.0f%% of draws; encoder: %s",
        config.steps,
        config.batch_size,
        config.val_every,
        f"patience {config.patience}"
        if select
        else f"{val_positives} val chips with panels: final weights kept",
        100 * dm.train_sampler().share,
        model.encoder_init,
    )


def _fit(trainer: L.Trainer, model: PVSegmentationModule, dm: PVDataModule) -> None:
    with warnings.catch_warnings():
        # the module's on_after_batch_transfer (uint8 -> float on the device) is meant to serve
        # the data module's loaders, and the bare loaders `Trainer.test` gets later
        warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`")
        trainer.fit(model, datamodule=dm)


def _train(
    lance_uri: str,
    table: str,
    out_dir: Path,
    config: TrainConfig,
    run_name: str,
    version: int | None,
    init_checkpoint: Path | None = None,
) -> TrainResult:
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.seed, workers=True, verbose=False)
    uri = table_uri(lance_uri, table)
    dm = build_datamodule(uri, version, config)
    sizes, has_val = dm.sizes, dm.sizes["val"] > 0
    log.info("training %s on %s@v%d: %s samples", run_name, uri, dm.version, sizes)
    data_info = {
        "lance_uri": uri,
        "table": table,
        "lance_version": dm.version,
        "as_of_date": config.as_of_date,
        "cells": config.cells,
        "bands": config.bands,
        "sizes": sizes,
    }
    if init_checkpoint is None:
        model = build_module(dm, config, data_info)
    else:  # the encoder's weights come from the checkpoint: no pretrained lookup first
        model = build_module(dm, replace(config, encoder_weights=None), data_info)
        model.encoder_init = warm_start(model, init_checkpoint, str(config.init_model_id))
    val_positives = int(sum(dm.datasets["val"].positive())) if has_val else 0
    select = val_positives >= config.min_val_positives
    _log_plan(config, dm, model, val_positives, select)
    wandb_config = {**config.to_dict(), **{f"data/{k}": v for k, v in data_info.items()}}
    logger = _make_logger(out_dir, run_name, wandb_config)
    try:
        best = BestWeights(config.steps, config.patience, select=select)
        callbacks: list[Callback] = [best] if has_val else [best, StepLog(config.steps)]
        trainer = build_trainer(config, logger, callbacks, has_val, out_dir)
        _fit(trainer, model, dm)
        steps_run = int(trainer.global_step)
        best.restore(model)
        weights, selection = _selection(best, steps_run, val_positives, config.min_val_positives)
        log.info("keeping the %s", weights)
        metrics = {**score_splits(trainer, model, dm), **selection}
        ckpt = out_dir / "model.ckpt"
        trainer.save_checkpoint(ckpt, weights_only=True)
        panels, captions = sample_panels(model, dm, config.log_images)
        if panels:
            logger.log_image(key="samples", images=panels, caption=captions)
        seconds = time.perf_counter() - start
        logger.experiment.summary.update(
            {
                **{f"final/{k}": v for k, v in metrics.items() if v is not None},
                "final/seconds": seconds,
                "final/encoder_init": model.encoder_init,
                "final/weights": weights,
            }
        )
        run_id = logger.experiment.id
        run_dir = Path(logger.experiment.dir).parent
    finally:
        logger.experiment.finish()
    log.info(
        "trained %s in %.1fs: %s",
        run_name,
        seconds,
        ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)),
    )
    return TrainResult(
        checkpoint_path=ckpt,
        metrics=metrics,
        wandb_run_id=run_id,
        wandb_dir=run_dir,
        lance_uri=uri,
        lance_version=dm.version,
        config=config.to_dict(),
        seconds=seconds,
        channels=dm.channels,
        encoder_init=model.encoder_init,
        weights=weights,
        history=list(best.history),
    )


def load_model(checkpoint_path: str | Path, device: str = "cpu") -> PVSegmentationModule:
    """A trained model in eval mode on `device` (CPU by default)."""
    model = PVSegmentationModule.load_from_checkpoint(
        str(checkpoint_path), map_location=torch.device(device)
    )
    return model.eval()
