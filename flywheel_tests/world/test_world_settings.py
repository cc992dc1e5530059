"""WorldSettings: defaults, validation with clear messages, round trips, overrides."""

from __future__ import annotations

import re
from datetime import date

import pytest

from flywheel_core.world.world_settings import FIELD_NAMES, LayoutParams, WorldSettings


def test_defaults_are_the_documented_ones():
    s = WorldSettings()
    assert (s.seed, s.seed_fraction, s.jitter_m, s.point_fraction) == (0, 0.3, 1.0, 0.2)
    assert (s.cloudy_dates_fraction, s.gsd_m) == (0.34, 0.3125)
    assert s.panel_weights == {"poly": 0.4, "mono": 0.45, "thin_film": 0.15}
    assert (s.install_density, s.distractor_density, s.scene_variation) == (1.0, 1.0, 1.0)
    assert s.layout == LayoutParams()


def test_round_trip_through_a_dict_and_hashable():
    s = WorldSettings(seed=7, gsd_m=0.5, panel_mix={"thin_film": 3, "poly": 1})
    d = s.to_dict()
    assert set(d) == set(FIELD_NAMES)
    assert d["panel_mix"] == {"poly": 0.25, "mono": 0.0, "thin_film": 0.75}  # normalised
    assert WorldSettings.from_dict(d) == s
    assert hash(WorldSettings.from_dict(d)) == hash(s)  # usable as a cache key


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gsd_m", 0.2, "gsd_m must be between 0.3 and 1 m, got 0.2"),
        ("gsd_m", 1.5, "gsd_m must be between 0.3 and 1 m"),
        ("seed_fraction", 1.5, "seed_fraction must be between 0 and 1"),
        ("point_fraction", -0.1, "point_fraction must be between 0 and 1"),
        ("cloudy_dates_fraction", 2, "cloudy_dates_fraction must be between 0 and 1"),
        ("jitter_m", -1, "jitter_m must be between 0 and 50 m"),
        ("install_density", -0.5, "install_density must be between 0 and 4"),
        ("distractor_density", 9, "distractor_density must be between 0 and 4"),
        ("scene_variation", 2.5, "scene_variation must be between 0 and 2"),
        ("scene_variation", float("nan"), "scene_variation must be between 0 and 2"),
        ("gsd_m", "fine", "gsd_m must be a number"),
        ("seed", 1.5, "seed must be an integer"),
        ("panel_mix", {"poly": 1, "cigs": 1}, "unknown panel type(s) cigs"),
        ("panel_mix", {"poly": -1}, "the weight of poly must be a number >= 0"),
        ("panel_mix", {"poly": 0, "mono": 0}, "at least one panel type needs a weight > 0"),
        ("panel_mix", 3, "panel_mix must map panel types"),
    ],
)
def test_bad_settings_raise_clear_errors(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        WorldSettings(**{field: value})
    assert str(err.value).startswith(field)  # the message names the field first


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match=r"unknown world setting.*gsd"):
        WorldSettings().replace(gsd=0.5)
    with pytest.raises(ValueError, match=r"unknown world setting.*colour"):
        WorldSettings.from_dict({"colour": 1})


def test_generate_world_takes_settings_and_overrides(tmp_path):
    from flywheel_core.geo.s2 import cell_from_lonlat
    from flywheel_core.world.synthetic import generate_world

    cell = cell_from_lonlat(11.58, 48.14, 16)
    with pytest.raises(ValueError, match=r"unknown world setting.*seeed"):
        generate_world(tmp_path, [cell], [date(2024, 6, 1)], seeed=1)
    with pytest.raises(ValueError, match="gsd_m must be between"):
        generate_world(tmp_path, [cell], [date(2024, 6, 1)], gsd_m=2.0)
    with pytest.raises(TypeError, match="settings must be a WorldSettings"):
        generate_world(tmp_path, [cell], [date(2024, 6, 1)], 3)
    assert not any(tmp_path.iterdir())  # nothing written before the settings are valid
    m = generate_world(
        tmp_path,
        [cell],
        [date(2024, 6, 1)],
        WorldSettings(seed=5, cloudy_dates_fraction=0.0),
        distractor_density=0.0,
    )
    assert m.settings == WorldSettings(seed=5, cloudy_dates_fraction=0.0, distractor_density=0.0)
    assert m.seed == 5 and m.counts["distractors"] == 0
