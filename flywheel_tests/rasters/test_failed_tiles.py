"""A dataset recorded `failed` leaves no tiles in `raster_tiles` (readers never see them).

Before, a float raster full of NaN was recorded failed by its checks but its tiles stayed in
Lance, where search and the embedding assets (which read `raster_tiles`, not the registry)
served them as good ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from flywheel_core.lake.connection import lake_connection
from flywheel_core.rasters.ingest import RasterIngestError, TilingOptions, register_raster
from flywheel_core.rasters.registry import get_dataset
from flywheel_core.rasters.schema import RASTER_TILES_TABLE
from flywheel_core.store.lance_tables import partition_filter
from flywheel_tests.fixtures.rasters import RasterFiles, Stores, write_geotiff
from flywheel_tests.rasters.test_ingest import FlakyStore

TILES = TilingOptions(tile_size=256, overlap=32)


def _tile_count(stores: Stores, dataset_id: str) -> int:
    if RASTER_TILES_TABLE not in stores.db.table_names():
        return 0
    table = stores.db.open_table(RASTER_TILES_TABLE)
    return table.count_rows(partition_filter({"dataset": dataset_id}))


def test_an_all_nan_raster_is_failed_and_leaves_no_tiles(
    tmp_path: Path, raster_files: RasterFiles, stores: Stores
) -> None:
    good = _register(stores, raster_files.striped).dataset
    assert good.ready and _tile_count(stores, good.dataset_id) == 9
    path = write_geotiff(tmp_path / "all_nan.tif", np.full((1, 600, 600), np.nan, "float32"))
    with rasterio.open(path) as src:  # a real float GeoTIFF of NaN, no no-data declared
        assert src.dtypes == ("float32",) and src.nodata is None
        assert np.isnan(src.read()).all()
    ds = _register(stores, path).dataset
    assert ds.status == "failed" and "pixels_finite" in (ds.error or "")
    assert _tile_count(stores, ds.dataset_id) == 0
    assert ds.tile_count == 0
    with lake_connection(stores.lake) as con:
        row = get_dataset(con, ds.dataset_id)
    assert row is not None and row.status == "failed" and row.tile_count == 0
    assert _tile_count(stores, good.dataset_id) == 9  # another dataset's tiles are untouched


def test_a_store_failure_after_tiling_leaves_no_tiles(
    raster_files: RasterFiles, stores: Stores
) -> None:
    flaky = FlakyStore(stores.root / "objects")  # the tile index upload fails, after the tiles
    with lake_connection(stores.lake) as con, pytest.raises(RasterIngestError):
        register_raster(con, flaky, stores.db, str(raster_files.striped), options=TILES)
    with lake_connection(stores.lake) as con:
        (row,) = con.execute("SELECT dataset_id, status FROM raster_datasets").fetchall()
    assert row[1] == "failed"
    assert _tile_count(stores, row[0]) == 0


def _register(stores: Stores, path: Path | str):
    with lake_connection(stores.lake) as con:
        return register_raster(con, stores.store, stores.db, str(path), options=TILES)
