"""`WorldSettings`: every knob of the synthetic world, validated, in one frozen value.

The same settings give the same bytes; world.json records them all (`to_dict`), so a world can
be regenerated from its own folder (`from_dict`). Which settings shape what:

- the layout of a cell (objects, PV, look-alikes): `seed`, `panel_mix`, `install_density`,
  `distractor_density` (see `LayoutParams`);
- each scene's lighting, haze and noise: `seed`, `scene_variation`;
- the delivered VHR raster: `gsd_m` (land cover is always rendered at 0.3125 m first);
- the labels a user gets: `seed_fraction`, `jitter_m`, `point_fraction`;
- clouds: `cloudy_dates_fraction`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

PANEL_TYPES: tuple[str, ...] = ("poly", "mono", "thin_film")
DEFAULT_PANEL_MIX: tuple[tuple[str, float], ...] = (
    ("poly", 0.4),
    ("mono", 0.45),
    ("thin_film", 0.15),
)
GSD_RANGE_M = (0.3, 1.0)
DENSITY_MAX = 4.0
SCENE_VARIATION_MAX = 2.0
JITTER_MAX_M = 50.0

# name -> (low, high, unit or "", description) of every bounded numeric field.
_RANGES: dict[str, tuple[float, float, str]] = {
    "seed_fraction": (0.0, 1.0, ""),
    "point_fraction": (0.0, 1.0, ""),
    "cloudy_dates_fraction": (0.0, 1.0, ""),
    "jitter_m": (0.0, JITTER_MAX_M, " m"),
    "gsd_m": (*GSD_RANGE_M, " m"),
    "install_density": (0.0, DENSITY_MAX, ""),
    "distractor_density": (0.0, DENSITY_MAX, ""),
    "scene_variation": (0.0, SCENE_VARIATION_MAX, ""),
}


def _fmt(x: float) -> str:
    return f"{x:g}"


def check_field(name: str, value: Any) -> Any:
    """The validated (and for `panel_mix`, normalised) value of one field, or a ValueError."""
    if name == "seed":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {value!r}")
        return int(value)
    if name == "panel_mix":
        return normalise_panel_mix(value)
    if name not in _RANGES:
        raise ValueError(f"unknown world setting {name!r}; known: {', '.join(FIELD_NAMES)}")
    lo, hi, unit = _RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number between {_fmt(lo)} and {_fmt(hi)}{unit}")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be between {_fmt(lo)} and {_fmt(hi)}{unit}, got {value:g}")
    return value


def normalise_panel_mix(value: Any) -> tuple[tuple[str, float], ...]:
    """Weights of the panel types as ((type, share), ...) in PANEL_TYPES order, summing to 1.

    Accepts a mapping or (type, weight) pairs; types left out get weight 0.
    """
    pairs = value.items() if isinstance(value, Mapping) else value
    try:
        weights = {str(k): v for k, v in pairs}
    except (TypeError, ValueError):
        raise ValueError(
            f"panel_mix must map panel types ({', '.join(PANEL_TYPES)}) to weights, got {value!r}"
        ) from None
    unknown = sorted(set(weights) - set(PANEL_TYPES))
    if unknown:
        raise ValueError(
            f"panel_mix: unknown panel type(s) {', '.join(unknown)}; "
            f"known: {', '.join(PANEL_TYPES)}"
        )
    out = []
    for name in PANEL_TYPES:
        w = weights.get(name, 0.0)
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ValueError(f"panel_mix: the weight of {name} must be a number >= 0, got {w!r}")
        out.append((name, float(w)))
    total = sum(w for _, w in out)
    if total <= 0:
        raise ValueError("panel_mix: at least one panel type needs a weight > 0")
    return tuple((name, round(w / total, 12)) for name, w in out)


@dataclass(frozen=True)
class LayoutParams:
    """The settings a cell's layout depends on (hashable: layouts are cached on it)."""

    seed: int = 0
    panel_mix: tuple[tuple[str, float], ...] = DEFAULT_PANEL_MIX
    install_density: float = 1.0
    distractor_density: float = 1.0


@dataclass(frozen=True)
class WorldSettings:
    seed: int = 0
    seed_fraction: float = 0.3  # share of installations given to the user as seed labels
    jitter_m: float = 1.0  # std of the seed labels' georeferencing error
    point_fraction: float = 0.2  # share of seed labels reduced to points
    cloudy_dates_fraction: float = 0.34  # share of cell-dates with clouds
    gsd_m: float = 0.3125  # delivered VHR pixel size, 0.3-1.0 m
    panel_mix: tuple[tuple[str, float], ...] = DEFAULT_PANEL_MIX
    install_density: float = 1.0  # multiplier of PV systems per cell area
    distractor_density: float = 1.0  # multiplier of PV look-alikes per cell area
    scene_variation: float = 1.0  # 0: every scene lit, hazed and noised alike

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, check_field(f.name, getattr(self, f.name)))

    @property
    def panel_weights(self) -> dict[str, float]:
        return dict(self.panel_mix)

    @property
    def layout(self) -> LayoutParams:
        return LayoutParams(
            self.seed, self.panel_mix, self.install_density, self.distractor_density
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["panel_mix"] = dict(self.panel_mix)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorldSettings:
        unknown = sorted(set(data) - set(FIELD_NAMES))
        if unknown:
            raise ValueError(
                f"unknown world setting(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}"
            )
        return cls(**dict(data))

    def replace(self, **overrides: Any) -> WorldSettings:
        """A copy with some fields changed (names checked, values validated)."""
        unknown = sorted(set(overrides) - set(FIELD_NAMES))
        if unknown:
            raise ValueError(
                f"unknown world setting(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}"
            )
        return WorldSettings(**{**asdict(self), **overrides})


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(WorldSettings))
