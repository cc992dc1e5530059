"""Cell layouts: how the densities and the panel mix shape them, and what they never depend on."""

from __future__ import annotations

from collections import Counter

import pytest
import shapely

from flywheel_core.geo.s2 import cells_around
from flywheel_core.world.landcover import LandCover
from flywheel_core.world.layout import DISTRACTOR_KINDS, cell_layout
from flywheel_core.world.truth import distractor_frame, truth_frame
from flywheel_core.world.world_settings import WorldSettings

CELLS = cells_around(11.58, 48.14, 15, 8)
LOOK_ALIKE_CLASSES = {
    LandCover.ROOF_DARK,
    LandCover.ROOF_BLUE_METAL,
    LandCover.SOLAR_THERMAL,
    LandCover.SKYLIGHT,
    LandCover.GREENHOUSE,
    LandCover.PARKING,
    LandCover.CAR_BLACK,
    LandCover.CAR_BLUE,
}


def _layouts(**settings: object) -> list:
    params = WorldSettings(**settings).layout
    return [cell_layout(c, params) for c in CELLS]


def test_distractor_density_scales_the_look_alikes_and_never_the_truth():
    by_density = {d: _layouts(distractor_density=d) for d in (0.0, 1.0, 2.0)}
    counts = {d: sum(len(lay.distractors) for lay in lays) for d, lays in by_density.items()}
    assert counts[0.0] == 0
    classes = {s.cls for lay in by_density[0.0] for s in lay.surfaces}
    assert not classes & LOOK_ALIKE_CLASSES, classes & LOOK_ALIKE_CLASSES
    assert counts[1.0] >= 3 * len(CELLS)  # several per level-15 cell by default
    assert 1.6 <= counts[2.0] / counts[1.0] <= 2.4, counts
    kinds = Counter(d.kind for lay in by_density[1.0] for d in lay.distractors)
    assert set(kinds) == set(DISTRACTOR_KINDS), kinds
    # Look-alikes are placed after the PV: the truth is the same at every distractor density.
    truths = [
        [(i.install_id, i.footprint.wkb, i.cls) for lay in lays for i in lay.installations]
        for lays in by_density.values()
    ]
    assert truths[0] == truths[1] == truths[2]


def test_install_density_scales_installations():
    n = {
        d: sum(len(lay.installations) for lay in _layouts(install_density=d))
        for d in (0.0, 0.5, 1.0, 2.0)
    }
    assert n[0.0] == 0
    assert 0.3 <= n[0.5] / n[1.0] <= 0.7, n
    assert 1.5 <= n[2.0] / n[1.0] <= 2.5, n


def test_default_worlds_hold_at_least_30_installations():
    six = cells_around(11.58, 48.14, 15, 6)
    assert len(truth_frame(six, WorldSettings().layout)) >= 30
    four = cells_around(11.58, 48.14, 15, 4)
    assert len(truth_frame(four, WorldSettings(install_density=1.5).layout)) >= 30


def test_panel_mix_draws_the_panel_types():
    types = Counter(i.panel_type for lay in _layouts() for i in lay.installations)
    assert set(types) == {"poly", "mono", "thin_film"}
    total = sum(types.values())
    assert 0.25 <= types["poly"] / total <= 0.55 and 0.3 <= types["mono"] / total <= 0.6, types
    only = Counter(
        i.panel_type for lay in _layouts(panel_mix={"thin_film": 1}) for i in lay.installations
    )
    assert set(only) == {"thin_film"}


@pytest.mark.parametrize("what", ["truth", "distractors"])
def test_a_cells_objects_do_not_depend_on_the_other_cells(what):
    frame = truth_frame if what == "truth" else distractor_frame
    params = WorldSettings(seed=9).layout
    alone = frame(CELLS[:1], params)
    together = frame(CELLS[:3], params)
    mine = together[together.cell == CELLS[0]].reset_index(drop=True)
    assert len(alone) > 0 and len(together) > len(alone)
    assert alone.drop(columns="geometry").equals(mine.drop(columns="geometry"))
    pairs = zip(alone.geometry, mine.geometry, strict=True)
    assert all(shapely.equals_exact(a, b, 0) for a, b in pairs)


def test_look_alikes_lie_inside_their_cell_with_areas():
    from flywheel_core.geo.s2 import cell_polygon

    looks = distractor_frame(CELLS[:4], WorldSettings(distractor_density=2).layout)
    assert list(looks.columns) == [
        "distractor_id",
        "cell",
        "kind",
        "geometry",
        "area_m2",
        "n_objects",
    ]
    assert looks.crs.to_epsg() == 4326 and looks.distractor_id.is_unique
    for row in looks.itertuples():
        assert cell_polygon(row.cell).contains(row.geometry), row.distractor_id
    areas = looks.groupby("kind").area_m2.median()
    assert areas["solar_thermal"] < 15 < areas["dark_roof"] < 250 < areas["car_park"]
    collectors = looks[looks.kind == "solar_thermal"].n_objects
    assert collectors.between(2, 6).all()
    cars = looks[looks.kind == "car_park"]
    assert (cars.n_objects > 0).all()
