"""Land-cover classes shared by both sensors.

One class map per scene drives the VHR and the Sentinel-2 rendering, so the two sensors can never
disagree about what is on the ground; the codes are only internal (they are not written out).
"""

from __future__ import annotations

from enum import IntEnum


class LandCover(IntEnum):
    GRASS = 1
    DRY_GRASS = 2
    SOIL_SAND = 3
    SOIL_MUD = 4
    TREES = 5
    ROAD = 6
    WATER = 7
    ROOF_TILE = 8
    ROOF_CONCRETE = 9
    ROOF_BITUMEN = 10
    ROOF_SHINGLE = 11
    ROOF_DARK = 12  # panel-like dark roof: the hard negative
    GREENHOUSE = 13
    PV_MONO = 14
    PV_POLY = 15
    FARM_GRASS = 16  # mown, trampled, partly shaded grass inside a built PV farm
    PV_THIN_FILM = 17  # CdTe-like: dark, flat, nearly neutral, frameless modules
    # PV look-alikes (see layout.py): none of them is PV, each imitates some of its cues.
    ROOF_BLUE_METAL = 18  # blue-painted steel: blue > red like poly-Si, but bright in NIR
    SOLAR_THERMAL = 19  # flat-plate collectors: dark blue-black absorber under glass
    SKYLIGHT = 20  # glass roof lights on flat roofs: dark, slightly blue
    PARKING = 21  # asphalt of a car park
    CAR_WHITE = 22
    CAR_SILVER = 23
    CAR_BLACK = 24
    CAR_BLUE = 25  # dark blue metallic
    CAR_RED = 26


N_CLASSES = max(LandCover) + 1

# Classes a cast shadow darkens: shadows fall on the ground, not on roofs or panels above it.
GROUND = frozenset(
    {
        LandCover.GRASS,
        LandCover.DRY_GRASS,
        LandCover.SOIL_SAND,
        LandCover.SOIL_MUD,
        LandCover.TREES,
        LandCover.ROAD,
        LandCover.WATER,
        LandCover.FARM_GRASS,
        LandCover.PARKING,  # and the cars on it, which are lower than any caster
        LandCover.CAR_WHITE,
        LandCover.CAR_SILVER,
        LandCover.CAR_BLACK,
        LandCover.CAR_BLUE,
        LandCover.CAR_RED,
    }
)
VEGETATION = frozenset(
    {LandCover.GRASS, LandCover.DRY_GRASS, LandCover.TREES, LandCover.FARM_GRASS}
)
PV = frozenset({LandCover.PV_MONO, LandCover.PV_POLY, LandCover.PV_THIN_FILM})
# Panel type names (WorldSettings.panel_mix, the truth's `panel_type`) and their classes.
PANEL_CLASSES: dict[str, LandCover] = {
    "poly": LandCover.PV_POLY,
    "mono": LandCover.PV_MONO,
    "thin_film": LandCover.PV_THIN_FILM,
}
PANEL_TYPE_OF: dict[LandCover, str] = {cls: name for name, cls in PANEL_CLASSES.items()}
# Car paints and their shares in a car park (white, grey/silver and black dominate the fleet).
CAR_COLOURS: tuple[tuple[LandCover, float], ...] = (
    (LandCover.CAR_WHITE, 0.28),
    (LandCover.CAR_SILVER, 0.30),
    (LandCover.CAR_BLACK, 0.22),
    (LandCover.CAR_BLUE, 0.10),
    (LandCover.CAR_RED, 0.10),
)

# Roof materials an ordinary building can get, with their probabilities. Panel-like roofs (dark
# slate, plain bitumen, blue metal) are look-alikes, placed and counted as such (layout.py), so
# that `distractor_density` governs all of them; a bitumen roof under commercial PV is ordinary.
RESIDENTIAL_ROOFS: tuple[tuple[LandCover, float], ...] = (
    (LandCover.ROOF_TILE, 0.55),
    (LandCover.ROOF_SHINGLE, 0.28),
    (LandCover.ROOF_CONCRETE, 0.17),
)
COMMERCIAL_ROOFS: tuple[tuple[LandCover, float], ...] = ((LandCover.ROOF_CONCRETE, 1.0),)
COMMERCIAL_PV_ROOFS: tuple[tuple[LandCover, float], ...] = (
    (LandCover.ROOF_CONCRETE, 0.6),
    (LandCover.ROOF_BITUMEN, 0.4),
)
# Background fields: (class, probability).
FIELD_CLASSES: tuple[tuple[LandCover, float], ...] = (
    (LandCover.GRASS, 0.45),
    (LandCover.DRY_GRASS, 0.18),
    (LandCover.SOIL_SAND, 0.07),
    (LandCover.SOIL_MUD, 0.10),
    (LandCover.TREES, 0.20),
)
