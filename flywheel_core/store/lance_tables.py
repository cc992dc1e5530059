"""Partition-exact writes to LanceDB tables.

A partition is rewritten by streaming its new rows into fresh fragment files, then ONE Lance
commit (an `Update`) that adds them and deletes the partition's old rows. So a rerun never
duplicates or loses rows, other partitions' fragments are untouched, a reader sees the old
partition or the new one, and a write that fails midway (even while the data is still streaming
in) leaves the previous version as it was: the written files stay unreferenced.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import lance
import lancedb
import pyarrow as pa
import pyarrow.compute as pc
from lance import LanceOperation

from flywheel_core.errors import FlywheelError, reaching
from flywheel_core.faults import fault_point
from flywheel_core.lake.quote import sql_and

log = logging.getLogger(__name__)

KEY_COLUMN = "uid"
PARTITION_COLUMNS = ("cell", "date")
COMMIT_ATTEMPTS = 5

# Lance's default (v2.1+) compresses large binary values, which makes every random chip read pay
# for decompression: about 2.5x slower takes for ~2x less disk (bench/chip_read.py). Chips are
# read many times per write, so pixel columns are stored uncompressed.
UNCOMPRESSED = {"lance-encoding:compression": "none"}


def pixels_field(name: str) -> pa.Field:
    """A binary column of raw pixel bytes, stored for fast random access."""
    return pa.field(name, pa.binary(), metadata=UNCOMPRESSED)


class PartitionMismatchError(FlywheelError, ValueError):
    """Rows that claim another partition than the one being written, a bad key column, or
    columns that are not the table's (a fragment missing a column would read back as nulls)."""


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
    data: pa.Table | pa.RecordBatchReader,
    partition: Mapping[str, str],
    errors: list[Exception],
    seen: set[str],
    schema: pa.Schema,
) -> pa.RecordBatchReader:
    """Stream the data through partition and key checks; a bad batch aborts the whole write.

    Errors raised inside the stream reach the caller wrapped by Arrow's C interface, so the
    original exception is also kept in `errors` to be re-raised as itself. The keys streamed
    through are collected in `seen` (duplicates are refused, and the write counts them). Batches
    with the table's columns are cast to its schema (an empty output's columns may be typed null).
    """
    source = data.to_reader() if isinstance(data, pa.Table) else data
    cast = set(source.schema.names) == set(schema.names) and not source.schema.equals(schema)
    out = schema if cast else source.schema

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in source:
                _check_batch(batch, partition, seen)
                yield batch.select(schema.names).cast(schema) if cast else batch
                fault_point("lance.partition.streaming")
        except Exception as exc:
            errors.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(out, batches())


def replace_partition(
    db: lancedb.DBConnection,
    table_name: str,
    data: pa.Table | pa.RecordBatchReader,
    partition: Mapping[str, str],
) -> WriteResult:
    """Make `table_name`'s rows of `partition` exactly `data`, in one commit.

    The rows stream into new fragment files first (nothing buffered beyond Lance's page writer);
    then one `Update` commit adds those fragments and marks the partition's old rows deleted.
    `merge_insert` did the same in one commit but hash-joined the whole source in memory (about
    3.4x the partition's bytes, bench/partition_write.py); a partition is replaced whole, so
    there is nothing to join. Until the commit, readers see the previous version.
    """
    if table_name not in db.table_names():
        db.create_table(table_name, schema=data.schema)
        log.info("created Lance table %s", table_name)
    dataset = db.open_table(table_name).to_lance()
    _check_columns(data.schema, dataset.schema, table_name)
    fault_point("lance.partition.before_write")
    errors: list[Exception] = []
    new_keys: set[str] = set()
    try:
        fragments = lance.fragment.write_fragments(
            _validated(data, partition, errors, new_keys, dataset.schema),
            dataset,
            schema=dataset.schema,
        )
    except Exception as exc:
        if errors:
            raise errors[0] from exc
        raise
    committed, old_keys = _commit_swap(dataset, fragments, partition)
    fault_point("lance.partition.after_commit")
    kept = len(old_keys & new_keys)
    result = WriteResult(
        table=table_name,
        version=committed.version,
        rows=len(new_keys),
        inserted=len(new_keys) - kept,
        updated=kept,
        deleted=len(old_keys) - kept,
    )
    log.info(
        "%s[%s]: %d rows (+%d inserted, %d updated, -%d deleted) at version %d",
        table_name,
        partition_filter(partition) or "all",
        result.rows,
        result.inserted,
        result.updated,
        result.deleted,
        result.version,
    )
    return result


def _check_columns(data: pa.Schema, table: pa.Schema, table_name: str) -> None:
    missing, extra = set(table.names) - set(data.names), set(data.names) - set(table.names)
    if missing or extra:
        raise PartitionMismatchError(
            f"rows for {table_name} must have its columns: missing {sorted(missing)}, "
            f"unknown {sorted(extra)}"
        )


def _commit_swap(
    dataset: lance.LanceDataset,
    fragments: list[lance.FragmentMetadata],
    partition: Mapping[str, str],
) -> tuple[lance.LanceDataset, set[str]]:
    """Commit `fragments` in place of the partition's rows; returns the version and old keys.

    Lance rebases the commit over writers of other partitions (they touch other fragments). A
    writer that changed one of the same fragments meanwhile makes the commit conflict; then the
    deletions are worked out again on the newer version, and the written fragments are reused.
    """
    for attempt in range(COMMIT_ATTEMPTS):
        operation, old_keys = _swap_operation(dataset, fragments, partition)
        try:
            committed = lance.LanceDataset.commit(dataset, operation, read_version=dataset.version)
            return committed, old_keys
        except Exception:
            latest = dataset.checkout_version(dataset.latest_version)
            if attempt == COMMIT_ATTEMPTS - 1 or latest.version == dataset.version:
                raise
            log.info("partition commit raced version %d; retrying", latest.version)
            dataset = latest
    raise AssertionError("unreachable")


def _swap_operation(
    dataset: lance.LanceDataset,
    fragments: list[lance.FragmentMetadata],
    partition: Mapping[str, str],
) -> tuple[LanceOperation.Update, set[str]]:
    """The Update that deletes the partition's rows as of `dataset` and adds `fragments`.

    Only fragments holding the partition's rows are touched: they get a deletion file (or are
    dropped when nothing of them is left), so other partitions' fragments stay as they are.
    """
    where = partition_filter(partition)
    if not partition:
        removed = [f.fragment_id for f in dataset.get_fragments()]
        old = dataset.to_table(columns=[KEY_COLUMN])
        return _update(removed, [], fragments), set(old.column(KEY_COLUMN).to_pylist())
    old = dataset.to_table(columns=[KEY_COLUMN], filter=where, with_row_address=True)
    touched = sorted({int(a) >> 32 for a in old.column("_rowaddr").to_pylist()})
    removed, updated = [], []
    for fragment_id in touched:
        fragment = dataset.get_fragment(fragment_id)
        metadata = fragment.delete(where) if fragment is not None else None
        if metadata is None:
            removed.append(fragment_id)
        else:
            updated.append(metadata)
    return _update(removed, updated, fragments), set(old.column(KEY_COLUMN).to_pylist())


def _update(
    removed: list[int],
    updated: list[lance.FragmentMetadata],
    fragments: list[lance.FragmentMetadata],
) -> LanceOperation.Update:
    return LanceOperation.Update(
        removed_fragment_ids=removed, updated_fragments=updated, new_fragments=fragments
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
