"""Photometric augmentation of the VHR channels: illumination, colour balance, haze, sensor noise.

Real scenes and the synthetic world differ in exposure, sun angle, atmosphere and sensor; a
model trained on a few chips would otherwise key on their absolute brightness. Each sample gets
one random draw of every effect below, applied to the first `vhr_channels` channels (R, G, B,
NIR, scaled 0..1) in this order; MSI channels after them (reflectances, resampled from 10 m) and
the mask are never touched. Every range includes the identity, and the result is clipped to
0..1 (the range of the uint8 chips the model sees at inference).

| effect           | formula                              | default range                     |
|------------------|--------------------------------------|-----------------------------------|
| gamma            | x ** γ                               | log γ ~ U(log 0.7, log 1.4)       |
| contrast         | m + c (x − m), m = per-channel mean  | c ~ U(0.7, 1.3)                   |
| brightness gain  | x · g (all channels)                 | log g ~ U(log 0.7, log 1.4)       |
| per-channel gain | x_k · (1 + j_k) (colour balance)     | j_k ~ U(−0.1, 0.1)                |
| haze             | x (1 − a) + a · airlight_k           | a ~ U(0, 0.25), airlight U(0.6, 1) |
| Gaussian noise   | x + σ · N(0, 1) per pixel            | σ ~ U(0, 0.03)                    |

The airlight is bluish: green, blue and NIR get 1.05, 1.12 and 0.9 times red's level.

Each effect is applied with probability `p` (default 0.8) independently, so clean samples stay
in the mix. Randomness comes from the generator passed with the sample (the training sampler's
per-sample seed), else the constructor's, else torch's global RNG: reproducible with any number
of DataLoader workers.

Where the work happens: the change is float arithmetic over every pixel (and a Gaussian draw per
pixel), far more than reading the chip, so the training loader does not do it. A uint8 sample
(what `LanceChipDataset` yields) only gets its parameters drawn, from its own generator, packed
into `sample["photometric"]` (`PARAMS` + 2 per channel, float32) and `sample["photometric_seed"]`
(the seed of its noise); `apply_photometric` then applies them to the collated float batch on the
model's device (`dataset.model_batch`, from the LightningModule's `on_after_batch_transfer`). A
float sample is changed at once, by the same function on a batch of one, so both paths give the
same numbers on the same device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

#: The scalar parameters at the head of a packed parameter vector; per-channel gains and airlight
#: levels (k each) follow.
PARAMS = ("gamma", "contrast", "brightness", "haze", "noise_std")
SEED_HIGH = 2**62


@dataclass(frozen=True)
class PhotometricAugment:
    """Random photometric change of a sample dict's first `vhr_channels` image channels (now for a
    float image; recorded for after the transfer to the device for a uint8 one)."""

    vhr_channels: int = 4
    p: float = 0.8
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.7, 1.3)
    brightness: tuple[float, float] = (0.7, 1.4)
    channel_jitter: float = 0.1
    haze: tuple[float, float] = (0.0, 0.25)
    airlight: tuple[float, float] = (0.6, 1.0)
    noise_std: tuple[float, float] = (0.0, 0.03)
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.vhr_channels < 1:
            raise ValueError(f"vhr_channels must be >= 1, got {self.vhr_channels}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        for name in ("gamma", "brightness"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} range must be positive and ordered, got {(lo, hi)}")

    def draw(self, g: torch.Generator | None) -> dict[str, Any]:
        """One sample's parameters (identity where an effect is not applied)."""
        k = self.vhr_channels

        def u(lo: float, hi: float, n: int = 1) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=g)

        def log_u(lo: float, hi: float) -> float:
            return math.exp(float(u(math.log(lo), math.log(hi))))

        on = (torch.rand(6, generator=g) < self.p).tolist()
        # bluer airlight: red gets the drawn level, then green/blue/NIR a little more/less
        air = float(u(*self.airlight))
        air_k = torch.tensor([air, air * 1.05, air * 1.12, air * 0.9][:k] + [air] * max(k - 4, 0))
        return {
            "gamma": log_u(*self.gamma) if on[0] else 1.0,
            "contrast": float(u(*self.contrast)) if on[1] else 1.0,
            "brightness": log_u(*self.brightness) if on[2] else 1.0,
            "channel_gain": 1 + u(-self.channel_jitter, self.channel_jitter, k)
            if on[3]
            else torch.ones(k),
            "haze": float(u(*self.haze)) if on[4] else 0.0,
            "airlight": air_k.clamp(0, 1),
            "noise_std": float(u(*self.noise_std)) if on[5] else 0.0,
        }

    def draw_packed(self, g: torch.Generator | None, k: int) -> tuple[torch.Tensor, int]:
        """(parameter vector for k channels, noise seed): one sample's draw as `apply_photometric`
        takes it. The noise seed comes from the same generator, after the parameters."""
        params = self.draw(g)
        head = torch.tensor([float(params[name]) for name in PARAMS], dtype=torch.float32)
        packed = torch.cat(
            [head, params["channel_gain"][:k].float(), params["airlight"][:k].float()]
        )
        seed = int(torch.randint(0, SEED_HIGH, (1,), generator=g).item())
        return packed, seed

    def __call__(
        self, sample: dict[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        g = generator if generator is not None else self.generator
        image = sample["image"]
        k = min(self.vhr_channels, image.shape[0])
        packed, seed = self.draw_packed(g, k)
        out = dict(sample)
        if not image.is_floating_point():  # uint8 chip: applied after the transfer
            out["photometric"], out["photometric_seed"] = packed, seed
            return out
        x = apply_photometric(image[None], packed[None], torch.tensor([seed]))[0]
        out["image"] = x.contiguous()
        return out


def apply_photometric(
    images: torch.Tensor, params: torch.Tensor, seeds: torch.Tensor
) -> torch.Tensor:
    """The changes packed in `params` (B, len(PARAMS) + 2k) applied to the first k channels of a
    float batch (B, C, H, W) in 0..1, on the batch's device; channels after k are kept.

    The noise of sample b is drawn from a generator on that device seeded with `seeds[b]`, so a
    batch gets the same noise whichever worker built it (CPU and GPU generators differ, so the
    noise depends on the device, as any on-device draw does). Returns a new tensor."""
    b, c = images.shape[:2]
    k = (params.shape[1] - len(PARAMS)) // 2
    if params.shape != (b, len(PARAMS) + 2 * k) or not 0 < k <= c:
        raise ValueError(f"photometric parameters {tuple(params.shape)} for images {images.shape}")
    p = params.to(images.device, images.dtype)
    gamma, contrast, brightness, haze, noise = (p[:, i].view(b, 1, 1, 1) for i in range(5))
    gain = p[:, 5 : 5 + k].view(b, k, 1, 1)
    air = p[:, 5 + k :].view(b, k, 1, 1)
    x = images[:, :k].clamp(0, 1)
    # where an effect is off its formula is skipped, as in the per-sample definition (x ** 1 and
    # m + 1 (x - m) are x only up to rounding)
    x = torch.where(gamma != 1.0, x.pow(gamma), x)
    m = x.mean(dim=(-2, -1), keepdim=True)
    x = torch.where(contrast != 1.0, m + contrast * (x - m), x)
    x = x * (brightness * gain)
    x = torch.where(haze > 0, x * (1 - haze) + haze * air, x)
    stds = params[:, 4].tolist()
    if any(s > 0 for s in stds):
        draws = [
            torch.randn(
                x.shape[1:],
                generator=torch.Generator(x.device).manual_seed(int(seed)),
                device=x.device,
                dtype=x.dtype,
            )
            if s > 0
            else torch.zeros(x.shape[1:], device=x.device, dtype=x.dtype)
            for s, seed in zip(stds, seeds.tolist(), strict=True)
        ]
        x = x + noise * torch.stack(draws)
    x = x.clamp_(0, 1)
    return torch.cat([x, images[:, k:]], dim=1) if k < c else x
