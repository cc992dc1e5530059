"""Opening a file: the facts a registry row needs, or a clear error naming the file and problem."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import Point

from flywheel_core.geo.projection import reproject
from flywheel_core.rasters.inspect import RasterError, inspect_raster, parse_acquired
from flywheel_tests.fixtures.rasters import GSD, HEIGHT, ORIGIN, WIDTH, RasterFiles


def test_header_facts_of_a_geotiff(raster_files: RasterFiles) -> None:
    info = inspect_raster(raster_files.striped)
    assert (info.width, info.height, info.count, info.dtype) == (WIDTH, HEIGHT, 3, "uint8")
    assert info.crs == "EPSG:32632"
    assert info.band_names == ["red", "green", "blue"]
    assert info.res == (GSD, GSD) and info.gsd_m == pytest.approx(GSD)
    assert info.acquired == datetime(2024, 6, 17, 10, 31, tzinfo=UTC)
    centre = Point(ORIGIN[0] + WIDTH * GSD / 2, ORIGIN[1] - HEIGHT * GSD / 2)
    assert info.footprint.contains(reproject(centre, "EPSG:32632", 4326))
    # The outline is densified before reprojection: more than the 5 points of a bare box.
    assert len(info.footprint.exterior.coords) > 5


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "not a raster GDAL can read"),
        ("png", "has no CRS"),
        ("no_crs", "has no CRS"),
        ("truncated", "truncated: block"),
        ("truncated_header", "truncated or corrupt"),
    ],
)
def test_unusable_files_get_a_clear_error(raster_files: RasterFiles, kind: str, message: str):
    path: Path = getattr(raster_files, kind)
    with pytest.raises(RasterError, match=message) as err:
        inspect_raster(path)
    assert str(path) in str(err.value)  # the message names the file


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="no such file"):
        inspect_raster(tmp_path / "nope.tif")
    empty = tmp_path / "empty.tif"
    empty.touch()
    with pytest.raises(RasterError, match="empty"):
        inspect_raster(empty)


def test_acquisition_time_from_tags() -> None:
    assert parse_acquired({"acquisition_date": "2024-05-02"}) == datetime(2024, 5, 2, tzinfo=UTC)
    assert parse_acquired({"DATE_ACQUIRED": "20230709"}) == datetime(2023, 7, 9, tzinfo=UTC)
    assert parse_acquired({"DATETIME": "2024:05:02 11:00:00"}) == datetime(
        2024, 5, 2, 11, tzinfo=UTC
    )
    # TIFFTAG_DATETIME is the file's creation time, not the acquisition time.
    assert parse_acquired({"TIFFTAG_DATETIME": "2024:05:02 11:00:00"}) is None
    assert parse_acquired({"ACQUIRED": "last summer"}) is None
