"""Driver for the concurrency test: `vhr_chips` partitions materialized at once.

    python -m flywheel_tests.faults.partition_runs WORLD OUT CELL DATE[,DATE...] [DATE,...]
    python -m flywheel_tests.faults.partition_runs --one WORLD ROOT CELL DATE

Each comma-separated group of dates is one wave: one process per date, all started together on
one lake, one Lance store and one persistent Dagster instance ($DAGSTER_HOME), as separate
`dagster asset materialize` runs would. The processes come from a forkserver that imports the
asset modules once, so a wave costs the runs and not four imports. Not plain fork from this
process: a child forked from a process with live threads (Dagster's instance, lancedb's
runtime) can inherit a lock held by one of them and hang; one CI run hung here for 400 s.
Then the same partitions are materialized one at a time into OUT/clean, the reference. Prints
one JSON line: every run's success. `chips_in` and `datasets_in` read back what the runs left.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sys
from pathlib import Path

import lancedb
from dagster import DagsterInstance, MultiPartitionKey, materialize

from flywheel_assets.ingest.imagery import vhr_chips
from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_assets.resources import ImageryResource
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.lancedb_io import LanceDBIOManager, LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource


def resources(world: Path, root: Path) -> dict[str, object]:
    lance = str(root / "lancedb")
    return {
        "ducklake": DuckLakeResource(
            catalog=f"duckdb:{root / 'catalog.ducklake'}", data_path=str(root / "lake")
        ),
        "lance_io": LanceDBIOManager(uri=lance),
        "lancedb": LanceDBResource(uri=lance),
        "imagery": ImageryResource.for_world(world, root),
        "objects": ObjectStoreResource(root=str(root / "objects")),
    }


def run_one(world: Path, root: Path, cell: str, day: str) -> bool:
    with DagsterInstance.get() as instance:
        result = materialize(
            [vhr_chips],
            partition_key=MultiPartitionKey({"cell": cell, "date": day}),
            instance=instance,
            resources=resources(world, root),
            raise_on_error=False,
        )
        return result.success


PRELOAD = ["flywheel_tests.faults.partition_runs"]  # imports the assets and resources


def wave(world: Path, root: Path, cell: str, days: list[str]) -> dict[str, bool]:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    with ctx.Pool(len(days)) as pool:
        done = pool.starmap(run_one, [(world, root, cell, day) for day in days])
    return dict(zip(days, done, strict=True))


def main(world: str, out: str, cell: str, *waves: str) -> None:
    with DagsterInstance.get() as instance:  # storage created once, before processes race
        instance.add_dynamic_partitions(S2_CELLS_NAME, [cell])
    root = Path(out)
    done = [wave(Path(world), root / "concurrent", cell, group.split(",")) for group in waves]
    days = sorted({day for group in waves for day in group.split(",")})
    clean = {day: run_one(Path(world), root / "clean", cell, day) for day in days}
    print(json.dumps({"waves": done, "clean": clean}))


def chips_in(root: Path) -> list[tuple]:
    """(uid, cell, date, pixel hash) of every chip in root's Lance store; [] without a table."""
    db = lancedb.connect(str(root / "lancedb"))
    if "vhr_chips" not in db.table_names():
        return []
    table = db.open_table("vhr_chips")
    rows = table.search().select(["uid", "cell", "date", "image"]).limit(None).to_arrow()
    return sorted(
        (r["uid"], r["cell"], r["date"], hashlib.sha256(r["image"]).hexdigest())
        for r in rows.to_pylist()
    )


def datasets_in(root: Path) -> list[tuple]:
    """The raster_datasets rows of root's lake, as comparable tuples."""
    config = LakeConfig(catalog=f"duckdb:{root / 'catalog.ducklake'}", data_path=str(root / "lake"))
    with lake_connection(config) as con:
        rows = con.execute(
            "SELECT dataset_id, CAST(tile_date AS VARCHAR), tile_count, status, checksum_sha256 "
            "FROM raster_datasets"
        )
        return sorted(rows.fetchall())


if __name__ == "__main__":
    if sys.argv[1] == "--one":  # one run, no fork: WORLD ROOT CELL DATE; exit 1 if it failed
        sys.exit(0 if run_one(Path(sys.argv[2]), Path(sys.argv[3]), *sys.argv[4:6]) else 1)
    main(*sys.argv[1:])
