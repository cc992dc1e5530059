"""The LanceDB IO manager under real Dagster runs (ephemeral instance, in-process executor)."""

import lancedb
import pyarrow as pa
import pytest
from dagster import (
    AssetExecutionContext,
    DagsterInstance,
    MultiPartitionKey,
    asset,
    materialize,
)

from flywheel_assets.partitions import S2_CELLS_NAME, cell_date
from flywheel_resources.lancedb_io import LanceDBIOManager

CELLS = ["479e758c4", "479e758cc"]
FAIL = {"on": False}


@asset(partitions_def=cell_date, io_manager_key="lance_io")
def toy(context: AssetExecutionContext) -> pa.RecordBatchReader:
    keys = context.partition_key.keys_by_dimension
    n = 4 if keys["cell"] == CELLS[0] else 2
    table = pa.table(
        {
            "uid": [f"{context.partition_key}|{i}" for i in range(n)],
            "cell": [keys["cell"]] * n,
            "date": [keys["date"]] * n,
            "value": list(range(n)),
        }
    )

    def batches():
        yield table.slice(0, 1).to_batches()[0]
        if FAIL["on"]:
            raise RuntimeError("crash while streaming")
        yield from table.slice(1).to_batches()

    return pa.RecordBatchReader.from_batches(table.schema, batches())


@asset(partitions_def=cell_date, io_manager_key="lance_io")
def toy_child(toy: pa.Table) -> pa.Table:
    return toy


@pytest.fixture
def instance():
    inst = DagsterInstance.ephemeral()
    inst.add_dynamic_partitions(S2_CELLS_NAME, CELLS)
    return inst


def _run(instance, uri, cell, assets=(toy,), raise_on_error=True):
    return materialize(
        list(assets),
        partition_key=MultiPartitionKey({"cell": cell, "date": "2024-06-01"}),
        resources={"lance_io": LanceDBIOManager(uri=uri)},
        instance=instance,
        raise_on_error=raise_on_error,
    )


def _rows(uri, name="toy"):
    return sorted(
        lancedb.connect(uri).open_table(name).to_arrow().to_pylist(), key=lambda r: r["uid"]
    )


def test_partition_twice_same_rows_others_untouched(tmp_path, instance):
    uri = str(tmp_path / "lancedb")
    FAIL["on"] = False
    _run(instance, uri, CELLS[0])
    _run(instance, uri, CELLS[1])
    first = _rows(uri)
    result = _run(instance, uri, CELLS[0])
    assert _rows(uri) == first
    assert len(first) == 6
    mat = result.asset_materializations_for_node("toy")[0]
    assert mat.metadata["rows_in_partition"].value == 4
    assert mat.metadata["rows_inserted"].value == 0


def test_crash_mid_write_keeps_previous_version(tmp_path, instance):
    uri = str(tmp_path / "lancedb")
    FAIL["on"] = False
    _run(instance, uri, CELLS[0])
    _run(instance, uri, CELLS[1])
    before = _rows(uri)
    version = lancedb.connect(uri).open_table("toy").version
    FAIL["on"] = True
    try:
        result = _run(instance, uri, CELLS[0], raise_on_error=False)
    finally:
        FAIL["on"] = False
    assert not result.success
    table = lancedb.connect(uri).open_table("toy")
    assert table.version == version
    assert _rows(uri) == before


def test_downstream_reads_only_its_partition(tmp_path, instance):
    uri = str(tmp_path / "lancedb")
    FAIL["on"] = False
    _run(instance, uri, CELLS[1])
    _run(instance, uri, CELLS[0], assets=(toy, toy_child))
    child = _rows(uri, "toy_child")
    assert {r["cell"] for r in child} == {CELLS[0]}
    assert len(child) == 4
