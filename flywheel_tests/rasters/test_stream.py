"""Batches made in the caller's thread, committed by Lance in one write, or not at all."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from flywheel_core.rasters.stream import replace_dataset_tiles, write_streamed
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


def _uids(stores: Stores, dataset: str) -> list[str]:
    table = stores.db.open_table("t")
    rows = table.search().where(f"dataset = '{dataset}'").select(["uid"]).limit(None).to_arrow()
    return sorted(rows["uid"].to_pylist())


def test_batches_are_produced_in_the_calling_thread(stores: Stores) -> None:
    threads = set()

    def tracked() -> Iterator[pa.RecordBatch]:
        for batch in _batches("a", 5):
            threads.add(threading.get_ident())
            yield batch

    replace_dataset_tiles(stores.db, "t", SCHEMA, tracked(), {"dataset": "a"})
    assert len(_uids(stores, "a")) == 50
    assert threads == {threading.get_ident()}


def test_a_rebuild_replaces_exactly_its_partition(stores: Stores) -> None:
    replace_dataset_tiles(stores.db, "t", SCHEMA, _batches("a", 2), {"dataset": "a"})
    replace_dataset_tiles(stores.db, "t", SCHEMA, _batches("b", 3), {"dataset": "b"})
    before_b = _uids(stores, "b")
    replace_dataset_tiles(stores.db, "t", SCHEMA, _batches("a", 1), {"dataset": "a"})
    assert _uids(stores, "a") == sorted(f"a-0-{k}" for k in range(10))  # no duplicates
    assert _uids(stores, "b") == before_b


def test_a_producer_error_commits_nothing(stores: Stores) -> None:
    replace_dataset_tiles(stores.db, "t", SCHEMA, _batches("a", 2), {"dataset": "a"})
    version = stores.db.open_table("t").version
    with pytest.raises(ValueError, match="went away"):
        replace_dataset_tiles(stores.db, "t", SCHEMA, _batches("b", 5, 3), {"dataset": "b"})
    assert stores.db.open_table("t").version == version
    assert stores.db.open_table("t").count_rows() == 20


def test_a_writer_error_stops_the_producer() -> None:
    produced = []

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in _batches("a", 50):
            produced.append(batch)
            yield batch

    def broken_write(reader: pa.RecordBatchReader) -> int:
        reader.read_next_batch()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_streamed(broken_write, SCHEMA, batches())
    assert len(produced) < 50  # it stopped instead of cutting the whole scene
