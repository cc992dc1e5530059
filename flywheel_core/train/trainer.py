"""One training round: Lance `training_data` at a pinned version → Lightning → checkpoint + W&B run.

`train_model` seeds everything, pins the table version before reading anything, trains on the
train split (with D4 augmentation), scores val and test (skipped, with None metrics, when a split
is empty) and the train split itself without augmentation, logs config, metrics and a few
image / mask / prediction panels to Weights & Biases (offline unless WANDB_API_KEY is set), and
returns what a registry needs to reproduce the round: checkpoint path, metrics, W&B run id,
Lance version and the config.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from flywheel_core.train.datamodule import PVDataModule
from flywheel_core.train.dataset import table_uri
from flywheel_core.train.module import PVSegmentationModule

log = logging.getLogger(__name__)

WANDB_PROJECT = "lightning-lance"
METRIC_NAMES = ("iou", "f1", "loss")


@dataclass
class TrainConfig:
    """Everything that decides a training round's result (with the Lance version)."""

    arch: str = "Unet"
    encoder_name: str = "resnet18"
    encoder_depth: int = 3
    decoder_channels: tuple[int, ...] | None = (64, 32, 16)
    encoder_weights: str | None = None  # a local state-dict file; never a download
    bands: str = "vhr"
    epochs: int = 12
    max_steps: int | None = None  # caps optimizer steps (a round's time then stays flat)
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    crop_size: int | None = 128  # random training crops; val/test run on whole chips
    num_workers: int = 0
    seed: int = 0
    as_of_date: str | None = None
    cells: list[str] | None = None
    max_train_batches: int | None = None
    num_threads: int | None = None  # torch intra-op threads for the round; None: torch's default
    precision: str = "32-true"
    accelerator: str = "cpu"
    deterministic: bool = True
    log_images: int = 4

    @classmethod
    def tiny(cls, **overrides: Any) -> TrainConfig:
        """A few-second configuration for tests and smoke runs (same code path)."""
        base = dict(
            encoder_depth=2,
            decoder_channels=(16, 8),
            epochs=6,
            max_steps=None,
            batch_size=4,
            lr=2e-2,
            crop_size=None,
            log_images=2,
        )
        base.update(overrides)
        return cls(**base)

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


class EpochLog(Callback):
    """One log line per epoch (train and, when there is a val split, val metrics)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        parts = [
            f"{k} {float(m[k]):.3f}"
            for stage in ("train", "val")
            for k in (f"{stage}/loss", f"{stage}/iou", f"{stage}/f1")
            if k in m
        ]
        log.info(
            "epoch %d/%d (%.1fs): %s",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            time.perf_counter() - self._start,
            ", ".join(parts),
        )


def _wandb_mode() -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
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
    """Up to n panels from the first non-empty of val, test, train."""
    for split in ("val", "test", "train"):
        if dm.sizes[split]:
            ds = dm.eval_dataloader(split).dataset
            picks = np.linspace(0, len(ds) - 1, num=min(n, len(ds))).round().astype(int)
            samples = ds.__getitems__(sorted(set(picks.tolist())))
            x = torch.stack([s["image"] for s in samples])
            prob = model.predict_proba(x).cpu()
            panels = [_panel(s["image"], s["mask"], p) for s, p in zip(samples, prob, strict=True)]
            return panels, [f"{split} {s['uid']}" for s in samples]
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
) -> TrainResult:
    """Train one model on `<lance_uri>/<table>` at `version` (latest when None, then recorded).

    Raises `EmptySplitError` when the train split selects nothing; empty val/test splits are
    skipped and their metrics reported as None.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    # Lightning's start-up notes (accelerators, tips) are noise in an asset's log; warnings stay
    chatty = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = chatty.level
    try:
        chatty.setLevel(logging.WARNING)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        return _train(lance_uri, table, Path(out_dir), config, run_name, version)
    finally:
        # leave the process as we found it (Lightning's deterministic=True is process-wide)
        chatty.setLevel(level)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(
    lance_uri: str,
    table: str,
    out_dir: Path,
    config: TrainConfig,
    run_name: str,
    version: int | None,
) -> TrainResult:
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.seed, workers=True, verbose=False)
    uri = table_uri(lance_uri, table)
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
    )
    dm.check()
    sizes = dm.sizes
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
    model = PVSegmentationModule(
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
    wandb_config = {**config.to_dict(), **{f"data/{k}": v for k, v in data_info.items()}}
    logger = _make_logger(out_dir, run_name, wandb_config)
    try:
        trainer = L.Trainer(
            max_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            accelerator=config.accelerator,
            devices=1,
            precision=config.precision,
            deterministic=config.deterministic,
            logger=logger,
            callbacks=[EpochLog()],
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            limit_train_batches=config.max_train_batches or 1.0,
            **({} if sizes["val"] else {"limit_val_batches": 0}),
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            default_root_dir=str(out_dir),
        )
        trainer.fit(model, datamodule=dm)
        metrics: dict[str, float | int | None] = {}
        for split in ("train", "val", "test"):
            metrics[f"{split}/samples"] = sizes[split]
            if not sizes[split]:
                log.info("%s split is empty: no %s metrics", split, split)
                metrics.update({f"{split}/{k}": None for k in METRIC_NAMES})
                continue
            # every split scored the same way: whole chips, no augmentation, final weights
            model.test_prefix = split
            scores = trainer.test(model, dataloaders=dm.eval_dataloader(split), verbose=False)[0]
            metrics.update({f"{split}/{k}": float(scores[f"{split}/{k}"]) for k in METRIC_NAMES})
        model.test_prefix = "test"
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
    )


def load_model(checkpoint_path: str | Path, device: str = "cpu") -> PVSegmentationModule:
    """A trained model in eval mode on `device` (CPU by default)."""
    model = PVSegmentationModule.load_from_checkpoint(
        str(checkpoint_path), map_location=torch.device(device)
    )
    return model.eval()
