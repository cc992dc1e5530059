"""Per-scene illumination, haze, colour balance and noise: keyed, scaled, and recorded."""

from __future__ import annotations

from datetime import date

import numpy as np
import pystac
import pytest
import rasterio

from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.world.conditions import scene_conditions

SMALL_CELL = cell_from_lonlat(11.58, 48.14, 16)
DATES = [date(2024, 5, 1), date(2024, 6, 1), date(2024, 7, 1)]


def test_conditions_are_keyed_by_seed_cell_and_date():
    a = scene_conditions(SMALL_CELL, DATES[0], 0, 1.0)
    assert scene_conditions(SMALL_CELL, DATES[0], 0, 1.0) == a
    other_cell = cell_from_lonlat(11.60, 48.14, 16)
    for other in (
        scene_conditions(SMALL_CELL, DATES[1], 0, 1.0),
        scene_conditions(SMALL_CELL, DATES[0], 1, 1.0),
        scene_conditions(other_cell, DATES[0], 0, 1.0),
    ):
        assert (other.gain, other.noise_dn, other.haze) != (a.gain, a.noise_dn, a.haze)
    # Variation scales the draws around their means, and 0 removes them.
    still = scene_conditions(SMALL_CELL, DATES[0], 0, 0.0)
    assert (still.gain, still.noise_dn, still.colour_balance) == (1.0, 2.5, (1.0,) * 4)
    double = scene_conditions(SMALL_CELL, DATES[0], 0, 2.0)
    assert double.gain - 1.0 == pytest.approx(2 * (a.gain - 1.0))
    # Haze is strongest in blue, then green, red, NIR (path radiance ~ λ^-2.5).
    red, green, blue, nir = a.haze
    assert blue > green > red > nir > 0


def _items(world, prefix: str) -> list[pystac.Item]:
    catalog = pystac.Catalog.from_file(str(world.catalog_path))
    items = [i for i in catalog.get_items(recursive=True) if i.id.startswith(prefix)]
    return sorted(items, key=lambda i: i.id)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    from flywheel_core.world.synthetic import generate_world

    return {
        v: generate_world(
            tmp_path_factory.mktemp(f"variation{int(v)}"),
            [SMALL_CELL],
            DATES,
            seed=6,
            scene_variation=v,
            cloudy_dates_fraction=0.0,
        )
        for v in (0.0, 1.0)
    }


def test_scene_variation_changes_the_recorded_per_scene_values(worlds):
    keys = ("flywheel:gain", "flywheel:haze", "flywheel:noise_dn")
    recorded = {
        v: [tuple(i.properties[k] for k in keys) for i in _items(w, "vhr-")]
        for v, w in worlds.items()
    }
    # 0: every scene hazed, balanced and noised alike (only the sun moves with the date).
    assert set(recorded[0.0]) == {(1.0, 0.012, 2.5)}
    items0 = _items(worlds[0.0], "vhr-")
    assert all(i.properties["flywheel:colour_balance"] == [1.0] * 4 for i in items0)
    assert len({i.properties["flywheel:sun_elevation"] for i in items0}) == 3
    # 1: each scene draws its own values, within the documented ranges.
    assert len(set(recorded[1.0])) == 3 and not set(recorded[1.0]) & set(recorded[0.0])
    for gain, haze, noise in recorded[1.0]:
        assert 0.85 <= gain <= 1.15 and 0.002 <= haze <= 0.022 and 1.0 <= noise <= 4.0
    for item in _items(worlds[1.0], "vhr-"):
        p = item.properties
        assert p["flywheel:illumination"] == pytest.approx(
            p["flywheel:gain"] * _sun_illumination(p["flywheel:sun_elevation"]), abs=2e-3
        )
        assert p["view:sun_elevation"] == p["flywheel:sun_elevation"]
        # The VHR COG's tags say the same.
        with rasterio.open(item.assets["image"].get_absolute_href()) as src:
            tags = src.tags()
        assert float(tags["FLYWHEEL_NOISE_DN"]) == p["flywheel:noise_dn"]
        assert float(tags["FLYWHEEL_SUN_AZIMUTH"]) == p["flywheel:sun_azimuth"]
    for item in _items(worlds[1.0], "s2-"):
        assert 0.0019 < item.properties["flywheel:noise_reflectance"] < 0.0041
        assert "flywheel:sun_elevation" in item.properties


def _sun_illumination(elevation: float) -> float:
    from flywheel_core.world.sun import Sun

    return Sun(elevation, 0.0, 0.0).illumination


def test_scene_variation_shows_in_the_pixels(worlds):
    day = DATES[1]
    with (
        rasterio.open(worlds[0.0].vhr_path(SMALL_CELL, day)) as a,
        rasterio.open(worlds[1.0].vhr_path(SMALL_CELL, day)) as b,
    ):
        still, varied = a.read().astype(float), b.read().astype(float)
    # The same ground, lit, hazed and balanced otherwise: every band's level moves.
    for b in range(4):
        assert varied[b].mean() / still[b].mean() != pytest.approx(1.0, abs=0.005), b
    assert np.abs(varied - still).mean() > 1.0
