"""Tile windows, georeferencing and the GeoParquet index, independent of any store."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from flywheel_core.geo.projection import reproject
from flywheel_core.rasters.checks import tiles_cover_raster
from flywheel_core.rasters.tiling import (
    INDEX_COLUMNS,
    PixelFacts,
    TileWindow,
    index_record,
    iter_tiles,
    pixel_facts,
    place_tile,
    tile_row,
    tile_windows,
    write_tile_index,
)
from flywheel_tests.fixtures.rasters import HEIGHT, WIDTH, RasterFiles


def test_windows_cover_every_pixel_and_stay_inside() -> None:
    windows = tile_windows(WIDTH, HEIGHT, 256, 256, 32)
    assert tiles_cover_raster(windows, WIDTH, HEIGHT)[0]
    assert all(
        w.col_off + w.src_size <= WIDTH and w.row_off + w.src_size <= HEIGHT for w in windows
    )
    assert {w.col_off for w in windows} == {0, 224, 384}  # stride 224, last pulled back to the edge
    assert not tiles_cover_raster(windows[:-1], WIDTH, HEIGHT)[0]


def test_place_matches_the_window_transform() -> None:
    src = Affine(0.5, 0, 691_000, 0, -0.5, 5_335_000)
    place = place_tile(
        src, "EPSG:32632", TileWindow(row_off=100, col_off=200, src_size=128, out_size=64)
    )
    assert place.transform.a == pytest.approx(1.0)  # 128 source px read out as 64
    left, top = place.transform @ (0, 0)
    assert (left, top) == (691_100.0, 5_334_950.0)
    expected = reproject(box(691_100, 5_334_886, 691_164, 5_334_950), "EPSG:32632", 4326)
    assert place.footprint.symmetric_difference(expected).area < 1e-14
    assert place.footprint.contains(place.center)


def test_tiles_are_the_source_windows(raster_files: RasterFiles) -> None:
    with rasterio.open(raster_files.striped) as src:
        windows = tile_windows(src.width, src.height, 256, 256, 0)
        tiles = list(iter_tiles(src, windows))
        full = src.read()
    assert len(tiles) == len(windows) == 9  # 3 x 3, the last row and column pulled back
    for place, data in tiles:
        w = place.window
        assert np.array_equal(
            data, full[:, w.row_off : w.row_off + 256, w.col_off : w.col_off + 256]
        )


def test_pixel_facts_count_nodata_and_non_finite() -> None:
    data = np.ones((2, 4, 4), dtype="float32")
    data[:, 0, :] = -9999  # a no-data row in every band
    data[0, 1, 1] = np.nan
    facts = pixel_facts(data, -9999)
    assert facts.nodata_fraction == pytest.approx(0.25) and facts.non_finite == 1
    data[:, 1, 1] = np.nan
    assert pixel_facts(data, float("nan")).non_finite == 0  # NaN is the declared no-data
    assert pixel_facts(np.zeros((1, 2, 2), "uint8"), None) == PixelFacts(0.0, 0)


def test_index_is_geoparquet_in_4326_with_native_crs_and_window(tmp_path: Path) -> None:
    src = Affine(0.5, 0, 691_000, 0, -0.5, 5_335_000)
    place = place_tile(src, "EPSG:32632", TileWindow(0, 0, 256, 256))
    from datetime import date

    row = tile_row(
        place,
        np.zeros((3, 256, 256), "uint8"),
        uid="d|r00000c00000",
        chip_id="d|r00000c00000",
        cell="479e758c",
        day=date(2024, 6, 1),
        band_names=["r", "g", "b"],
        crs="EPSG:32632",
        gsd_m=0.5,
        s2_level=15,
        h3_resolution=11,
        sensor="x",
        scene_id="d",
        scene_href="file",
        acquired=None,
    )
    assert row["s2_token_level"] == 17 and row["h3_cell"].startswith("8b")
    path = write_tile_index([index_record(row, "d", 256, 0.0)], tmp_path / "tiles.parquet")
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo["primary_column"] == "geometry"
    frame = gpd.read_parquet(path)
    assert frame.crs.to_epsg() == 4326
    assert list(frame.columns) == [*INDEX_COLUMNS, "geometry"]
    assert frame.loc[0, "crs"] == "EPSG:32632" and frame.loc[0, "window_width"] == 256
    assert frame.geometry[0].equals_exact(place.footprint, 1e-12)
    empty = gpd.read_parquet(write_tile_index([], tmp_path / "empty.parquet"))
    assert len(empty) == 0 and empty.crs.to_epsg() == 4326
