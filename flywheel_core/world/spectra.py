"""Surface reflectances per land-cover class and sensor band, and their 8-bit VHR appearance.

Values come from /work/shared/spectra.md: "[S]" USGS splib07b resampled to Sentinel-2, "[A]"
real L2A pixels of PV farms, "ESTIMATE" physically based guesses. Keeping them in one table is
what makes the two sensors agree: a 10 m pixel is the area average of the same classes the VHR
scene shows, so a ground-mounted PV farm comes out as the panel/grass mixture real L2A shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flywheel_core.world.landcover import N_CLASSES, LandCover
from flywheel_core.world.objects import FRAME, MARKING, N_DETAIL_CODES, RIB, SEAM, TUBE


@dataclass(frozen=True)
class S2Band:
    name: str
    resolution_m: int
    center_nm: int
    common_name: str | None


S2_BANDS: tuple[S2Band, ...] = (
    S2Band("B02", 10, 490, "blue"),
    S2Band("B03", 10, 560, "green"),
    S2Band("B04", 10, 665, "red"),
    S2Band("B05", 20, 705, "rededge"),
    S2Band("B06", 20, 740, "rededge"),
    S2Band("B07", 20, 783, "rededge"),
    S2Band("B08", 10, 842, "nir"),
    S2Band("B8A", 20, 865, "nir08"),
    S2Band("B11", 20, 1610, "swir16"),
    S2Band("B12", 20, 2190, "swir22"),
)
S2_BAND_NAMES: tuple[str, ...] = tuple(b.name for b in S2_BANDS)
BAND_INDEX: dict[str, int] = {name: i for i, name in enumerate(S2_BAND_NAMES)}

#                               B02  B03  B04  B05  B06  B07  B08  B8A  B11  B12
_REFLECTANCE: dict[LandCover, tuple[float, ...]] = {
    # [S] visible; red edge/NIR/SWIR scaled to a satellite canopy (NIR ≈ .40, spectra.md note),
    # because the lab spectrum's NIR .70 is never seen from orbit.
    LandCover.GRASS: (0.05, 0.09, 0.04, 0.10, 0.30, 0.38, 0.40, 0.42, 0.24, 0.12),
    LandCover.DRY_GRASS: (0.13, 0.17, 0.23, 0.26, 0.28, 0.29, 0.31, 0.32, 0.33, 0.24),  # [S]
    LandCover.SOIL_SAND: (0.28, 0.38, 0.49, 0.51, 0.52, 0.53, 0.53, 0.53, 0.56, 0.50),  # [S]
    LandCover.SOIL_MUD: (0.21, 0.25, 0.27, 0.28, 0.29, 0.30, 0.30, 0.31, 0.43, 0.45),  # [S]
    # ESTIMATE: broadleaf canopy, darker than grass in the visible, NIR ≈ .36.
    LandCover.TREES: (0.03, 0.055, 0.03, 0.08, 0.26, 0.34, 0.36, 0.38, 0.18, 0.08),
    LandCover.ROAD: (0.08, 0.09, 0.10, 0.11, 0.12, 0.12, 0.12, 0.13, 0.20, 0.21),  # [S]
    LandCover.WATER: (0.03, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02),  # [S]
    LandCover.ROOF_TILE: (0.06, 0.08, 0.17, 0.19, 0.21, 0.22, 0.22, 0.21, 0.25, 0.31),  # [S]
    LandCover.ROOF_CONCRETE: (0.25, 0.29, 0.32, 0.32, 0.32, 0.32, 0.32, 0.31, 0.34, 0.34),  # [S]
    LandCover.ROOF_BITUMEN: (0.03, 0.03, 0.03, 0.03, 0.02, 0.02, 0.02, 0.02, 0.03, 0.03),  # [S]
    LandCover.ROOF_SHINGLE: (0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.09, 0.08),  # [S]
    # [S] black roofing felt (slight slate-blue tint, ESTIMATE): as dark as panels in the
    # visible, brighter in SWIR.
    LandCover.ROOF_DARK: (0.045, 0.042, 0.038, 0.04, 0.05, 0.05, 0.05, 0.05, 0.12, 0.13),
    # [S] greenhouse plastic x 0.8 ("real pixels darker: crops below"); deep B12 drop kept.
    LandCover.GREENHOUSE: (0.26, 0.34, 0.38, 0.39, 0.39, 0.40, 0.40, 0.41, 0.33, 0.13),
    # ESTIMATE: glass-covered c-Si module off glint (mono: near black).
    LandCover.PV_MONO: (0.056, 0.047, 0.042, 0.044, 0.046, 0.046, 0.046, 0.046, 0.10, 0.06),
    # ESTIMATE: poly-Si, visibly bluer, same NIR/SWIR.
    LandCover.PV_POLY: (0.09, 0.07, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.10, 0.06),
    # ESTIMATE: CdTe thin film under glass: as dark as mono-Si but nearly neutral (a faint green
    # / brown cast, blue ≈ red), flat through the NIR; same glass-dominated SWIR.
    LandCover.PV_THIN_FILM: (0.047, 0.05, 0.045, 0.045, 0.046, 0.046, 0.047, 0.047, 0.09, 0.06),
    # ESTIMATE: blue coil-coated steel. Blue > red in the visible like poly-Si, but the blue
    # pigments (and "cool" IR-reflective paints) are bright in the red edge and NIR.
    LandCover.ROOF_BLUE_METAL: (0.15, 0.12, 0.08, 0.09, 0.18, 0.28, 0.34, 0.36, 0.30, 0.22),
    # ESTIMATE: flat-plate collector, blue selective absorber under glass: dark blue-black,
    # absorbing through the NIR and SWIR (that is its job).
    LandCover.SOLAR_THERMAL: (0.065, 0.045, 0.035, 0.035, 0.04, 0.04, 0.04, 0.04, 0.05, 0.05),
    # ESTIMATE: glazing over a dim interior, slightly blue; low SWIR (glass).
    LandCover.SKYLIGHT: (0.09, 0.085, 0.075, 0.075, 0.075, 0.075, 0.075, 0.075, 0.06, 0.05),
    # ESTIMATE: newer car-park asphalt, [S] old asphalt x 0.85.
    LandCover.PARKING: (0.068, 0.077, 0.085, 0.094, 0.10, 0.10, 0.10, 0.11, 0.17, 0.18),
    # ESTIMATE: car paints (the body seen from above; glass and chrome average in).
    LandCover.CAR_WHITE: (0.47, 0.48, 0.49, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.32),
    LandCover.CAR_SILVER: (0.30, 0.31, 0.32, 0.33, 0.33, 0.34, 0.34, 0.34, 0.28, 0.22),
    LandCover.CAR_BLACK: (0.035, 0.035, 0.035, 0.035, 0.04, 0.04, 0.045, 0.045, 0.05, 0.05),
    LandCover.CAR_BLUE: (0.08, 0.055, 0.04, 0.04, 0.07, 0.12, 0.16, 0.18, 0.10, 0.07),
    LandCover.CAR_RED: (0.05, 0.05, 0.32, 0.38, 0.42, 0.45, 0.47, 0.47, 0.40, 0.30),
}

# ESTIMATE: the ground of a built farm is mown, trampled and shaded by day: a quarter dry grass.
# With the panels this gives the [A] farm pixel (B02 .07, B04 .06-.08, B08 ≈ .25, NDVI ≈ .6).
_REFLECTANCE[LandCover.FARM_GRASS] = tuple(
    round(0.75 * g + 0.25 * d, 4)
    for g, d in zip(_REFLECTANCE[LandCover.GRASS], _REFLECTANCE[LandCover.DRY_GRASS], strict=True)
)

# ESTIMATE: bare deciduous crowns over litter and shaded ground: the winter end-member of TREES.
TREES_BARE: tuple[float, ...] = (0.05, 0.06, 0.07, 0.08, 0.12, 0.15, 0.18, 0.19, 0.22, 0.15)

# ESTIMATE: optically thick cloud; flat in VNIR, lower in SWIR (ice/water absorption).
CLOUD_REFLECTANCE: tuple[float, ...] = (0.55, 0.54, 0.53, 0.53, 0.53, 0.53, 0.52, 0.52, 0.38, 0.26)


def reflectance_table() -> np.ndarray:
    """(class code, band) -> reflectance, with zeros for the unused code 0."""
    table = np.zeros((N_CLASSES, len(S2_BANDS)), dtype=np.float32)
    for cls, values in _REFLECTANCE.items():
        table[int(cls)] = values
    return table


# --- seasons ------------------------------------------------------------------------------------
# Vegetation follows latitude and date (ESTIMATE, a phenology caricature): no seasons within
# ~12° of the equator, full seasons from ~45°; the growing season peaks in mid-July north of the
# equator and mid-January south of it, and shortens poleward. In the dormant season grass
# blends toward DRY_GRASS (up to 65 %) and deciduous crowns toward TREES_BARE (up to 70 %: the
# rest is evergreen). One table per (latitude, date) feeds both sensors.

GRASS_DRYING_MAX = 0.65
TREES_BARE_MAX = 0.7
PEAK_DAY_NORTH = 196


@dataclass(frozen=True)
class Season:
    seasonality: float  # 0 in the tropics .. 1 at high latitudes
    winter: float  # 0 in the growing season .. 1 at mid-winter
    grass_dryness: float  # share of DRY_GRASS blended into grass
    tree_bareness: float  # share of TREES_BARE blended into tree crowns

    @property
    def greenness(self) -> float:
        return 1.0 - self.grass_dryness


def season(lat: float, day_of_year: int) -> Season:
    amplitude = float(np.clip((abs(lat) - 12.0) / 33.0, 0.0, 1.0))
    peak = PEAK_DAY_NORTH if lat >= 0 else PEAK_DAY_NORTH - 365.25 / 2
    c = float(np.cos(2.0 * np.pi * (day_of_year - peak) / 365.25))  # 1 at the peak, -1 opposite
    threshold = float(np.clip(-0.2 + 0.011 * abs(lat), -0.2, 0.6))  # green while c > threshold
    winter = float(np.clip((threshold - c) / (threshold + 0.8), 0.0, 1.0))
    return Season(
        seasonality=amplitude,
        winter=winter,
        grass_dryness=round(GRASS_DRYING_MAX * amplitude * winter, 6),
        tree_bareness=round(TREES_BARE_MAX * amplitude * winter, 6),
    )


def seasonal_table(s: Season) -> np.ndarray:
    """`reflectance_table()` with the vegetation of the season (class code, S2 band)."""
    table = reflectance_table()
    dry = np.asarray(_REFLECTANCE[LandCover.DRY_GRASS], dtype=np.float32)
    for cls in (LandCover.GRASS, LandCover.FARM_GRASS):
        table[int(cls)] += s.grass_dryness * (dry - table[int(cls)])
    bare = np.asarray(TREES_BARE, dtype=np.float32)
    table[int(LandCover.TREES)] += s.tree_bareness * (bare - table[int(LandCover.TREES)])
    return table


# --- VHR (8-bit R, G, B, NIR) --------------------------------------------------------------------

VHR_BANDS: tuple[str, ...] = ("red", "green", "blue", "nir")
_VHR_SOURCE_BANDS = ("B04", "B03", "B02", "B08")
# An aerial-camera-like stretch: 8-bit = 255 * (reflectance / white) ** gamma. It lifts dark
# surfaces the way delivered orthophotos do, so panels land at ≈ 40–90 (spectra.md).
_VHR_WHITE = (0.55, 0.55, 0.55, 0.80)
_VHR_GAMMA = 0.65

# Per-class texture amplitude (relative brightness std of the smooth within-object pattern).
VHR_TEXTURE: dict[LandCover, float] = {
    LandCover.GRASS: 0.10,
    LandCover.DRY_GRASS: 0.10,
    LandCover.FARM_GRASS: 0.12,
    LandCover.SOIL_SAND: 0.06,
    LandCover.SOIL_MUD: 0.08,
    LandCover.TREES: 0.30,
    LandCover.ROAD: 0.04,
    LandCover.WATER: 0.05,
    LandCover.ROOF_TILE: 0.05,
    LandCover.ROOF_CONCRETE: 0.05,
    LandCover.ROOF_BITUMEN: 0.06,
    LandCover.ROOF_SHINGLE: 0.05,
    LandCover.ROOF_DARK: 0.04,
    LandCover.GREENHOUSE: 0.03,
    LandCover.PV_MONO: 0.03,
    LandCover.PV_POLY: 0.04,
    LandCover.PV_THIN_FILM: 0.012,  # very uniform: one deposited film, no cells
    LandCover.ROOF_BLUE_METAL: 0.04,
    LandCover.SOLAR_THERMAL: 0.03,
    LandCover.SKYLIGHT: 0.06,
    LandCover.PARKING: 0.05,
    LandCover.CAR_WHITE: 0.03,
    LandCover.CAR_SILVER: 0.05,
    LandCover.CAR_BLACK: 0.05,
    LandCover.CAR_BLUE: 0.05,
    LandCover.CAR_RED: 0.04,
}
# Per-pixel "crystal grain" (relative std of unsmoothed, position-keyed noise): the flakes of
# multicrystalline wafers that make poly-Si look speckled next to mono-Si and thin film.
VHR_GRAIN: dict[LandCover, float] = {LandCover.PV_POLY: 0.12}

# 8-bit colour of module frame lines (lighter than the cells) and of a specular glint.
VHR_FRAME_LIFT: tuple[float, ...] = (28.0, 30.0, 34.0, 20.0)
VHR_GLINT: tuple[float, ...] = (255.0, 255.0, 255.0, 235.0)
VHR_CLOUD: tuple[float, ...] = (238.0, 240.0, 244.0, 225.0)
# The same clouds as the reflectance the stretch maps to VHR_CLOUD, so that a scene's light and
# haze act on clouds as on the ground.
VHR_CLOUD_REFLECTANCE: tuple[float, ...] = tuple(
    round(white * (dn / 255.0) ** (1.0 / _VHR_GAMMA), 6)
    for dn, white in zip(VHR_CLOUD, _VHR_WHITE, strict=True)
)
# How strongly a detail line shows on a class: multiples of VHR_FRAME_LIFT added to the DN.
# Mono-Si: thin bright aluminium frames; poly-Si: the same frames on a brighter module; thin
# film: frameless, only faint gaps; look-alikes imitate the grid with seams, frames and tubes.
VHR_DETAIL_LIFT: dict[tuple[LandCover, int], float] = {
    (LandCover.PV_MONO, FRAME): 1.1,
    (LandCover.PV_POLY, FRAME): 0.8,
    (LandCover.PV_THIN_FILM, FRAME): 0.15,
    (LandCover.ROOF_DARK, SEAM): 0.6,
    (LandCover.ROOF_BLUE_METAL, SEAM): 0.7,
    (LandCover.SOLAR_THERMAL, FRAME): 1.0,
    (LandCover.SOLAR_THERMAL, TUBE): 0.45,
    (LandCover.SKYLIGHT, FRAME): 0.9,
    (LandCover.PARKING, MARKING): 2.5,
}
# Detail lines that darken instead (multiplicative): greenhouse ribs.
VHR_DETAIL_GAIN: dict[tuple[LandCover, int], float] = {(LandCover.GREENHOUSE, RIB): 0.85}


def to_vhr_dn(reflectance: np.ndarray, band: int) -> np.ndarray:
    """8-bit VHR value of a reflectance in VHR band `band` (0 red, 1 green, 2 blue, 3 nir)."""
    scaled = np.clip(reflectance / _VHR_WHITE[band], 0.0, 1.0) ** _VHR_GAMMA
    return (255.0 * scaled).astype(np.float32)


def vhr_table() -> np.ndarray:
    """(class code, VHR band) -> 8-bit value before texture, noise and shadows."""
    refl = reflectance_table()[:, [S2_BAND_NAMES.index(b) for b in _VHR_SOURCE_BANDS]]
    out = np.zeros_like(refl)
    for band in range(len(VHR_BANDS)):
        out[:, band] = to_vhr_dn(refl[:, band], band)
    out[0] = 0.0
    return out


def texture_table() -> np.ndarray:
    table = np.zeros(N_CLASSES, dtype=np.float32)
    for cls, amp in VHR_TEXTURE.items():
        table[int(cls)] = amp
    return table


def grain_table() -> np.ndarray:
    table = np.zeros(N_CLASSES, dtype=np.float32)
    for cls, amp in VHR_GRAIN.items():
        table[int(cls)] = amp
    return table


def detail_tables() -> tuple[np.ndarray, np.ndarray]:
    """(class, detail code) -> (DN lift multiple, DN gain): what a detail line does there."""
    lift = np.zeros((N_CLASSES, N_DETAIL_CODES), dtype=np.float32)
    gain = np.ones((N_CLASSES, N_DETAIL_CODES), dtype=np.float32)
    for (cls, code), v in VHR_DETAIL_LIFT.items():
        lift[int(cls), code] = v
    for (cls, code), v in VHR_DETAIL_GAIN.items():
        gain[int(cls), code] = v
    return lift, gain


def vhr_source_bands() -> list[int]:
    """S2 band indices the VHR red, green, blue and nir are taken from."""
    return [S2_BAND_NAMES.index(b) for b in _VHR_SOURCE_BANDS]


def vhr_stretch(reflectance: np.ndarray, band: int) -> np.ndarray:
    """`to_vhr_dn` without the cast: float DN of a (top-of-scene) reflectance array."""
    x = np.clip(reflectance * np.float32(1.0 / _VHR_WHITE[band]), 0.0, 1.0)
    return np.float32(255.0) * np.power(x, np.float32(_VHR_GAMMA), dtype=np.float32)


def vhr_dn_gain(illumination: float) -> float:
    """How a multiplicative change of light scales DN through the stretch (for drawn details)."""
    return float(illumination**_VHR_GAMMA)
