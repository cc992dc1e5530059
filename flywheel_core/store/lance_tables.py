"""Partition-exact writes to LanceDB tables.

A partition is rewritten with a single `merge_insert` that updates matching rows, inserts new ones
and deletes the partition's rows the new data no longer has. That is one Lance commit, so a rerun
never duplicates or loses rows, other partitions are untouched, and a write that fails midway
(even while the data is still streaming in) leaves the previous version as it was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import lancedb
import pyarrow as pa
import pyarrow.compute as pc

from flywheel_core.errors import FlywheelError, reaching
from flywheel_core.faults import fault_point
from flywheel_core.lake.quote import sql_and

log = logging.getLogger(__name__)

KEY_COLUMN = "uid"
PARTITION_COLUMNS = ("cell", "date")

# Lance's default (v2.1+) compresses large binary values, which makes every random chip read pay
# for decompression: about 2.5x slower takes for ~2x less disk (bench/chip_read.py). Chips are
# read many times per write, so pixel columns are stored uncompressed.
UNCOMPRESSED = {"lance-encoding:compression": "none"}


def pixels_field(name: str) -> pa.Field:
    """A binary column of raw pixel bytes, stored for fast random access."""
    return pa.field(name, pa.binary(), metadata=UNCOMPRESSED)


class PartitionMismatchError(FlywheelError, ValueError):
    """Rows that claim another partition than the one being written, or a bad key column."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    rows: int
    inserted: int
    updated: int
    deleted: int


def storage_options(uri: str) -> dict[str, str] | None:
    """Object-store options for an s3:// URI, from the environment (never from config files)."""
    if not uri.startswith("s3://"):
        return None
    opts = {"region": os.environ.get("AWS_REGION", "us-east-1")}
    for env, key in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ):
        if os.environ.get(env):
            opts[key] = os.environ[env]
    endpoint = os.environ.get("FLYWHEEL_S3_ENDPOINT")
    if endpoint:
        use_ssl = os.environ.get("FLYWHEEL_S3_USE_SSL", "true").lower() not in ("0", "false", "no")
        scheme = "https" if use_ssl else "http"
        opts["endpoint"] = endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
        opts["allow_http"] = "false" if use_ssl else "true"
        opts["virtual_hosted_style_request"] = "false"
    return opts


def connect(uri: str) -> lancedb.DBConnection:
    if not uri.startswith(("s3://", "gs://", "az://", "memory://")):
        os.makedirs(uri, exist_ok=True)
    with reaching(f"the LanceDB store {uri}"):  # a closed endpoint: one line, not a retry dump
        return lancedb.connect(uri, storage_options=storage_options(uri))


def partition_filter(partition: Mapping[str, str]) -> str:
    """SQL predicate selecting exactly one partition's rows."""
    if not partition:
        return ""
    return sql_and({column: str(value) for column, value in partition.items()})


def _check_batch(batch: pa.RecordBatch, partition: Mapping[str, str], seen: set[str]) -> None:
    names = batch.schema.names
    if KEY_COLUMN not in names:
        raise PartitionMismatchError(f"rows need a '{KEY_COLUMN}' key column; got {names}")
    for column, value in partition.items():
        if column not in names:
            raise PartitionMismatchError(f"rows need a '{column}' partition column; got {names}")
        wrong = pc.sum(pc.not_equal(batch.column(column), pa.scalar(value))).as_py() or 0
        nulls = batch.column(column).null_count
        if wrong or nulls:
            raise PartitionMismatchError(
                f"{wrong + nulls} row(s) have {column} != {value!r}: a partition write may only "
                "carry that partition's rows"
            )
    keys = batch.column(KEY_COLUMN).to_pylist()
    if None in keys:
        raise PartitionMismatchError(f"'{KEY_COLUMN}' must not be null")
    before = len(seen)
    seen.update(keys)
    if len(seen) != before + len(keys):
        raise PartitionMismatchError(f"duplicate '{KEY_COLUMN}' values in the partition's rows")


def _validated(
    data: pa.Table | pa.RecordBatchReader, partition: Mapping[str, str], errors: list[Exception]
) -> pa.RecordBatchReader:
    """Stream the data through partition and key checks; a bad batch aborts the whole write.

    Errors raised inside the stream reach the caller wrapped by Arrow's C interface, so the
    original exception is also kept in `errors` to be re-raised as itself.
    """
    source = data.to_reader() if isinstance(data, pa.Table) else data
    seen: set[str] = set()

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in source:
                _check_batch(batch, partition, seen)
                yield batch
                fault_point("lance.partition.streaming")
        except Exception as exc:
            errors.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(source.schema, batches())


def replace_partition(
    db: lancedb.DBConnection,
    table_name: str,
    data: pa.Table | pa.RecordBatchReader,
    partition: Mapping[str, str],
) -> WriteResult:
    """Make `table_name`'s rows of `partition` exactly `data`, in one commit."""
    schema = data.schema
    if table_name not in db.table_names():
        db.create_table(table_name, schema=schema)
        log.info("created Lance table %s", table_name)
    table = db.open_table(table_name)
    merge = (
        table.merge_insert(KEY_COLUMN)
        .when_matched_update_all()
        .when_not_matched_insert_all()
        # An unpartitioned table is replaced whole; a partitioned one only inside its filter.
        .when_not_matched_by_source_delete(partition_filter(partition) if partition else None)
    )
    fault_point("lance.partition.before_write")
    errors: list[Exception] = []
    try:
        outcome = merge.execute(_validated(data, partition, errors))
    except Exception as exc:
        if errors:
            raise errors[0] from exc
        raise
    fault_point("lance.partition.after_commit")
    log.info(
        "%s[%s]: %d rows (+%d inserted, %d updated, -%d deleted) at version %d",
        table_name,
        partition_filter(partition) or "all",
        outcome.num_rows,
        outcome.num_inserted_rows,
        outcome.num_updated_rows,
        outcome.num_deleted_rows,
        outcome.version,
    )
    return WriteResult(
        table=table_name,
        version=outcome.version,
        rows=outcome.num_rows,
        inserted=outcome.num_inserted_rows,
        updated=outcome.num_updated_rows,
        deleted=outcome.num_deleted_rows,
    )


def read_partitions(
    db: lancedb.DBConnection,
    table_name: str,
    partitions: Sequence[Mapping[str, str]],
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows of the given partitions (all rows when `partitions` is empty)."""
    table = db.open_table(table_name)
    query = table.search()
    if partitions:
        query = query.where(" OR ".join(f"({partition_filter(p)})" for p in partitions))
    if columns:
        query = query.select(columns)
    return query.limit(None).to_arrow()
