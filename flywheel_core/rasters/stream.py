"""Stream batches made in this thread into one Lance partition commit.

Lance pulls a RecordBatchReader from its own native worker threads, so a Python generator handed
to it runs there. Cutting tiles in those threads crashed the process (PROJ creating a per-thread
transformer inside a Lance worker: a segfault, seen in the tests), and GDAL and PROJ are happier
in ordinary Python threads anyway. So the tiles are cut here, in the caller's thread, and handed
over through a small bounded queue: the Lance side only dequeues. Memory stays bounded by the
queue, the write is still one commit, and an error on either side aborts it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import lancedb
import pyarrow as pa

from flywheel_core.store.lance_tables import WriteResult, replace_partition

QUEUE_BATCHES = 2
_DONE = object()
_POLL_S = 0.2


class _Aborted(Exception):
    """The producer failed; its own exception is re-raised by the caller."""


def write_partition_streamed(
    db: lancedb.DBConnection,
    table: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    partition: Mapping[str, str],
) -> WriteResult:
    """`replace_partition` of `batches`, which are produced in the calling thread."""
    handoff: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_BATCHES)
    outcome: dict[str, Any] = {}

    def consume() -> Iterator[pa.RecordBatch]:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise _Aborted("the batch producer failed") from item
            yield item

    def write() -> None:
        try:
            reader = pa.RecordBatchReader.from_batches(schema, consume())
            outcome["result"] = replace_partition(db, table, reader, partition)
        except BaseException as exc:
            outcome["error"] = exc

    writer = threading.Thread(target=write, name=f"lance-write-{table}", daemon=True)
    writer.start()

    def put(item: Any) -> bool:
        """Hand an item over unless the writer already stopped (then its error explains why)."""
        while writer.is_alive():
            try:
                handoff.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    try:
        for batch in batches:
            if not put(batch):
                break
        else:
            put(_DONE)
    except BaseException as exc:
        put(exc)
        writer.join()
        raise
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # release the producer's open raster when the writer stopped early
    writer.join()
    if "error" in outcome:
        raise outcome["error"]
    if "result" not in outcome:
        raise RuntimeError(f"the Lance write of {table} stopped without a result")
    return outcome["result"]
