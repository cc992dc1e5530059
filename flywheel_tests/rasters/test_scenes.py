"""The flywheel's VHR scenes are raster datasets: same tiling, same registry, same checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyarrow as pa
import pytest
from dagster import DagsterInstance, MultiPartitionKey, materialize

from flywheel_assets.ingest.imagery import vhr_chips
from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_assets.resources import ImageryResource
from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery import qa
from flywheel_core.imagery.vhr_chips import VHR_CHIP_SCHEMA, VhrScene, iter_vhr_chips
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.rasters.registry import KIND_VHR_SCENE, list_datasets
from flywheel_core.rasters.scenes import record_vhr_scene
from flywheel_core.settings import ChipSettings
from flywheel_core.store.lance_tables import replace_partition
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.lancedb_io import LanceDBIOManager, LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource
from flywheel_tests.fixtures.rasters import Stores
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

LATE = TINY_DATES[1]
ACQUIRED = datetime(2025, 7, 3, 10, tzinfo=UTC)


def _chips(world: Any) -> tuple[str, list[dict]]:
    href = str(world.vhr_path(TINY_CELL, LATE))
    scene = VhrScene(href, "vhr-test", "synthetic-vhr", ACQUIRED)
    area = cell_polygon(TINY_CELL)
    return href, list(iter_vhr_chips(scene, TINY_CELL, LATE, area, ChipSettings(), 15, 11))


def _record(stores: Stores, href: str, rows: list[dict]):
    area = cell_polygon(TINY_CELL)
    with lake_connection(stores.lake) as con:
        return record_vhr_scene(
            con,
            stores.store,
            stores.db,
            href=href,
            scene_id="vhr-test",
            cell=TINY_CELL,
            day=LATE,
            acquired=ACQUIRED,
            chips=ChipSettings(),
            s2_level=15,
            h3_resolution=11,
            rows=rows,
            chip_checks={
                "chips_inside_cell": qa.chips_inside_cell(rows, area),
                "no_nan_in_bands": qa.nan_count(rows, "image"),
            },
        )


def test_a_chipped_scene_is_ready_only_once_its_chips_are_in_lance(tiny_world: Any, stores: Stores):
    href, rows = _chips(tiny_world)
    # Recorded before the chips were written: the read-back check catches it.
    early = _record(stores, href, rows).dataset
    assert early.status == "failed" and early.error == "checks failed: lance_rows_match"
    assert early.checks["lance_rows_match"]["missing"] == len(rows)
    replace_partition(
        stores.db,
        "vhr_chips",
        pa.Table.from_pylist(rows, schema=VHR_CHIP_SCHEMA),
        {"cell": TINY_CELL, "date": LATE.isoformat()},
    )
    result = _record(stores, href, rows)
    ds = result.dataset
    assert result.created and ds.ready and ds.dataset_id == early.dataset_id
    assert ds.kind == KIND_VHR_SCENE and ds.lance_table == "vhr_chips"
    assert ds.tile_count == len(rows) and ds.tile_date == LATE and ds.acquired == ACQUIRED
    assert ds.cog_uri == href and not ds.converted  # the world writes COGs
    assert {"chips_inside_cell", "no_nan_in_bands", "lance_rows_match", "index_matches"} <= set(
        ds.checks
    )
    index = gpd.read_parquet(ds.tile_index_uri)
    assert set(index["uid"]) == {r["uid"] for r in rows}
    assert set(index["tile_id"]) == {r["chip_id"] for r in rows}
    assert set(index["window_width"]) == {256}
    with lake_connection(stores.lake) as con:
        snapshot = current_snapshot_id(con)
    again = _record(stores, href, rows)
    assert not again.created
    with lake_connection(stores.lake) as con:
        assert current_snapshot_id(con) == snapshot


@pytest.mark.slow
def test_the_vhr_chips_asset_records_its_scene(tiny_world: Any, tmp_path: Path) -> None:
    lake = DuckLakeResource(
        catalog=f"duckdb:{tmp_path / 'catalog.ducklake'}", data_path=str(tmp_path / "lake")
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(S2_CELLS_NAME, [TINY_CELL])
    resources = {
        "ducklake": lake,
        "lance_io": LanceDBIOManager(uri=str(tmp_path / "lancedb")),
        "lancedb": LanceDBResource(uri=str(tmp_path / "lancedb")),
        "objects": ObjectStoreResource(root=str(tmp_path / "objects")),
        "imagery": ImageryResource.for_world(tiny_world.catalog_path.parent, tmp_path),
    }
    key = MultiPartitionKey({"cell": TINY_CELL, "date": LATE.isoformat()})

    def run() -> None:
        result = materialize([vhr_chips], partition_key=key, instance=instance, resources=resources)
        assert result.success

    run()
    with lake_connection(lake.config()) as con:
        (ds,) = list_datasets(con)
        snapshot = current_snapshot_id(con)
    # Ready on the first run: Dagster stored the chips before the asset body went on to record.
    assert ds.ready, ds.checks
    assert ds.kind == KIND_VHR_SCENE and ds.lance_table == "vhr_chips"
    chips = LanceDBResource(uri=str(tmp_path / "lancedb")).connect().open_table("vhr_chips")
    assert ds.tile_count == chips.count_rows() >= 9
    assert (tmp_path / "objects" / "rasters" / ds.dataset_id / "tiles.parquet").exists()
    run()  # the same partition again: chips replaced in place, the dataset untouched
    with lake_connection(lake.config()) as con:
        assert current_snapshot_id(con) == snapshot
        assert [d.dataset_id for d in list_datasets(con)] == [ds.dataset_id]
