"""The Core-Five source on datatree fixtures in its (UNVERIFIED) layout: files, search, read."""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pytest
import rasterio
from affine import Affine

from flywheel_core.geo.s2 import cell_center, cell_from_lonlat, cell_polygon, parent_token
from flywheel_core.imagery.sources.core_five import HUB_ROOT, CoreFiveSource
from flywheel_core.imagery.sources.registry import make_source
from flywheel_core.imagery.sources.types import MSI_READ_BANDS, SourceError, TargetGrid
from flywheel_tests.fixtures.core_five import (
    RECT_B04,
    RECT_VALUE,
    SCL_CLOUD_HIGH,
    SCL_VEGETATION,
    write_core_five_fixture,
)

CELL15 = cell_from_lonlat(11.575, 48.137, 15)
CELL13 = parent_token(CELL15, 13)
CELL10 = parent_token(CELL15, 10)
JULY_2023 = (date(2023, 7, 1), date(2023, 8, 1))
JUNE_2024 = (date(2024, 6, 1), date(2024, 7, 1))


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    root = tmp_path_factory.mktemp("core-five")
    return write_core_five_fixture(root, CELL13, centre=cell_center(CELL15))


@pytest.fixture(scope="module")
def attr_five(tmp_path_factory):
    """CRS as attributes (`crs` on hr, `epsg` on s2), 3 VHR bands, no SCL, no B8A, no date,
    rows stored south to north."""
    root = tmp_path_factory.mktemp("core-five-attr")
    return write_core_five_fixture(
        root,
        CELL13,
        centre=cell_center(CELL15),
        hr_size=400,
        hr_bands=3,
        acquired=None,
        crs_style="attribute",
        s2_bands=("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B11", "B12"),
        scl=False,
        y_ascending=True,
    )


def _rect_grid(fx, margin_px=8):
    left, bottom, right, top = fx.rect_bounds
    res = fx.hr_transform.a
    width = round((right - left) / res) + 2 * margin_px
    height = round((top - bottom) / res) + 2 * margin_px
    transform = Affine(res, 0.0, left - margin_px * res, 0.0, -res, top + margin_px * res)
    return TargetGrid(fx.crs, transform, width, height)


def test_partition_cells_map_to_their_level13_file(five):
    src = CoreFiveSource("vhr", str(five.root))
    expected = f"src/datatree/{CELL10}/{CELL13}.nc"
    assert src.file_for(CELL15) == expected
    assert src.file_for(CELL13) == expected
    assert src.file_for(cell_from_lonlat(11.575, 48.137, 20)) == expected
    assert src.locate(expected) == five.path
    # A root pointing inside the mirror (at src/datatree) finds the same file.
    inner = CoreFiveSource("vhr", str(five.root / "src" / "datatree"))
    assert inner.locate(expected) == five.path


def test_coarse_cell_is_an_error_naming_the_source(five):
    src = CoreFiveSource("vhr", str(five.root))
    with pytest.raises(SourceError, match=r"^core-five: cell .*level 12.*level-13"):
        src.search(parent_token(CELL15, 12), *JULY_2023)


def test_registry_makes_it_and_checks_options(five):
    src = make_source("core-five", "msi", str(five.root))
    assert isinstance(src, CoreFiveSource)
    assert CoreFiveSource("vhr", "").root == HUB_ROOT
    with pytest.raises(SourceError, match=r"core-five: unknown option.*bogus"):
        CoreFiveSource("vhr", str(five.root), {"bogus": 1})


def test_vhr_search_lists_the_hr_scene_in_its_month_only(five):
    src = CoreFiveSource("vhr", str(five.root))
    (scene,) = src.search(CELL15, *JULY_2023)
    assert scene.crs == "EPSG:32632"
    assert scene.gsd_m == pytest.approx(0.25)
    assert scene.acquired.isoformat() == "2023-07-14T10:20:00+00:00"
    assert scene.properties["acquired_known"] is True
    assert scene.properties["bands"] == ("red", "green", "blue", "nir")
    assert scene.footprint.contains(cell_polygon(CELL15).centroid)
    assert 0.5 < scene.coverage <= 1.0
    assert src.search(CELL15, *JUNE_2024) == []


def test_vhr_read_puts_the_fixture_pixels_on_the_grid(five):
    src = CoreFiveSource("vhr", str(five.root))
    (scene,) = src.search(CELL15, *JULY_2023)
    grid = _rect_grid(five)
    window = src.read(scene, grid)
    assert window.radiometry == "dn8"
    assert window.band_names == ("red", "green", "blue", "nir")
    assert window.data.dtype == np.uint8
    assert window.valid.all()
    # The bright rectangle lands exactly where its map coordinates say: 8 px in from the edge.
    bright = np.argwhere((window.data == RECT_VALUE).all(axis=0))
    rows, cols = five.rect
    assert tuple(bright.min(axis=0)) == (8, 8)
    assert tuple(bright.max(axis=0)) == (
        8 + rows.stop - rows.start - 1,
        8 + cols.stop - cols.start - 1,
    )
    # A gradient pixel just above-left of the rectangle, band by band.
    for band in range(4):
        assert window.data[band, 3, 2] == five.hr_value(band, rows.start - 5, cols.start - 6)
    # Only the requested bands, in the requested order.
    nir_red = src.read(scene, grid, ["nir", "red"])
    assert nir_red.band_names == ("nir", "red")
    np.testing.assert_array_equal(nir_red.data[1], window.data[0])
    np.testing.assert_array_equal(nir_red.data[0], window.data[3])


def test_vhr_grid_outside_the_image_is_invalid(five):
    src = CoreFiveSource("vhr", str(five.root))
    (scene,) = src.search(CELL15, *JULY_2023)
    far = TargetGrid(five.crs, Affine(0.25, 0.0, 100_000.0, 0.0, -0.25, 5_000_000.0), 16, 16)
    window = src.read(scene, far)
    assert not window.valid.any()
    assert window.data.shape == (4, 16, 16)


def test_vhr_rasters_write_a_georeferenced_window(five, tmp_path):
    src = CoreFiveSource("vhr", str(five.root))
    (scene,) = src.search(CELL15, *JULY_2023)
    files = src.rasters(scene, CELL15, date(2023, 7, 1), tmp_path)
    with rasterio.open(files["image"]) as tif:
        assert tif.count == 4
        assert tif.crs.to_epsg() == 32632
        left, bottom, right, top = five.rect_bounds
        row, col = tif.index((left + right) / 2, (bottom + top) / 2)
        assert tif.read(1)[row, col] == RECT_VALUE
        row, col = tif.index(left - 1.0, top + 1.0)
        assert tif.read(1)[row, col] != RECT_VALUE


def test_msi_search_lists_time_steps_in_the_window_only(five):
    src = CoreFiveSource("msi", str(five.root))
    scenes = src.search(CELL15, *JUNE_2024)
    assert [s.acquired.date() for s in scenes] == [date(2024, 6, 5), date(2024, 6, 20)]
    assert [s.cloud_cover for s in scenes] == [0.0, 100.0]
    assert all(s.gsd_m == pytest.approx(10.0) and s.coverage == pytest.approx(1.0) for s in scenes)
    assert [s.acquired.date() for s in src.search(CELL15, date(2021, 1, 1), date(2022, 1, 1))] == [
        date(2021, 6, 10)
    ]
    assert src.search(CELL15, date(2022, 1, 1), date(2023, 1, 1)) == []
    assert src.choose(scenes, CELL15, *JUNE_2024).scene.acquired.date() == date(2024, 6, 5)


def _pixel_of_s2(fx, grid, s2_row, s2_col):
    """The grid pixel whose centre is the centre of s2 pixel (row, col)."""
    x, y = fx.s2_transform * (s2_col + 0.5, s2_row + 0.5)
    col, row = ~grid.transform * (x, y)
    return int(row), int(col)


@pytest.mark.parametrize("day", [date(2021, 6, 10), date(2024, 6, 5)])
def test_msi_read_gives_reflectance_across_the_offset_change(five, day):
    src = CoreFiveSource("msi", str(five.root))
    (scene,) = [s for s in src.search(CELL15, day, date(2025, 1, 1)) if s.acquired.date() == day]
    grid = TargetGrid.around(cell_polygon(CELL15), five.crs, 10.0)
    window = src.read(scene, grid)
    assert window.radiometry == "boa_reflectance"
    assert window.band_names == MSI_READ_BANDS
    assert window.data.dtype == np.float32
    assert window.valid.all()
    assert any(f"acquisition date {day}" in n for n in window.notes)
    # DNs carry +1000 after 2022-01-25 and none before: the reflectance is the same either way.
    rows, cols = five.s2_rect
    row, col = _pixel_of_s2(five, grid, rows.start, cols.start)
    assert window.band("B04")[row, col] == pytest.approx(RECT_B04, abs=1e-5)
    row, col = _pixel_of_s2(five, grid, rows.start - 3, cols.start - 2)
    expected = five.reflectance("B03", rows.start - 3, cols.start - 2)
    assert window.band("B03")[row, col] == pytest.approx(expected, abs=1e-5)
    assert np.all(window.band("SCL") == SCL_VEGETATION)


def test_msi_read_keeps_scl_codes_of_the_cloudy_step(five):
    src = CoreFiveSource("msi", str(five.root))
    cloudy = src.search(CELL15, date(2024, 6, 20), date(2024, 6, 21))[0]
    grid = TargetGrid.around(cell_polygon(CELL15), five.crs, 10.0)
    window = src.read(cloudy, grid, ["B04", "SCL"])
    assert window.band_names == ("B04", "SCL")
    assert np.all(window.band("SCL") == SCL_CLOUD_HIGH)


def test_msi_rasters_are_l2a_coded_band_files(five, tmp_path):
    src = CoreFiveSource("msi", str(five.root))
    scene = src.search(CELL15, *JUNE_2024)[0]
    files = src.rasters(scene, CELL15, JUNE_2024[0], tmp_path)
    assert set(files) == set(MSI_READ_BANDS)
    rows, cols = five.rect
    x, y = five.hr_transform * (cols.start + 2, rows.start + 2)
    with rasterio.open(files["B04"]) as tif:
        assert float(tif.tags()["BOA_ADD_OFFSET"]) == -1000.0
        row, col = tif.index(x, y)
        assert tif.read(1)[row, col] == round((RECT_B04 + 0.1) * 10000)
    with rasterio.open(files["SCL"]) as tif:
        assert (tif.read(1) == SCL_VEGETATION).all()


def test_msi_cf_scaled_bands_are_decoded_by_xarray(tmp_path):
    fx = write_core_five_fixture(
        tmp_path, CELL13, centre=cell_center(CELL15), hr_size=64, cf_scale=True
    )
    src = CoreFiveSource("msi", str(tmp_path))
    scene = src.search(CELL15, *JUNE_2024)[0]
    grid = TargetGrid.around(cell_polygon(CELL15), fx.crs, 10.0)
    window = src.read(scene, grid, ["B03", "B04"])
    assert any("CF scale_factor/add_offset" in n for n in window.notes)
    rows, cols = fx.s2_rect
    row, col = _pixel_of_s2(fx, grid, rows.start, cols.start)
    assert window.band("B04")[row, col] == pytest.approx(RECT_B04, abs=1e-4)
    row, col = _pixel_of_s2(fx, grid, rows.start - 3, cols.start - 2)
    expected = fx.reflectance("B03", rows.start - 3, cols.start - 2)
    assert window.band("B03")[row, col] == pytest.approx(expected, abs=1e-4)


def test_missing_bands_are_source_errors_naming_band_and_scene(attr_five):
    vhr = CoreFiveSource("vhr", str(attr_five.root))
    (scene,) = vhr.search(CELL15, *JULY_2023)
    grid = _rect_grid(attr_five)
    with pytest.raises(SourceError, match=r"^core-five: .*band nir is not in scene .*#hr"):
        vhr.read(scene, grid, ["red", "nir"])
    msi = CoreFiveSource("msi", str(attr_five.root))
    first = msi.search(CELL15, *JUNE_2024)[0]
    with pytest.raises(SourceError, match=r"^core-five: .*band B8A, SCL is not in scene .*#s2@"):
        msi.read(first, TargetGrid.around(cell_polygon(CELL15), attr_five.crs, 10.0))


def test_attribute_crs_variant_reads_too(attr_five):
    vhr = CoreFiveSource("vhr", str(attr_five.root))
    # No acquisition date in the file: listed for any window, dated at its start.
    (scene,) = vhr.search(CELL15, *JUNE_2024)
    assert scene.properties["acquired_known"] is False
    assert scene.acquired.date() == JUNE_2024[0]
    assert scene.crs == "EPSG:32632"
    window = vhr.read(scene, _rect_grid(attr_five))
    assert window.band_names == ("red", "green", "blue")
    assert (window.data[:, 8:12, 8:12] == RECT_VALUE).all()
    assert (window.data[:, :8, :8] != RECT_VALUE).all()

    msi = CoreFiveSource("msi", str(attr_five.root))
    scenes = msi.search(CELL15, *JUNE_2024)
    assert [s.cloud_cover for s in scenes] == [None, None]  # no SCL
    assert scenes[0].crs == "EPSG:32632"
    grid = TargetGrid.around(cell_polygon(CELL15), attr_five.crs, 10.0)
    bands = msi.read(scenes[0], grid, ["B04"])
    rows, cols = attr_five.s2_rect
    row, col = _pixel_of_s2(attr_five, grid, rows.start, cols.start)
    assert bands.band("B04")[row, col] == pytest.approx(RECT_B04, abs=1e-5)


def test_missing_file_is_no_data_but_unreadable_file_is_an_error(five, tmp_path, caplog):
    other = cell_from_lonlat(11.9, 48.3, 15)  # another level-13 cell: no file in the mirror
    assert parent_token(other, 13) != CELL13
    with caplog.at_level(logging.INFO, logger="flywheel_core.imagery.sources.core_five"):
        assert CoreFiveSource("vhr", str(five.root)).search(other, *JULY_2023) == []
    assert "no data there" in caplog.text
    broken = tmp_path / "src" / "datatree" / CELL10 / f"{CELL13}.nc"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a netCDF file")
    with pytest.raises(SourceError, match=r"^core-five: cell .*: cannot read .*\.nc"):
        CoreFiveSource("msi", str(tmp_path)).search(CELL15, *JUNE_2024)
    with pytest.raises(SourceError, match=r"core-five: .*does not exist.*local mirror folder"):
        CoreFiveSource("vhr", str(tmp_path / "nowhere")).search(CELL15, *JULY_2023)


def test_hub_root_offline_names_the_folder_setting(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    src = CoreFiveSource("vhr", "", {"cache_dir": str(tmp_path / "hf")})
    with pytest.raises(SourceError) as err:
        src.search(CELL15, *JULY_2023)
    message = str(err.value)
    assert message.startswith(f"core-five: cell {CELL15}: cannot fetch src/datatree/{CELL10}/")
    assert "hf://datasets/gajeshladhar/core-five" in message
    assert "local mirror folder (imagery resource `vhr_root`/`msi_root`" in message
    assert "`--root`" in message
    assert "\n" not in message
    with pytest.raises(SourceError, match="hf://datasets/<owner>/<name>"):
        CoreFiveSource("vhr", "hf://models/x")
