"""Positive-aware sampling with replacement, with one augmentation seed per draw.

A round with few labels has few chips with panels among many without (and the reverse happens
too), so uniform sampling spends most steps on one class. `PositiveAwareSampler` draws each
sample from the chips with any mask pixel with probability `positive_fraction`, else from the
others, whatever their counts; with no positives (or no negatives) it draws uniformly from the
chips there are, and `positive_fraction=None` draws uniformly from all chips.

Each draw is a pair (row index, seed): the dataset seeds the sample's augmentation with it, so a
batch's crops, D4 transforms and photometric changes depend on the sampler's seed only, not on the
number of DataLoader workers or on what else consumed torch's global RNG. The generator is seeded
once at construction and runs on across iterations (an iteration is one block of `num_samples`
draws, a Lightning "epoch"), so a run's whole sequence is fixed by its seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

SEED_HIGH = 2**62


class PositiveAwareSampler(Sampler[tuple[int, int]]):
    """`num_samples` draws per iteration of (index, augmentation seed), positives at a share."""

    def __init__(
        self,
        positive: Sequence[bool] | np.ndarray,
        num_samples: int,
        positive_fraction: float | None = 0.7,
        seed: int = 0,
    ) -> None:
        flags = np.asarray(positive, dtype=bool)
        if flags.size == 0:
            raise ValueError("cannot sample from an empty dataset")
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if positive_fraction is not None and not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.num_samples = int(num_samples)
        self.positive_fraction = positive_fraction
        self.positives = torch.from_numpy(np.flatnonzero(flags))
        self.negatives = torch.from_numpy(np.flatnonzero(~flags))
        self.all = torch.arange(flags.size)
        self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def share(self) -> float:
        """The expected share of draws from chips with mask pixels."""
        n_pos, n_neg = len(self.positives), len(self.negatives)
        if self.positive_fraction is None or not n_pos or not n_neg:
            return n_pos / (n_pos + n_neg)
        return float(self.positive_fraction)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n, g = self.num_samples, self.generator
        if self.positive_fraction is None or not len(self.positives) or not len(self.negatives):
            index = self.all[torch.randint(len(self.all), (n,), generator=g)]
        else:
            from_pos = torch.rand(n, generator=g) < self.positive_fraction
            pos = self.positives[torch.randint(len(self.positives), (n,), generator=g)]
            neg = self.negatives[torch.randint(len(self.negatives), (n,), generator=g)]
            index = torch.where(from_pos, pos, neg)
        seeds = torch.randint(SEED_HIGH, (n,), generator=g)
        yield from zip(index.tolist(), seeds.tolist(), strict=True)
