"""Chips cut from the tiny world: geometry, alignment and L2A radiometry, without Dagster."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from affine import Affine
from shapely import wkb
from shapely.geometry import box

from flywheel_core.geo.projection import reproject
from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery import qa
from flywheel_core.imagery.catalog import StacCatalog
from flywheel_core.imagery.l2a import BANDS
from flywheel_core.imagery.msi_chips import S2Scene, iter_msi_chips, msi_arrays
from flywheel_core.imagery.vhr_chips import VhrScene, chip_image, iter_vhr_chips
from flywheel_core.partitions import window_end
from flywheel_core.settings import ChipSettings
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

EARLY, LATE = TINY_DATES


def _chips(world, day, chips=None):
    chips = chips or ChipSettings()
    scene = VhrScene(str(world.vhr_path(TINY_CELL, day)), "s", "synthetic-vhr", datetime.now(UTC))
    return list(iter_vhr_chips(scene, TINY_CELL, day, cell_polygon(TINY_CELL), chips, 15, 11))


def _msi(world, day, vhr_rows):
    catalog = StacCatalog(world.catalog_path)
    ref = catalog.find("synthetic-s2-l2a", cell_polygon(TINY_CELL), day, window_end(day, "monthly"))
    assert ref is not None and set(BANDS) <= set(ref.assets)
    scene = S2Scene(ref.assets, ref.item_id, ref.collection, ref.acquired)
    return list(
        iter_msi_chips(scene, [{k: v for k, v in r.items() if k != "image"} for r in vhr_rows])
    )


def test_vhr_chips_cover_the_cell_once(tiny_world):
    rows = _chips(tiny_world, LATE)
    assert len(rows) >= 9
    area = cell_polygon(TINY_CELL)
    assert qa.chips_inside_cell(rows, area)[0]
    assert qa.crs_consistent(rows)[0]
    union = wkb.loads(rows[0]["footprint"])
    for r in rows[1:]:
        union = union.union(wkb.loads(r["footprint"]))
    # A chip belongs to the cell holding its centre, so strips along the cell's edges belong to
    # the neighbours' chips: with 80 m chips in a ~300 m cell most, not all, of it is covered here.
    assert union.intersection(area).area / area.area > 0.75
    img = chip_image(rows[0])
    assert img.shape == (4, 256, 256) and img.dtype == np.uint8
    assert len({r["uid"] for r in rows}) == len(rows)


def test_chip_transform_maps_pixels_to_the_footprint(tiny_world):
    row = _chips(tiny_world, LATE)[0]
    t = Affine(*row["transform"])
    assert t.a == pytest.approx(0.3125)
    assert row["gsd_m"] == pytest.approx(0.3125)
    left, top = t @ (0, 0)
    right, bottom = t @ (row["width"], row["height"])
    expected = reproject(box(left, bottom, right, top), row["crs"], 4326)
    assert wkb.loads(row["footprint"]).symmetric_difference(expected).area < 1e-12


def test_resampled_gsd_keeps_the_chip_size(tiny_world):
    rows = _chips(tiny_world, LATE, ChipSettings(size_px=128, gsd_m=0.625))
    assert rows and all(r["height"] == r["width"] == 128 for r in rows)
    assert Affine(*rows[0]["transform"]).a == pytest.approx(0.625)


def test_msi_chips_align_and_read_reflectance_with_the_product_offset(tiny_world):
    for day in TINY_DATES:  # EARLY has BOA_ADD_OFFSET 0, LATE -1000
        vhr = _chips(tiny_world, day)
        msi = _msi(tiny_world, day, vhr)
        assert qa.aligned(vhr, msi)[0]
        assert qa.nan_count(msi, "reflectance", "float32")[0]
        assert qa.cloud_fraction_reported(msi)[0]
        refl = np.stack([msi_arrays(r)[0] for r in msi])
        assert refl.shape[1:] == (10, 8, 8)
        clear = np.array([r["cloud_fraction"] == 0 for r in msi])
        assert clear.any()
        b04 = refl[clear, BANDS.index("B04")]
        # Vegetation, soil and roofs: surface red reflectance, not DN/10000 off by 0.1.
        assert 0.02 < float(np.median(b04)) < 0.3


def test_cloudy_date_reports_clouds(tiny_world):
    vhr = _chips(tiny_world, EARLY)
    msi = _msi(tiny_world, EARLY, vhr)
    late = _msi(tiny_world, LATE, _chips(tiny_world, LATE))
    assert max(r["cloud_fraction"] for r in msi) > 0.05
    assert max(r["cloud_fraction"] for r in late) == 0.0


def test_no_scene_outside_the_world(tiny_world):
    catalog = StacCatalog(tiny_world.catalog_path)
    far = cell_polygon("479e0c4")  # another level-10 cell far from the world
    assert catalog.find("synthetic-vhr", far, LATE, window_end(LATE, "monthly")) is None
    assert (
        catalog.find(
            "synthetic-vhr",
            cell_polygon(TINY_CELL),
            LATE.replace(year=2030),
            LATE.replace(year=2031),
        )
        is None
    )
