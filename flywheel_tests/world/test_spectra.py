"""Reflectance tables: every class in all 10 bands, vegetation that follows latitude and date."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.world.landcover import LandCover
from flywheel_core.world.render import render_layers
from flywheel_core.world.sentinel2 import render_s2
from flywheel_core.world.spectra import (
    BAND_INDEX,
    reflectance_table,
    season,
    seasonal_table,
)
from flywheel_core.world.vhr import render_vhr
from flywheel_core.world.world_settings import WorldSettings

JANUARY, JULY = date(2024, 1, 15), date(2024, 7, 15)
STILL = WorldSettings(cloudy_dates_fraction=0.0, scene_variation=0.0)


def test_every_class_has_a_spectrum_in_all_bands():
    table = reflectance_table()
    for cls in LandCover:
        assert (table[int(cls)] > 0).all() and (table[int(cls)] < 1).all(), cls.name
    # The look-alikes' defining traits (spectra.py): blue metal is blue > red but bright in
    # NIR; collectors and thin film are dark through the NIR.
    blue, red, nir = BAND_INDEX["B02"], BAND_INDEX["B04"], BAND_INDEX["B08"]
    metal = table[LandCover.ROOF_BLUE_METAL]
    assert metal[blue] > metal[red] and metal[nir] > 2 * metal[blue]
    for cls in (LandCover.SOLAR_THERMAL, LandCover.PV_THIN_FILM, LandCover.PV_MONO):
        assert table[cls][nir] < 0.06, cls.name
    thin = table[LandCover.PV_THIN_FILM]
    assert abs(thin[blue] - thin[red]) < 0.005  # nearly neutral


def _doy(d: date) -> int:
    return d.timetuple().tm_yday


def test_seasons_flip_between_hemispheres_and_fade_in_the_tropics():
    assert season(48.0, _doy(JANUARY)).grass_dryness > 0.5
    assert season(48.0, _doy(JULY)).grass_dryness == 0.0
    assert season(-48.0, _doy(JANUARY)).grass_dryness == 0.0
    assert season(-48.0, _doy(JULY)).grass_dryness > 0.5
    for day in range(1, 366, 15):
        assert season(5.0, day).grass_dryness == 0.0  # tropics: no dormant season
        assert season(60.0, day).grass_dryness >= season(35.0, day).grass_dryness
    # A shorter growing season far north: on 1 May 65° is browner than 48°.
    assert season(65.0, 121).winter > 3 * season(48.0, 121).winter > 0
    dry = seasonal_table(season(48.0, _doy(JANUARY)))
    green = seasonal_table(season(48.0, _doy(JULY)))
    red, nir = BAND_INDEX["B04"], BAND_INDEX["B08"]
    for cls in (LandCover.GRASS, LandCover.TREES, LandCover.FARM_GRASS):
        ndvi = [(t[cls][nir] - t[cls][red]) / (t[cls][nir] + t[cls][red]) for t in (dry, green)]
        assert ndvi[0] < ndvi[1] - 0.2, cls.name
    assert np.array_equal(dry[LandCover.ROOF_TILE], green[LandCover.ROOF_TILE])


def _greenness(lat: float, day: date) -> tuple[float, float]:
    """(VHR NDVI of grass pixels, S2 median NDVI of the scene) for a cell at `lat`."""
    layers = render_layers(cell_from_lonlat(11.58, lat, 16), day, STILL)
    image, _ = render_vhr(layers)
    grass = (layers.classes == LandCover.GRASS) & ~layers.shadow
    r, n = image[0][grass].astype(float), image[3][grass].astype(float)
    s2 = render_s2(layers).reflectance
    ndvi = (s2["B08"] - s2["B04"]) / (s2["B08"] + s2["B04"])
    return float(((n - r) / (n + r)).mean()), float(np.median(ndvi))


@pytest.mark.parametrize("day", [JANUARY, JULY], ids=["january", "july"])
def test_vegetation_greenness_phase_flips_between_hemispheres(day):
    north, south = _greenness(48.14, day), _greenness(-48.14, day)
    # In both sensors, from the one table: brown north in January, brown south in July.
    if day == JANUARY:
        assert north[0] < south[0] - 0.15 and north[1] < south[1] - 0.1, (north, south)
    else:
        assert south[0] < north[0] - 0.15 and south[1] < north[1] - 0.1, (north, south)
