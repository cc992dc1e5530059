"""The conditions of one cell on one date: sun, season, illumination, haze and sensor noise.

Everything here is keyed by (seed, cell, date) alone, so it is the same in every world and in
every scene that shows the cell. A VHR scene is a cell-sized product: its own cell is lit,
hazed and noised by its own conditions, and its 20 m margins show the neighbours' (each pixel
takes the conditions of the cell that holds it), which is why overlapping scenes still agree
pixel for pixel. The drawn values of a scene's own cell are recorded in its STAC item and tags.

`scene_variation` (v) scales every random draw u in [-1, 1] around its mean; at v = 0 every
scene has the mean values (the sun and the season still follow the date and latitude):

- VHR gain 1 ± 0.15 v, times the sun's illumination (sun.py);
- VHR haze (path reflectance added before the 8-bit stretch) 0.012 ± 0.010 v in blue,
  scaled (490 nm / λ)^2.5 for the other bands (Rayleigh + aerosol: strongest in blue);
- VHR colour balance: each band x (1 ± 0.03 v);
- VHR sensor noise 2.5 ± 1.5 v DN (std);
- Sentinel-2 L2A is atmospherically corrected, so only residuals: gain 1 ± 0.03 v, haze
  ± 0.003 v in B02 scaled the same way, noise 0.003 x (1 ± 0.33 v) reflectance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np

from flywheel_core.geo.s2 import cell_center
from flywheel_core.world.noise import rng
from flywheel_core.world.spectra import S2_BANDS, Season, season
from flywheel_core.world.sun import Sun, sun_at, true_north_in_grid_deg

VHR_WAVELENGTH_NM = (665.0, 560.0, 490.0, 842.0)  # red, green, blue, nir
HAZE_BLUE_MEAN, HAZE_BLUE_SPREAD = 0.012, 0.010
GAIN_SPREAD = 0.15
COLOUR_SPREAD = 0.03
NOISE_DN_MEAN, NOISE_DN_SPREAD = 2.5, 1.5
S2_GAIN_SPREAD = 0.03
S2_HAZE_SPREAD = 0.003
S2_NOISE_MEAN, S2_NOISE_SPREAD = 0.003, 0.33


def _haze_shape(wavelength_nm: float) -> float:
    return (490.0 / wavelength_nm) ** 2.5


@dataclass(frozen=True)
class SceneConditions:
    cell: str
    day: date
    sun: Sun
    season: Season
    gain: float
    haze: tuple[float, float, float, float]  # VHR red, green, blue, nir path reflectance
    colour_balance: tuple[float, float, float, float]
    noise_dn: float
    s2_gain: float
    s2_haze: tuple[float, ...]  # per S2 band (S2_BANDS order), residual, may be negative
    s2_noise: float  # reflectance std

    @property
    def illumination(self) -> float:
        """The VHR scene's light: drawn gain x the sun's elevation factor."""
        return self.gain * self.sun.illumination

    def north_in(self, epsg: int) -> float:
        lon, lat = cell_center(self.cell)
        return true_north_in_grid_deg(lon, lat, epsg)

    def properties(self, sensor: str) -> dict[str, object]:
        """STAC item properties: what was drawn for this scene (rounded for readability)."""
        common: dict[str, object] = {
            "view:sun_elevation": round(self.sun.elevation_deg, 3),
            "view:sun_azimuth": round(self.sun.azimuth_deg, 3),
            "flywheel:sun_elevation": round(self.sun.elevation_deg, 3),
            "flywheel:sun_azimuth": round(self.sun.azimuth_deg, 3),
            "flywheel:overpass_utc_hour": round(self.sun.overpass_utc_hour, 3),
            "flywheel:greenness": round(self.season.greenness, 4),
        }
        if sensor == "vhr":
            return {
                **common,
                "flywheel:illumination": round(self.illumination, 4),
                "flywheel:gain": round(self.gain, 4),
                "flywheel:haze": round(self.haze[2], 5),
                "flywheel:haze_bands": [round(h, 5) for h in self.haze],
                "flywheel:colour_balance": [round(c, 4) for c in self.colour_balance],
                "flywheel:noise_dn": round(self.noise_dn, 3),
            }
        return {
            **common,
            "flywheel:illumination": round(self.s2_gain, 4),
            "flywheel:haze": round(self.s2_haze[0], 5),
            "flywheel:noise_reflectance": round(self.s2_noise, 5),
        }


def _four(values: Iterable[float]) -> tuple[float, float, float, float]:
    """One value per VHR band (red, green, blue, nir)."""
    a, b, c, d = values
    return a, b, c, d


@lru_cache(maxsize=4096)
def scene_conditions(cell: str, day: date, seed: int, variation: float) -> SceneConditions:
    lon, lat = cell_center(cell)
    r = rng("scene-conditions", seed, cell, day.isoformat())
    u = r.uniform(-1.0, 1.0, 12)  # a fixed number of draws, each with its own meaning
    v = float(variation)
    haze_blue = max(0.0, HAZE_BLUE_MEAN + HAZE_BLUE_SPREAD * v * u[1])
    s2_haze_blue = S2_HAZE_SPREAD * v * u[8]
    return SceneConditions(
        cell=cell,
        day=day,
        sun=sun_at(lon, lat, day),
        season=season(lat, day.timetuple().tm_yday),
        gain=float(np.clip(1.0 + GAIN_SPREAD * v * u[0], 0.5, 1.5)),
        haze=_four(float(haze_blue * _haze_shape(w)) for w in VHR_WAVELENGTH_NM),
        colour_balance=_four(
            float(np.clip(1.0 + COLOUR_SPREAD * v * u[2 + b], 0.8, 1.2)) for b in range(4)
        ),
        noise_dn=float(np.clip(NOISE_DN_MEAN + NOISE_DN_SPREAD * v * u[6], 0.5, 6.0)),
        s2_gain=float(np.clip(1.0 + S2_GAIN_SPREAD * v * u[7], 0.8, 1.2)),
        s2_haze=tuple(float(s2_haze_blue * _haze_shape(b.center_nm)) for b in S2_BANDS),
        s2_noise=float(S2_NOISE_MEAN * np.clip(1.0 + S2_NOISE_SPREAD * v * u[9], 0.2, 2.0)),
    )
