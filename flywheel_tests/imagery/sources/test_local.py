"""The local source on every layout of fixtures/local_imagery.py, against the synthetic source."""

from datetime import date

import numpy as np
import pytest
import rasterio

from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery.sources.registry import make_source
from flywheel_core.imagery.sources.types import SourceError, TargetGrid
from flywheel_tests.fixtures.local_imagery import write_local_layouts
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

LATE = TINY_DATES[1]
END = date(LATE.year, LATE.month + 1, 1)


@pytest.fixture(scope="module")
def layouts(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("local_imagery")
    return write_local_layouts(tiny_world.catalog_path.parent, TINY_CELL, TINY_DATES, out)


@pytest.fixture(scope="module")
def synthetic(tiny_world):
    root = str(tiny_world.catalog_path.parent)
    return {k: make_source("synthetic", k, root) for k in ("vhr", "msi")}


def _chosen(source, day=LATE):
    end = date(day.year, day.month + 1, 1)
    scenes = source.search(TINY_CELL, day, end)
    choice = source.choose(scenes, TINY_CELL, day, end)
    assert choice is not None, f"{source.name} found nothing for {day}"
    return choice.scene


def _grid(scene, res):
    return TargetGrid.around(cell_polygon(TINY_CELL), scene.crs, res, 0.0)


def test_vhr_folder_reads_the_file_itself(layouts, synthetic, tmp_path):
    local = make_source("local", "vhr", str(layouts.vhr))
    scene = _chosen(local)
    assert scene.acquired.date() == LATE and scene.properties["acquired_known"]
    assert local.search(TINY_CELL, date(2030, 1, 1), date(2030, 2, 1)) == []
    files = local.rasters(scene, TINY_CELL, LATE, tmp_path)
    assert files == {"image": scene.assets["red"].rpartition("#")[0]}  # no copy written
    grid = _grid(scene, scene.gsd_m)
    ours, theirs = local.read(scene, grid), synthetic["vhr"].read(_chosen(synthetic["vhr"]), grid)
    assert ours.band_names == ("red", "green", "blue", "nir")
    np.testing.assert_array_equal(ours.data, theirs.data)


def test_uint16_vhr_needs_dn_scale(layouts, tmp_path):
    plain = make_source("local", "vhr", str(layouts.vhr16))
    scene = _chosen(plain)
    with pytest.raises(SourceError, match=r"^local: .*dn_scale"):
        plain.read(scene, _grid(scene, scene.gsd_m))
    scaled = make_source("local", "vhr", str(layouts.vhr16), {"dn_scale": 0.01})
    files = scaled.rasters(_chosen(scaled), TINY_CELL, LATE, tmp_path)
    assert files["image"].startswith(str(tmp_path))  # converted to 8 bit, so written once
    plain8 = make_source("local", "vhr", str(layouts.vhr))
    with rasterio.open(files["image"]) as out:
        assert out.dtypes[0] == "uint8"
        grid = TargetGrid(out.crs.to_string(), out.transform, out.width, out.height)
        written = out.read()
    expected = plain8.read(_chosen(plain8), grid)
    assert expected.valid.mean() > 0.8
    np.testing.assert_array_equal(written[:, expected.valid], expected.data[:, expected.valid])


def test_band_map_reorders_bands(layouts, synthetic, tmp_path):
    mapped = make_source(
        "local",
        "vhr",
        str(layouts.vhr_bgr),
        {"band_map": {"red": "b1", "green": "b2", "blue": "b3", "nir": "b4"}},
    )
    scene = _chosen(mapped)
    grid = _grid(scene, scene.gsd_m)
    ours, theirs = mapped.read(scene, grid), synthetic["vhr"].read(_chosen(synthetic["vhr"]), grid)
    np.testing.assert_array_equal(ours.data, theirs.data)
    assert mapped.rasters(scene, TINY_CELL, LATE, tmp_path)["image"].startswith(str(tmp_path))
    with pytest.raises(SourceError, match="band_map names"):
        make_source("local", "vhr", str(layouts.vhr_bgr), {"band_map": {"B04": "1"}})


@pytest.mark.parametrize("day", TINY_DATES)
def test_l2a_product_folder_matches_the_tagged_world(layouts, synthetic, day):
    local = make_source("local", "msi", str(layouts.l2a))
    scene = _chosen(local, day)
    assert set(scene.assets) == {
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B11",
        "B12",
        "SCL",
    }
    grid = _grid(scene, 10.0)
    ours = local.read(scene, grid)
    theirs = synthetic["msi"].read(_chosen(synthetic["msi"], day), grid)
    assert ours.radiometry == "boa_reflectance"
    np.testing.assert_allclose(ours.data, theirs.data, atol=1e-6)
    assert any("acquisition date" in n for n in ours.notes)


def test_harmonized_dns_are_caught_by_the_dark_pixel_check(layouts, synthetic):
    local = make_source("local", "msi", str(layouts.l2a_harmonized))
    scene = _chosen(local)
    grid = _grid(scene, 10.0)
    ours = local.read(scene, grid)
    theirs = synthetic["msi"].read(_chosen(synthetic["msi"]), grid)
    assert any("pixel check" in n for n in ours.notes), ours.notes
    bands = [i for i, b in enumerate(ours.band_names) if b != "SCL"]
    np.testing.assert_allclose(ours.data[bands], theirs.data[bands], atol=2e-4)


def test_l2a_files_without_tags_are_written_as_a_coded_window(layouts, tmp_path):
    local = make_source("local", "msi", str(layouts.l2a))
    scene = _chosen(local)
    files = local.rasters(scene, TINY_CELL, LATE, tmp_path)
    assert set(files) == set(scene.assets)
    with rasterio.open(files["B04"]) as src:
        assert float(src.tags()["BOA_ADD_OFFSET"]) == -1000.0
        assert src.res == (10.0, 10.0)


def test_static_catalog_with_earth_search_keys(layouts, synthetic):
    local = make_source("local", "msi", str(layouts.catalog))
    scene = _chosen(local)
    assert scene.cloud_cover == 5.0 and scene.crs.startswith("EPSG:")
    grid = _grid(scene, 10.0)
    theirs = synthetic["msi"].read(_chosen(synthetic["msi"]), grid)
    np.testing.assert_allclose(local.read(scene, grid).data, theirs.data, atol=1e-6)


def test_missing_band_and_bad_settings_are_one_line_errors(layouts, tmp_path):
    no_scl = make_source("local", "msi", str(layouts.l2a_no_scl))
    with pytest.raises(SourceError) as err:
        no_scl.search(TINY_CELL, LATE, END)
    text = str(err.value)
    assert text.startswith("local: cell ") and "SCL" in text and "\n" not in text
    with pytest.raises(SourceError, match="unknown option"):
        make_source("local", "vhr", str(layouts.vhr), {"bands": {}})
    with pytest.raises(SourceError, match=r"neither a folder nor a catalog\.json"):
        make_source("local", "vhr", str(tmp_path / "nowhere")).search(TINY_CELL, LATE, END)
    with pytest.raises(SourceError, match="unknown imagery source"):
        make_source("landsat", "msi", "x")


def test_a_folder_of_unusable_rasters_says_why(raster_files, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "scene.tif").write_bytes(raster_files.no_crs.read_bytes())
    with pytest.raises(SourceError, match=r"^local: .*no usable raster.*has no CRS"):
        make_source("local", "vhr", str(folder)).search(TINY_CELL, LATE, END)
