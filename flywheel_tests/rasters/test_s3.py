"""A raster on S3 registered with its outputs on S3: the local moto server, over HTTP."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from flywheel_core.lake.connection import lake_connection
from flywheel_core.rasters.ingest import TilingOptions, register_raster
from flywheel_core.rasters.inspect import RasterError
from flywheel_core.rasters.registry import list_datasets
from flywheel_core.store.objects import S3Store, split_s3
from flywheel_tests.fixtures.rasters import RasterFiles, Stores
from flywheel_tests.fixtures.s3 import S3Server


def test_register_from_s3_to_s3(
    raster_files: RasterFiles, stores: Stores, s3_server: S3Server, s3_env: str, tmp_path: Path
) -> None:
    bucket, prefix = split_s3(s3_env)
    client = s3_server.client()
    client.upload_file(str(raster_files.striped), bucket, f"{prefix}inputs/striped.tif")
    uri = f"s3://{bucket}/{prefix}inputs/striped.tif"
    store = S3Store(bucket, prefix + "objects", client)
    with lake_connection(stores.lake) as con:
        result = register_raster(
            con, store, stores.db, uri, options=TilingOptions(tile_size=256), s3_client=client
        )
        ds = result.dataset
        assert ds.ready, ds.checks
        assert ds.uri == uri and ds.converted
        keys = set(s3_server.keys(f"{prefix}objects/rasters/{ds.dataset_id}/"))
        assert keys == {
            f"{prefix}objects/rasters/{ds.dataset_id}/cog.tif",
            f"{prefix}objects/rasters/{ds.dataset_id}/tiles.parquet",
        }
        assert ds.cog_uri == f"s3://{bucket}/{prefix}objects/rasters/{ds.dataset_id}/cog.tif"
        index = gpd.read_parquet(
            store.get(f"rasters/{ds.dataset_id}/tiles.parquet", tmp_path / "i.parquet")
        )
        assert len(index) == ds.tile_count == 9
        # The same bytes at another address are the same dataset.
        again = register_raster(
            con, store, stores.db, str(raster_files.striped), options=TilingOptions(tile_size=256)
        )
        assert not again.created and again.dataset.dataset_id == ds.dataset_id
        with pytest.raises(RasterError, match="no such object"):
            register_raster(
                con, store, stores.db, f"s3://{bucket}/{prefix}nope.tif", s3_client=client
            )
        assert len(list_datasets(con)) == 1
