"""A `vhr_chips` step that cannot open the lake fails before it stores a single chip.

Before the fix the chips were yielded (and committed to Lance by the IO manager) first and the
lake opened afterwards, so a run that failed "still locked" on the DuckDB-file catalog left a
partition of chips behind while Dagster recorded the step as failed.
"""

from __future__ import annotations

import subprocess
import sys
import time

import lancedb
import pytest
from dagster import DagsterInstance, MultiPartitionKey, materialize

from flywheel_assets.ingest.imagery import vhr_chips
from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_assets.resources import ImageryResource
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.lancedb_io import LanceDBIOManager, LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource
from flywheel_tests.fixtures.world import TINY_CELL

pytestmark = pytest.mark.slow

DAY = "2025-07-01"
HOLD = """
import sys, time
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
with lake_connection(LakeConfig(catalog=sys.argv[1], data_path=sys.argv[2])):
    print("held", flush=True)
    time.sleep(120)
"""


def _materialize(root, world, lock_timeout_s: float):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(S2_CELLS_NAME, [TINY_CELL])
    return materialize(
        [vhr_chips],
        partition_key=MultiPartitionKey({"cell": TINY_CELL, "date": DAY}),
        instance=instance,
        raise_on_error=False,
        resources={
            "ducklake": DuckLakeResource(
                catalog=f"duckdb:{root / 'catalog.ducklake'}",
                data_path=str(root / "lake"),
                lock_timeout_s=lock_timeout_s,
            ),
            "lance_io": LanceDBIOManager(uri=str(root / "lancedb")),
            "lancedb": LanceDBResource(uri=str(root / "lancedb")),
            "imagery": ImageryResource.for_world(world.catalog_path.parent, root),
            "objects": ObjectStoreResource(root=str(root / "objects")),
        },
    )


def _chips(root) -> int:
    db = lancedb.connect(str(root / "lancedb"))
    return db.open_table("vhr_chips").count_rows() if "vhr_chips" in db.table_names() else 0


def test_locked_lake_fails_the_step_with_no_chips_written(tiny_world, tmp_path):
    catalog, data = f"duckdb:{tmp_path / 'catalog.ducklake'}", str(tmp_path / "lake")
    with lake_connection(LakeConfig(catalog=catalog, data_path=data)):
        pass  # a migrated catalog, as any earlier run leaves it
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, catalog, data], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        failed = _materialize(tmp_path, tiny_world, lock_timeout_s=2)
        assert not failed.success
        assert time.monotonic() - started < 60
        errors = [e for e in failed.all_events if e.is_step_failure]
        assert errors and "still locked" in errors[0].step_failure_data.error.to_string()
        assert _chips(tmp_path) == 0, "a failed step left chips committed in Lance"
    finally:
        holder.kill()
        holder.wait(timeout=30)
    again = _materialize(tmp_path, tiny_world, lock_timeout_s=30)
    assert again.success and _chips(tmp_path) > 0
