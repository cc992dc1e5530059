"""Registering files end to end on real stores: DuckLake catalog, LanceDB folder, object folder."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely import wkb
from shapely.geometry import Point

from flywheel_core.geo.s2 import cell_from_lonlat, parse_token
from flywheel_core.imagery.vhr_chips import chip_image
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.rasters.cog import validate_cog
from flywheel_core.rasters.ingest import (
    RasterIngestError,
    TilingOptions,
    register_raster,
)
from flywheel_core.rasters.inspect import RasterError
from flywheel_core.rasters.registry import get_dataset, list_datasets
from flywheel_core.rasters.schema import RASTER_TILE_SCHEMA, RASTER_TILES_TABLE, TILE_SCHEMA
from flywheel_core.store.objects import LocalStore
from flywheel_tests.fixtures.rasters import RasterFiles, Stores, pixels, write_geotiff

TILES = TilingOptions(tile_size=256, overlap=32)
EXPECTED_TILES = 9  # 640 x 576 px at stride 224: 3 x 3 windows


def _tiles(stores: Stores, dataset_id: str) -> list[dict]:
    table = stores.db.open_table(RASTER_TILES_TABLE)
    return table.search().where(f"dataset = '{dataset_id}'").limit(None).to_arrow().to_pylist()


def _register(stores: Stores, path: Path | str, **kwargs: object):
    with lake_connection(stores.lake) as con:
        return register_raster(
            con, stores.store, stores.db, str(path), options=kwargs.pop("options", TILES), **kwargs
        )


def test_a_geotiff_becomes_a_ready_dataset(raster_files: RasterFiles, stores: Stores) -> None:
    result = _register(stores, raster_files.striped, name="munich")
    ds = result.dataset
    assert result.created and ds.ready, ds.checks
    assert ds.name == "munich" and ds.kind == "raster"
    assert ds.uri == str(raster_files.striped.resolve())
    assert (
        ds.crs == "EPSG:32632" and ds.band_count == 3 and ds.band_names == ["red", "green", "blue"]
    )
    assert (ds.width, ds.height, ds.res_x, ds.tile_size, ds.tile_overlap) == (
        640,
        576,
        0.5,
        256,
        32,
    )
    assert ds.tile_count == EXPECTED_TILES and ds.lance_table == RASTER_TILES_TABLE
    assert ds.tile_date == date(2024, 6, 17)  # from the ACQUISITION_DATETIME tag
    assert all(facts["passed"] for facts in ds.checks.values())
    assert set(ds.checks) >= {
        "cog_valid",
        "lance_rows_match",
        "index_matches",
        "tiles_cover_raster",
    }
    # Not a COG, so it was converted and stored beside its index.
    assert ds.converted
    prefix = stores.root / "objects" / "rasters" / ds.dataset_id
    assert ds.cog_uri == str(prefix / "cog.tif") and validate_cog(prefix / "cog.tif").valid
    assert ds.tile_index_uri == str(prefix / "tiles.parquet")
    # The registry row reads back the same.
    with lake_connection(stores.lake) as con:
        assert get_dataset(con, ds.dataset_id).checks == ds.checks


def test_tiles_in_lance_are_the_source_pixels(raster_files: RasterFiles, stores: Stores) -> None:
    ds = _register(stores, raster_files.striped).dataset
    rows = _tiles(stores, ds.dataset_id)
    assert len(rows) == EXPECTED_TILES
    assert stores.db.open_table(RASTER_TILES_TABLE).schema.names == RASTER_TILE_SCHEMA.names
    assert RASTER_TILE_SCHEMA.names[: len(TILE_SCHEMA)] == TILE_SCHEMA.names
    with rasterio.open(raster_files.striped) as src:
        full = src.read()
    for row in rows:
        r, c = row["row_off"], row["col_off"]
        assert np.array_equal(chip_image(row), full[:, r : r + 256, c : c + 256])
        assert row["uid"] == row["chip_id"] == f"{ds.dataset_id}|r{r:05d}c{c:05d}"
        assert row["dataset"] == ds.dataset_id and row["date"] == "2024-06-17"
        assert row["cell"] == cell_from_lonlat(row["center_lon"], row["center_lat"], 15)
        assert parse_token(row["s2_token"], 17) and row["h3_cell"].startswith("8b")
        assert row["sensor"] == "test-camera" and row["scene_href"] == ds.cog_uri
        assert wkb.loads(row["footprint"]).contains(Point(row["center_lon"], row["center_lat"]))


def test_index_is_geoparquet_matching_lance(raster_files: RasterFiles, stores: Stores) -> None:
    ds = _register(stores, raster_files.striped).dataset
    index = gpd.read_parquet(ds.tile_index_uri)
    assert index.crs.to_epsg() == 4326 and len(index) == EXPECTED_TILES
    assert set(index["uid"]) == {r["uid"] for r in _tiles(stores, ds.dataset_id)}
    assert set(index["crs"]) == {"EPSG:32632"} and set(index["window_width"]) == {256}
    assert wkb.loads(ds.footprint).buffer(1e-6).contains(index.geometry.union_all())


def test_a_cog_is_used_as_is(raster_files: RasterFiles, stores: Stores) -> None:
    ds = _register(stores, raster_files.cog).dataset
    assert ds.ready and not ds.converted
    assert ds.cog_uri == str(raster_files.cog.resolve())
    assert not (stores.root / "objects" / "rasters" / ds.dataset_id / "cog.tif").exists()


def test_registering_an_unchanged_file_again_changes_nothing(
    raster_files: RasterFiles, stores: Stores
) -> None:
    first = _register(stores, raster_files.striped)
    lance_version = stores.db.open_table(RASTER_TILES_TABLE).version
    with lake_connection(stores.lake) as con:
        snapshot = current_snapshot_id(con)
    again = _register(stores, raster_files.striped, name="other name")
    assert not again.created and again.dataset.dataset_id == first.dataset.dataset_id
    assert again.message.endswith("already registered, ready (9 tiles)")
    assert stores.db.open_table(RASTER_TILES_TABLE).version == lance_version
    with lake_connection(stores.lake) as con:
        assert current_snapshot_id(con) == snapshot  # not even a DuckLake snapshot
        assert len(list_datasets(con)) == 1
    # Other tiling settings are another dataset of the same file.
    other = _register(stores, raster_files.striped, options=TilingOptions(tile_size=128))
    assert other.created and other.dataset.dataset_id != first.dataset.dataset_id
    assert len(_tiles(stores, first.dataset.dataset_id)) == EXPECTED_TILES  # untouched
    # --force rebuilds in place: same id, same tiles, a new row.
    forced = _register(stores, raster_files.striped, force=True)
    assert forced.created and forced.dataset.ready
    assert len(_tiles(stores, first.dataset.dataset_id)) == EXPECTED_TILES


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "not a raster"),
        ("png", "has no CRS"),
        ("no_crs", "has no CRS"),
        ("truncated", "truncated"),
        ("truncated_header", "truncated"),
        ("corrupt", "pixel data is truncated or corrupt"),  # found only while reading tiles
        ("corrupt_striped", "pixel data is truncated or corrupt"),  # found while converting
    ],
)
def test_bad_input_leaves_no_row_no_tiles_no_files(
    raster_files: RasterFiles, stores: Stores, kind: str, message: str
) -> None:
    ok = _register(stores, raster_files.cog).dataset  # so the Lance table exists
    with lake_connection(stores.lake) as con:
        snapshot = current_snapshot_id(con)
    lance_version = stores.db.open_table(RASTER_TILES_TABLE).version
    with pytest.raises(RasterError, match=message):
        _register(stores, getattr(raster_files, kind))
    with lake_connection(stores.lake) as con:
        assert current_snapshot_id(con) == snapshot
        assert [d.dataset_id for d in list_datasets(con)] == [ok.dataset_id]
    assert stores.db.open_table(RASTER_TILES_TABLE).version == lance_version
    assert stores.db.open_table(RASTER_TILES_TABLE).count_rows() == ok.tile_count
    assert [p.name for p in (stores.root / "objects" / "rasters").iterdir()] == [ok.dataset_id]


def test_too_small_for_one_tile(raster_files: RasterFiles, stores: Stores) -> None:
    with pytest.raises(RasterError, match="smaller than one 1024-px tile"):
        _register(stores, raster_files.cog, options=TilingOptions(tile_size=1024))


def test_registration_date_when_untagged(tmp_path: Path, stores: Stores) -> None:
    path = write_geotiff(tmp_path / "untagged.tif", pixels(count=1).astype("uint16"))
    ds = _register(stores, path, today=date(2025, 1, 31)).dataset
    assert ds.ready and ds.acquired is None and ds.tile_date == date(2025, 1, 31)
    assert {r["date"] for r in _tiles(stores, ds.dataset_id)} == {"2025-01-31"}
    assert {r["acquired"] for r in _tiles(stores, ds.dataset_id)} == {None}


def test_a_failed_check_records_failed_not_ready(tmp_path: Path, stores: Stores) -> None:
    data = np.ones((1, 300, 300), dtype="float32")
    data[0, 10, 10] = np.nan  # NaN without a declared no-data value
    ds = _register(stores, write_geotiff(tmp_path / "nan.tif", data)).dataset
    assert ds.status == "failed" and ds.error == "checks failed: pixels_finite"
    assert ds.checks["pixels_finite"]["non_finite_values"] == 1
    with lake_connection(stores.lake) as con:
        assert get_dataset(con, ds.dataset_id).status == "failed"
    # Declared as no-data, the same NaN is fine.
    ok = _register(stores, write_geotiff(tmp_path / "nan_nodata.tif", data, nodata=float("nan")))
    assert ok.dataset.ready


class FlakyStore(LocalStore):
    """An object store whose first upload fails, as a network would."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failures = 1

    def put(self, local: Path, key: str) -> str:
        if self.failures:
            self.failures -= 1
            raise OSError("connection reset by peer")
        return super().put(local, key)


def test_a_store_failure_is_recorded_then_retried(raster_files: RasterFiles, stores: Stores):
    flaky = FlakyStore(stores.root / "objects")
    with lake_connection(stores.lake) as con, pytest.raises(RasterIngestError, match="reset"):
        register_raster(con, flaky, stores.db, str(raster_files.striped), options=TILES)
    with lake_connection(stores.lake) as con:
        (failed,) = list_datasets(con)
        assert failed.status == "failed" and "connection reset" in failed.error
        retried = register_raster(con, flaky, stores.db, str(raster_files.striped), options=TILES)
    assert retried.created and retried.dataset.ready
    assert retried.dataset.dataset_id == failed.dataset_id


def test_a_forced_rebuild_that_fails_does_not_stay_ready(raster_files: RasterFiles, stores: Stores):
    ready = _register(stores, raster_files.striped).dataset
    flaky = FlakyStore(stores.root / "objects")
    with lake_connection(stores.lake) as con, pytest.raises(RasterIngestError):
        register_raster(con, flaky, stores.db, str(raster_files.striped), options=TILES, force=True)
    with lake_connection(stores.lake) as con:
        row = get_dataset(con, ready.dataset_id)
    # The old tiles were deleted before the rebuild: the row must not claim ready.
    assert row.status == "failed" and "connection reset" in row.error


def test_progress_is_logged(
    raster_files: RasterFiles,
    stores: Stores,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flywheel_core.rasters.tiling as tiling

    monkeypatch.setattr(tiling, "PROGRESS_EVERY", 4)
    with caplog.at_level("INFO"):
        _register(stores, raster_files.cog)
    assert "4/9 windows done" in caplog.text and "8/9 windows done" in caplog.text
