"""Worker for the fault suite: one partition write through `replace_partition`, in its own
process, so FLYWHEEL_FAULT_POINT can kill it mid-write.

    python -m flywheel_tests.faults.lance_writer URI TABLE ROWS.parquet CELL DATE

The rows are streamed in small batches, so a kill at `lance.partition.streaming` lands while
Lance is still receiving data.
"""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel_core.store.lance_tables import connect, replace_partition

BATCH_ROWS = 16


def main(uri: str, table: str, rows: str, cell: str, day: str) -> None:
    data = pq.read_table(rows)
    reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(BATCH_ROWS))
    result = replace_partition(connect(uri), table, reader, {"cell": cell, "date": day})
    print(f"wrote {result.rows} rows at version {result.version}")


if __name__ == "__main__":
    main(*sys.argv[1:6])
