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
    }
)
VEGETATION = frozenset(
    {LandCover.GRASS, LandCover.DRY_GRASS, LandCover.TREES, LandCover.FARM_GRASS}
)
PV = frozenset({LandCover.PV_MONO, LandCover.PV_POLY})

# Roof materials a building can get, with their probabilities (residential, commercial).
RESIDENTIAL_ROOFS: tuple[tuple[LandCover, float], ...] = (
    (LandCover.ROOF_TILE, 0.45),
    (LandCover.ROOF_SHINGLE, 0.25),
    (LandCover.ROOF_CONCRETE, 0.15),
    (LandCover.ROOF_DARK, 0.15),
)
COMMERCIAL_ROOFS: tuple[tuple[LandCover, float], ...] = (
    (LandCover.ROOF_CONCRETE, 0.45),
    (LandCover.ROOF_BITUMEN, 0.35),
    (LandCover.ROOF_DARK, 0.20),
)
# Background fields: (class, probability).
FIELD_CLASSES: tuple[tuple[LandCover, float], ...] = (
    (LandCover.GRASS, 0.45),
    (LandCover.DRY_GRASS, 0.18),
    (LandCover.SOIL_SAND, 0.07),
    (LandCover.SOIL_MUD, 0.10),
    (LandCover.TREES, 0.20),
)
