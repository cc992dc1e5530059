"""Train / val / test loaders over one pinned version of the Lance `training_data` table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader

from flywheel_core.train.augment import D4Augment
from flywheel_core.train.dataset import LanceChipDataset, open_lance, row_filter
from flywheel_core.train.splits import SPLITS


class EmptySplitError(ValueError):
    """The train split selects no rows, so there is nothing to train on."""


class PVDataModule(LightningDataModule):
    """Datasets for the three splits of `uri` at one version (pinned at construction).

    The train set is augmented (random D4, optional random crop); val and test are not. Sizes are
    known right after construction (`sizes`, `steps_per_epoch`); an empty train split raises
    `EmptySplitError` from `setup()` (or `check()`), an empty val or test split just has no loader.
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
        # Lance is not fork-safe (a forked worker can hang in Lance's runtime), so workers start
        # from a fresh forkserver by default; each costs an import of torch + lance once per
        # loader (workers persist across epochs). None: the platform default (fork on Linux).
        self.multiprocessing_context = multiprocessing_context
        self.datasets: dict[str, LanceChipDataset] = {
            split: LanceChipDataset(
                self.uri,
                self.version,
                split=split,
                as_of=as_of,
                cells=self.cells,
                bands=bands,
                transform=self._train_transform() if split == "train" else None,
            )
            for split in SPLITS
        }

    def _train_transform(self) -> D4Augment | None:
        if not self.augment and self.crop_size is None:
            return None
        return D4Augment(crop_size=self.crop_size, d4=self.augment)

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
        return math.ceil(self.sizes["train"] / self.batch_size)

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

    def _loader(self, split: str, shuffle: bool, eval_transform: bool = False) -> DataLoader:
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
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            ds,
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=generator,
            multiprocessing_context=self.multiprocessing_context if self.num_workers else None,
        )

    def train_dataloader(self) -> DataLoader:
        self.check()
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split without augmentation, in table order (e.g. to score the train split)."""
        return self._loader(split, shuffle=False, eval_transform=True)
