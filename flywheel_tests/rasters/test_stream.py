"""Batches made in the caller's thread, committed by Lance in one write, or not at all."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from flywheel_core.rasters.stream import write_partition_streamed
from flywheel_core.store.lance_tables import PartitionMismatchError
from flywheel_tests.fixtures.rasters import Stores

SCHEMA = pa.schema([("uid", pa.string()), ("dataset", pa.string()), ("x", pa.int64())])


def _batches(dataset: str, n: int, fail_at: int | None = None) -> Iterator[pa.RecordBatch]:
    for i in range(n):
        if i == fail_at:
            raise ValueError("the raster went away")
        yield pa.RecordBatch.from_pylist(
            [{"uid": f"{dataset}-{i}-{k}", "dataset": dataset, "x": k} for k in range(10)],
            schema=SCHEMA,
        )


def test_batches_are_produced_in_the_calling_thread(stores: Stores) -> None:
    threads = set()

    def tracked() -> Iterator[pa.RecordBatch]:
        for batch in _batches("a", 5):
            threads.add(threading.get_ident())
            yield batch

    result = write_partition_streamed(stores.db, "t", SCHEMA, tracked(), {"dataset": "a"})
    assert result.rows == result.inserted == 50
    assert threads == {threading.get_ident()}


def test_a_producer_error_commits_nothing(stores: Stores) -> None:
    write_partition_streamed(stores.db, "t", SCHEMA, _batches("a", 2), {"dataset": "a"})
    version = stores.db.open_table("t").version
    with pytest.raises(ValueError, match="went away"):
        write_partition_streamed(
            stores.db, "t", SCHEMA, _batches("b", 5, fail_at=3), {"dataset": "b"}
        )
    assert stores.db.open_table("t").version == version
    assert stores.db.open_table("t").count_rows() == 20


def test_a_writer_error_stops_the_producer(stores: Stores) -> None:
    produced = []

    def wrong_partition() -> Iterator[pa.RecordBatch]:
        for batch in _batches("a", 50):
            produced.append(batch)
            yield batch

    with pytest.raises(PartitionMismatchError):
        write_partition_streamed(stores.db, "t", SCHEMA, wrong_partition(), {"dataset": "z"})
    assert len(produced) < 50  # it stopped instead of cutting the whole scene
