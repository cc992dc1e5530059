"""Train / val / test loaders over one pinned version of the Lance `training_data` table."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Sampler

from flywheel_core.errors import FlywheelError
from flywheel_core.train.augment import Compose, D4Augment, Transform
from flywheel_core.train.dataset import LanceChipDataset, open_lance, row_filter
from flywheel_core.train.photometric import PhotometricAugment
from flywheel_core.train.sampler import PositiveAwareSampler
from flywheel_core.train.splits import SPLITS


class EmptySplitError(FlywheelError, ValueError):
    """The train split selects no rows, so there is nothing to train on."""


class LookaheadBatches(Sampler[list[Any]]):
    """The batches of `sampler` (`batch_size` items each, the last one shorter), each announced
    to `dataset.prefetch` one batch before it is yielded, so a loader without workers reads the
    next batch from Lance while this one is transformed and trained on. Same batches, same
    order as `DataLoader(sampler=sampler, batch_size=batch_size)`."""

    def __init__(self, sampler: Sampler, batch_size: int, dataset: LanceChipDataset) -> None:
        self.sampler, self.batch_size, self.dataset = sampler, batch_size, dataset

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[Any]]:
        items = iter(self.sampler)
        batch = list(islice(items, self.batch_size))
        while batch:
            ahead = list(islice(items, self.batch_size))
            if ahead:
                self.dataset.prefetch(ahead)
            yield batch
            batch = ahead


class PVDataModule(LightningDataModule):
    """Datasets for the three splits of `uri` at one version (pinned at construction).

    The train loader draws with replacement from a seeded `PositiveAwareSampler` (chips with
    mask pixels at `positive_fraction` of the draws; None: uniform), in "epochs" of
    `steps_per_epoch` batches: an epoch is just a block of steps, the trainer's `max_steps` ends
    the run. Train samples are augmented (optional random crop, around a mask pixel with
    probability `positive_crop_prob`; random D4; photometric changes of the VHR channels), each
    from its own seed drawn by the sampler, so batches are the same with any number of workers.
    Val and test are not augmented. Batches hold uint8 pixels (and, for train, each sample's
    photometric parameters): the model's `on_after_batch_transfer` makes them float on the
    device and applies the photometric change there (`dataset.model_batch`). Without workers the
    train loader reads each batch one ahead in a thread (`LookaheadBatches`). Sizes are known
    right after construction (`sizes`); an empty train split raises `EmptySplitError` from
    `setup()` (or `check()`), an empty val or test split just has no loader.
    """

    def __init__(
        self,
        uri: str,
        version: int | None = None,
        *,
        bands: str = "vhr",
        as_of: str | None = None,
        cells: Sequence[str] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        crop_size: int | None = None,
        positive_fraction: float | None = 0.7,
        positive_crop_prob: float = 0.7,
        photometric: bool = True,
        steps_per_epoch: int | None = None,
        multiprocessing_context: str | None = "forkserver",
    ) -> None:
        super().__init__()
        self.uri = str(uri)
        self.version: int = open_lance(self.uri, version).version
        self.bands = bands
        self.as_of = as_of
        self.cells = list(cells) if cells is not None else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.augment = augment
        self.crop_size = crop_size
        self.positive_fraction = positive_fraction
        self.positive_crop_prob = positive_crop_prob
        self.photometric = photometric
        self._steps_per_epoch = steps_per_epoch
        # Lance is not fork-safe (a forked worker can hang in Lance's runtime), so workers start
        # from a fresh forkserver by default; each costs an import of torch + lance once per
        # loader (workers persist across epochs). None: the platform default (fork on Linux).
        self.multiprocessing_context = multiprocessing_context
        self.datasets: dict[str, LanceChipDataset] = {
            split: LanceChipDataset(
                self.uri, self.version, split=split, as_of=as_of, cells=self.cells, bands=bands
            )
            for split in SPLITS
        }
        train = self.datasets["train"]
        train.transform = self._train_transform(train.vhr_channels)

    def _train_transform(self, vhr_channels: int) -> Transform | None:
        """Crop (around a mask pixel with probability positive_crop_prob), D4 (both on the uint8
        chip), photometric (drawn here, applied to the float batch on the device)."""
        steps: list[Transform] = []
        if self.augment or self.crop_size is not None:
            steps.append(
                D4Augment(
                    crop_size=self.crop_size,
                    d4=self.augment,
                    positive_crop_prob=self.positive_crop_prob if self.crop_size else 0.0,
                )
            )
        if self.augment and self.photometric:
            steps.append(PhotometricAugment(vhr_channels=vhr_channels))
        return Compose(steps) if steps else None

    # -- facts about the data ----------------------------------------------------------------

    @property
    def sizes(self) -> dict[str, int]:
        return {split: len(ds) for split, ds in self.datasets.items()}

    @property
    def channels(self) -> list[str]:
        return self.datasets["train"].channels

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per training "epoch" (a block of steps; default: one pass's worth)."""
        return self._steps_per_epoch or max(math.ceil(self.sizes["train"] / self.batch_size), 1)

    def train_sampler(self) -> PositiveAwareSampler:
        """A fresh seeded sampler over the train split (positives read from the masks)."""
        return PositiveAwareSampler(
            self.datasets["train"].positive(),
            num_samples=self.steps_per_epoch * self.batch_size,
            positive_fraction=self.positive_fraction,
            seed=self.seed,
        )

    def check(self) -> None:
        if self.sizes["train"] == 0:
            raise EmptySplitError(
                f"no training samples in {self.uri} at version {self.version} for "
                f"[{row_filter('train', self.as_of, self.cells)}] (sizes: {self.sizes}); "
                "materialize training_data for some partitions up to that date first"
            )

    def setup(self, stage: str | None = None) -> None:
        self.check()

    # -- loaders -----------------------------------------------------------------------------

    def _loader(self, split: str, train: bool, eval_transform: bool = False) -> DataLoader:
        ds = self.datasets[split]
        if eval_transform and ds.transform is not None:
            ds = LanceChipDataset(
                self.uri,
                self.version,
                split=split,
                as_of=self.as_of,
                cells=self.cells,
                bands=self.bands,
            )
        if train and not self.num_workers:  # read one batch ahead in a thread (see prefetch)
            return DataLoader(
                ds,
                batch_sampler=LookaheadBatches(self.train_sampler(), self.batch_size, ds),
                generator=torch.Generator().manual_seed(self.seed),
            )
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=self.train_sampler() if train else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # worker seeds (the augmentation itself is seeded per sample by the sampler)
            generator=torch.Generator().manual_seed(self.seed) if train else None,
            multiprocessing_context=self.multiprocessing_context if self.num_workers else None,
        )

    def train_dataloader(self) -> DataLoader:
        self.check()
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split without augmentation, in table order (e.g. to score the train split)."""
        return self._loader(split, train=False, eval_transform=True)
