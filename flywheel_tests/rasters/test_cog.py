"""COG validation by GDAL's layout rules, and conversion that keeps every pixel and tag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from flywheel_core.rasters.cog import convert_to_cog, validate_cog
from flywheel_tests.fixtures.rasters import RasterFiles, pixels, write_geotiff


def test_a_cog_is_valid(raster_files: RasterFiles) -> None:
    report = validate_cog(raster_files.cog)
    assert report.valid, report.errors
    assert report.details["layout"] == "COG" and report.details["overviews"]


def test_a_striped_geotiff_is_not(raster_files: RasterFiles) -> None:
    report = validate_cog(raster_files.striped)
    assert not report.valid
    text = " ".join(report.errors)
    assert "not tiled" in text and "without internal overviews" in text


def test_tiled_with_overviews_but_ifds_at_the_end_is_not(tmp_path: Path) -> None:
    path = write_geotiff(
        tmp_path / "tiled.tif", pixels().astype("uint8"), tiled=True, blockxsize=256, blockysize=256
    )
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4])
    report = validate_cog(path)
    assert not report.valid
    assert any("IFD" in e for e in report.errors)
    assert any("comes before that of overview" in e for e in report.errors)


def test_conversion_keeps_pixels_tags_and_band_names(raster_files: RasterFiles, tmp_path: Path):
    out = convert_to_cog(raster_files.striped, tmp_path / "out" / "cog.tif")
    assert validate_cog(out).valid
    assert not list(out.parent.glob("*.partial"))
    with rasterio.open(raster_files.striped) as a, rasterio.open(out) as b:
        assert np.array_equal(a.read(), b.read())
        assert b.crs == a.crs and b.transform == a.transform
        assert b.descriptions == a.descriptions
        assert b.tags()["ACQUISITION_DATETIME"] == a.tags()["ACQUISITION_DATETIME"]
