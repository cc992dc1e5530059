"""The sun of a scene and the shadows and light it gives, in both hemispheres and at all seasons."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import shapely
from rasterio.features import rasterize
from shapely import affinity

from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.world.landcover import LandCover
from flywheel_core.world.layout import cell_layout
from flywheel_core.world.render import render_layers
from flywheel_core.world.sun import (
    SHADOW_ELEVATION_FLOOR_DEG,
    shadow_direction,
    sun_at,
    true_north_in_grid_deg,
)
from flywheel_core.world.vhr import render_vhr
from flywheel_core.world.world_settings import WorldSettings

MUNICH = (11.58, 48.14)
MELBOURNE = (144.96, -37.81)
OSLO = (10.75, 59.91)
JUNE, DECEMBER = date(2024, 6, 15), date(2024, 12, 15)
CLEAR = WorldSettings(cloudy_dates_fraction=0.0)


def test_sun_position_matches_known_values():
    # Munich, midsummer, 10:30 local solar time: sun in the south-east, about 59° up.
    s = sun_at(*MUNICH, date(2024, 6, 21))
    assert s.elevation_deg == pytest.approx(59.4, abs=1.0)
    assert 125 < s.azimuth_deg < 145
    # Equinox on the equator: nearly due east, 90° - 22.5° (hour angle) up.
    e = sun_at(0.0, 0.0, date(2024, 3, 20))
    assert e.elevation_deg == pytest.approx(67.5, abs=2.5) and 80 < e.azimuth_deg < 100
    # The southern winter sun stands in the north-east; the polar night's is below the horizon.
    m = sun_at(*MELBOURNE, JUNE)
    assert 0 < m.azimuth_deg < 45 and m.elevation_deg < 30
    polar = sun_at(20.0, 70.0, date(2024, 12, 21))
    assert polar.elevation_deg < 0 and polar.shadow_elevation_deg == SHADOW_ELEVATION_FLOOR_DEG


def test_shadow_vectors_point_away_from_the_equator_at_mid_latitudes():
    for lon, lat in (MUNICH, OSLO):
        for day in (JUNE, DECEMBER):
            assert shadow_direction(sun_at(lon, lat, day))[1] > 0, (lat, day)  # north
    for day in (JUNE, DECEMBER):
        assert shadow_direction(sun_at(*MELBOURNE, day))[1] < 0, day  # south
    # Length grows as the sun sinks, up to the elevation floor's 1/tan(8°) ≈ 7.1 x height.
    summer, winter = sun_at(*OSLO, JUNE), sun_at(*OSLO, DECEMBER)
    assert winter.shadow_length_per_m > 5 * summer.shadow_length_per_m
    assert winter.shadow_length_per_m == pytest.approx(1 / np.tan(np.radians(8.0)))
    # Grid north of a UTM zone is turned against true north off the central meridian (9° E).
    assert true_north_in_grid_deg(11.58, 48.14, 32632) < -1.0


def _shadow_beside_casters(cell: str, day: date) -> tuple[float, float]:
    """Share of the scene's shadow pixels 0-4 m north and 0-4 m south of the cell's casters."""
    layers = render_layers(cell, day, CLEAR)
    lay = cell_layout(cell, CLEAR.layout)
    assert lay.epsg == layers.grid.epsg and len(lay.casters) >= 3
    out = []
    for dy in (4.0, -4.0):
        band = shapely.union_all(
            [
                shapely.difference(
                    shapely.convex_hull(
                        shapely.union(c.geometry, affinity.translate(c.geometry, 0, dy))
                    ),
                    c.geometry,
                )
                for c in lay.casters
            ]
        )
        mask = rasterize(
            [(band, 1)], out_shape=layers.shadow.shape, transform=layers.grid.transform()
        ).astype(bool)
        out.append(float(layers.shadow[mask].mean()))
    return out[0], out[1]


@pytest.mark.parametrize(
    ("where", "pole"), [(MUNICH, "north"), (MELBOURNE, "south")], ids=["north", "south"]
)
def test_rendered_shadows_fall_poleward(where, pole):
    north, south = _shadow_beside_casters(cell_from_lonlat(*where, 16), JUNE)
    if pole == "north":
        assert north > 2 * south + 0.05, (north, south)
    else:
        assert south > 2 * north + 0.05, (north, south)


def test_high_latitude_winter_has_longer_shadows_and_a_darker_scene():
    cell = cell_from_lonlat(*OSLO, 16)
    scenes = {}
    for day in (JUNE, DECEMBER):
        layers = render_layers(cell, day, CLEAR)
        image, _ = render_vhr(layers)
        scenes[day] = (layers, image.astype(np.float64))
    (ls, summer), (lw, winter) = scenes[JUNE], scenes[DECEMBER]
    own = ls.cell_mask
    assert lw.shadow[own].mean() > 2 * ls.shadow[own].mean() + 0.05  # long winter shadows
    assert lw.own.sun.elevation_deg < 10 < 40 < ls.own.sun.elevation_deg
    assert lw.own.illumination < 0.6 * ls.own.illumination
    # Darker on the same surfaces (roofs, roads, bare soil: no season), lit on both dates.
    steady = np.isin(
        ls.classes,
        [LandCover.ROOF_TILE, LandCover.ROOF_CONCRETE, LandCover.ROAD, LandCover.SOIL_MUD],
    )
    steady &= own & ~ls.shadow & ~lw.shadow & (ls.classes == lw.classes)
    assert steady.sum() > 500
    assert winter[:3, steady].mean() < 0.8 * summer[:3, steady].mean()
