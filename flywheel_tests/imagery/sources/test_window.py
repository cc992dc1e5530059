"""Windows written by sources: the grid, the L2A coding, and reuse of a complete window."""

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio

from flywheel_core.geo.s2 import cell_from_lonlat, cell_polygon
from flywheel_core.imagery.sources.registry import make_source
from flywheel_core.imagery.sources.types import SourceError, TargetGrid
from flywheel_core.imagery.sources.window import MANIFEST, encode_l2a, materialize
from flywheel_tests.fixtures.local_imagery import write_local_layouts
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

LATE = TINY_DATES[1]


def test_grid_snaps_to_the_resolution_lattice():
    grid = TargetGrid.around(cell_polygon(TINY_CELL), "EPSG:32632", 10.0, 40.0)
    left, bottom, right, top = grid.bounds
    assert all(v % 10 == 0 for v in (left, bottom, right, top))
    assert grid.footprint().contains(cell_polygon(TINY_CELL))


def test_l2a_coding_round_trips():
    refl = np.array([[-0.05, 0.0, 0.1234, np.nan]], dtype=np.float32)
    dn = encode_l2a(refl)
    assert dn.dtype == np.uint16 and dn[0, 3] == 0
    np.testing.assert_allclose(
        (dn[0, :3].astype(np.float32) - 1000) / 10000, refl[0, :3], atol=1e-4
    )


@pytest.fixture(scope="module")
def product(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("window_layouts")
    return write_local_layouts(tiny_world.catalog_path.parent, TINY_CELL, TINY_DATES, out).l2a


def test_a_complete_window_is_reused_and_an_interrupted_one_redone(product, tmp_path):
    source = make_source("local", "msi", str(product))
    scene = source.search(TINY_CELL, LATE, date(2025, 8, 1))[0]
    files = materialize(source, scene, TINY_CELL, LATE, tmp_path)
    manifest = next(tmp_path.rglob(MANIFEST))
    stamp = manifest.stat().st_mtime_ns
    assert materialize(source, scene, TINY_CELL, LATE, tmp_path) == files
    assert manifest.stat().st_mtime_ns == stamp  # reused, not rewritten
    with rasterio.open(files["SCL"]) as scl:
        assert scl.dtypes[0] == "uint8" and scl.res == (10.0, 10.0)
    Path(files["B03"]).unlink()  # a window missing a file is written again
    again = materialize(source, scene, TINY_CELL, LATE, tmp_path)
    assert Path(again["B03"]).exists() and manifest.stat().st_mtime_ns != stamp


def test_a_scene_without_pixels_over_the_cell_writes_nothing(product, tmp_path):
    source = make_source("local", "msi", str(product))
    scene = source.search(TINY_CELL, LATE, date(2025, 8, 1))[0]
    far = cell_from_lonlat(11.60, 48.14, 15)  # 1.5 km east: outside the product
    with pytest.raises(SourceError, match="no valid pixel"):
        materialize(source, scene, far, LATE, tmp_path)
    assert not list(tmp_path.rglob("*.tif"))
