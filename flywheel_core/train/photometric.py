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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class PhotometricAugment:
    """Random photometric change of a sample dict's first `vhr_channels` image channels."""

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

    def apply(
        self, vhr: torch.Tensor, params: dict[str, Any], g: torch.Generator | None
    ) -> torch.Tensor:
        """The change `params` describes, on a (K, H, W) tensor of VHR channels in 0..1."""
        x = vhr.clamp(0, 1)
        if params["gamma"] != 1.0:
            x = x.pow(params["gamma"])
        if params["contrast"] != 1.0:
            m = x.mean(dim=(-2, -1), keepdim=True)
            x = m + params["contrast"] * (x - m)
        x = x * (params["brightness"] * params["channel_gain"]).view(-1, 1, 1)
        if params["haze"] > 0:
            a = params["haze"]
            x = x * (1 - a) + a * params["airlight"].view(-1, 1, 1)
        if params["noise_std"] > 0:
            x = x + params["noise_std"] * torch.randn(x.shape, generator=g)
        return x.clamp_(0, 1)

    def __call__(
        self, sample: dict[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        g = generator if generator is not None else self.generator
        image = sample["image"]
        k = min(self.vhr_channels, image.shape[0])
        params = self.draw(g)
        params["channel_gain"] = params["channel_gain"][:k]
        params["airlight"] = params["airlight"][:k]
        vhr = self.apply(image[:k], params, g)
        out = dict(sample)
        out["image"] = torch.cat([vhr, image[k:]]) if k < image.shape[0] else vhr.contiguous()
        return out
