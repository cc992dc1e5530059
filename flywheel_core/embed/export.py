"""Embeddings as Parquet in the object store, for analytics outside LanceDB (DuckDB, Spark, pandas).

One file per (dataset, cell, date) at a fixed key, `part-0.parquet`, so rerunning a partition
overwrites its file instead of adding a second copy next to it; an empty partition writes an empty
file for the same reason (the stale vectors of an earlier run must not survive in the export).
Hive-style `cell=`/`date=` folders let readers prune by path; the columns are also inside the
file, so readers should not add hive columns on top (DuckDB: `hive_partitioning = false`).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel_core.store.objects import ObjectStore

EXPORT_ROOT = "embeddings"
PART_NAME = "part-0.parquet"
_SAFE = re.compile(r"^[A-Za-z0-9._\-]+$")


def _segment(name: str, value: str) -> str:
    if not value or not _SAFE.match(value):
        raise ValueError(
            f"export {name} {value!r} must be non-empty letters, digits, '.', '_' or '-' "
            "(it becomes a path segment)"
        )
    return value


def export_key(dataset: str, cell: str, date: str) -> str:
    """Object key of a partition's Parquet file."""
    return (
        f"{EXPORT_ROOT}/{_segment('dataset', dataset)}/cell={_segment('cell', cell)}/"
        f"date={_segment('date', date)}/{PART_NAME}"
    )


def export_glob(store: ObjectStore, dataset: str) -> str:
    """A glob over every exported partition of a dataset, for DuckDB's read_parquet."""
    prefix = store.uri(f"{EXPORT_ROOT}/{_segment('dataset', dataset)}")
    return f"{prefix}/cell=*/date=*/*.parquet"


def export_parquet(table: pa.Table, store: ObjectStore, dataset: str, cell: str, date: str) -> str:
    """Write the rows to `embeddings/<dataset>/cell=<cell>/date=<date>/part-0.parquet`; its URI."""
    for column, value in (("dataset", dataset), ("cell", cell), ("date", date)):
        if column in table.column_names and table.num_rows:
            values = set(table.column(column).to_pylist())
            if values != {value}:
                found = sorted(map(str, values))
                raise ValueError(f"export of {column}={value!r} got rows with {column} in {found}")
    key = export_key(dataset, cell, date)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / PART_NAME
        pq.write_table(table, local, compression="zstd")
        return store.put(local, key)
