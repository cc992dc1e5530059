"""Geometric augmentation that keeps image and mask aligned.

Overhead imagery has no "up", so the 8 symmetries of the square (the dihedral group D4: rotations
by 0/90/180/270 degrees, each with or without a horizontal flip) are all valid views of the same
ground. One draw per sample picks the transform and it is applied to image and mask alike. An
optional random square crop (same window for both) trades pixels per step for steps per second;
with `positive_crop_prob` > 0 a chip with any mask pixel is cropped, with that probability,
around one of its mask pixels (picked uniformly; the window is uniform among those holding it),
so few or small panels still reach most crops. Otherwise the window is uniform, and may of
course hold panels too: the share of crops with panels is at least `positive_crop_prob`.

Randomness comes from the generator passed with the sample (`__call__(sample, generator)`: the
training sampler draws one seed per sample, so batches do not depend on the number of workers),
else the one given at construction, else torch's global RNG (which the DataLoader seeds per
worker from its own generator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

D4_SIZE = 8
#: The per-pixel entries of a sample, cropped and transformed together: the (uint8 or float) VHR
#: image, the mask and, with `bands="vhr+msi"`, the float MSI channels on the same grid.
PIXEL_KEYS = ("image", "mask", "msi")


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


Transform = Callable[..., dict[str, Any]]


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, high, (1,), generator=generator).item())


def _window(lo: int, hi: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [lo, hi]."""
    return lo + _randint(hi - lo + 1, generator)


class D4Augment:
    """Random D4 transform (and optional random crop) of a sample dict's `image`, `mask` and
    `msi` (when present), any dtype: the training loader applies it to uint8 chips.

    crop_size: side of the random square crop (None: whole chips; no-op when the chip is smaller).
    positive_crop_prob: probability that a chip with mask pixels is cropped around one of them.
    """

    def __init__(
        self,
        generator: torch.Generator | None = None,
        crop_size: int | None = None,
        d4: bool = True,
        positive_crop_prob: float = 0.0,
    ) -> None:
        if crop_size is not None and crop_size <= 0:
            raise ValueError(f"crop size must be positive, got {crop_size}")
        if not 0.0 <= positive_crop_prob <= 1.0:
            raise ValueError(f"positive_crop_prob must be in [0, 1], got {positive_crop_prob}")
        self.generator = generator
        self.crop_size = crop_size
        self.use_d4 = d4
        self.positive_crop_prob = positive_crop_prob

    def _corner(
        self, mask: torch.Tensor, c: int, g: torch.Generator | None
    ) -> tuple[int, int, bool]:
        """(top, left, around a positive) of a c × c window in an (…, H, W) mask."""
        h, w = mask.shape[-2:]
        if self.positive_crop_prob > 0 and float(torch.rand(1, generator=g)) < (
            self.positive_crop_prob
        ):
            ys, xs = torch.nonzero(mask.reshape(-1, h, w).amax(dim=0) > 0, as_tuple=True)
            if len(ys):
                k = _randint(len(ys), g)
                y, x = int(ys[k]), int(xs[k])
                top = _window(max(0, y - c + 1), min(y, max(h - c, 0)), g)
                left = _window(max(0, x - c + 1), min(x, max(w - c, 0)), g)
                return top, left, True
        return _randint(max(h - c, 0) + 1, g), _randint(max(w - c, 0) + 1, g), False

    def __call__(
        self, sample: dict[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        g = generator if generator is not None else self.generator
        image, mask = sample["image"], sample["mask"]
        grids = {key: sample[key] for key in PIXEL_KEYS if sample.get(key) is not None}
        for key, x in grids.items():
            if x.shape[-2:] != image.shape[-2:]:
                raise ValueError(f"image {tuple(image.shape)} and {key} {tuple(x.shape)} differ")
        if self.crop_size is not None:
            h, w = image.shape[-2:]
            c = self.crop_size
            if c < h or c < w:
                top, left, _ = self._corner(mask, c, g)
                grids = {k: x[..., top : top + c, left : left + c] for k, x in grids.items()}
        index = _randint(D4_SIZE, g) if self.use_d4 else 0
        out = dict(sample)
        for key, x in grids.items():
            out[key] = d4(x, index).contiguous()
        out["d4"] = index
        return out


class Compose:
    """Transforms applied in order, all drawing from the same per-sample generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(
        self, sample: dict[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        for t in self.transforms:
            sample = t(sample, generator)
        return sample
