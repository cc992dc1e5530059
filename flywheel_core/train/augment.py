"""Geometric augmentation that keeps image and mask aligned.

Overhead imagery has no "up", so the 8 symmetries of the square (the dihedral group D4: rotations
by 0/90/180/270 degrees, each with or without a horizontal flip) are all valid views of the same
ground. One draw per sample picks the transform and it is applied to image and mask alike. An
optional random square crop (same window for both) trades pixels per step for steps per second.

Randomness comes from the given `torch.Generator`, or from torch's global RNG when none is given;
the DataLoader seeds that per worker from its own generator, so a seeded run is reproducible with
any number of workers.
"""

from __future__ import annotations

from typing import Any

import torch

D4_SIZE = 8


def d4(x: torch.Tensor, index: int) -> torch.Tensor:
    """Transform `index` (0..7) of D4 on the last two dims: rotate by 90° × (index % 4), then
    flip left-right when index >= 4."""
    if not 0 <= index < D4_SIZE:
        raise ValueError(f"D4 index must be in 0..7, got {index}")
    y = torch.rot90(x, k=index % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if index >= 4 else y


def d4_inverse(x: torch.Tensor, index: int) -> torch.Tensor:
    """Undo `d4(x, index)` (for test-time augmentation)."""
    if index >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k=-(index % 4), dims=(-2, -1))


class D4Augment:
    """Random D4 transform (and optional random crop) of a sample dict's `image` and `mask`."""

    def __init__(
        self,
        generator: torch.Generator | None = None,
        crop_size: int | None = None,
        d4: bool = True,
    ) -> None:
        if crop_size is not None and crop_size <= 0:
            raise ValueError(f"crop size must be positive, got {crop_size}")
        self.generator = generator
        self.crop_size = crop_size
        self.use_d4 = d4

    def _randint(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator).item())

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image, mask = sample["image"], sample["mask"]
        if image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} differ")
        if self.crop_size is not None:
            h, w = image.shape[-2:]
            c = self.crop_size
            if c < h or c < w:
                top = self._randint(max(h - c, 0) + 1)
                left = self._randint(max(w - c, 0) + 1)
                image = image[..., top : top + c, left : left + c]
                mask = mask[..., top : top + c, left : left + c]
        index = self._randint(D4_SIZE) if self.use_d4 else 0
        out = dict(sample)
        out["image"] = d4(image, index).contiguous()
        out["mask"] = d4(mask, index).contiguous()
        out["d4"] = index
        return out
