"""The `dinov3_embeddings` Lance table: partition-exact writes and its ANN index.

Rows are written per (dataset, cell, date) with the project's single-commit `replace_partition`,
so a rerun leaves exactly that partition's new vectors. The ANN index is IVF_FLAT on the
cosine distance of `vector` (the vectors are unit length) with about sqrt(n) partitions, searched
with `default_nprobes(n)` probes. IVF_FLAT keeps the full float32 vectors, so its distances are
exact within the probed partitions and no `refine_factor` re-ranking is needed. It replaced
IVF_HNSW_SQ (n / 25,000 partitions) because bench/embeddings.py measured, on the same 100k x 384
vectors and queries, IVF_FLAT building an order of magnitude faster and reaching recall@10 >= 0.95
at a lower single-query latency, where IVF_HNSW_SQ needed an explicit `ef` plus refine re-ranking
to get there (its default search width, 1.5 k, gave ~0.78); the figures are in that bench's
output and the README. An index is only worth having once the table is big:
below `min_rows` a flat scan is exact and takes milliseconds, and IVF's k-means needs enough rows
per partition to train, so small tables are left unindexed on purpose.

After later writes the index is refreshed incrementally (`optimize_indices`, which adds a delta
segment for unindexed rows) and rebuilt when deltas pile up or the table more than doubled since
the last build, because centroids trained on a small sample no longer fit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import pyarrow as pa

from flywheel_core.embed.schema import EMBEDDINGS_TABLE
from flywheel_core.errors import FlywheelError
from flywheel_core.lake.quote import sql_and, sql_in
from flywheel_core.store.lance_tables import (
    WriteResult,
    connect,
    partition_filter,
    replace_partition,
)

log = logging.getLogger(__name__)

PARTITION_KEYS = ("dataset", "cell", "date")
VECTOR_COLUMN = "vector"
DEFAULT_MIN_ROWS = 10_000
MAX_DELTA_SEGMENTS = 8
REFINE_FACTOR = 10  # exact re-ranking for quantised indexes (IVF_PQ, IVF_HNSW_SQ); not IVF_FLAT
PROBE_FRACTION = 0.05  # nprobes / partitions; measured on the bench (recall@10 >= 0.95)
MIN_NPROBES = 8


class EmbeddingTableError(FlywheelError, ValueError):
    """A write that does not fit the embeddings table (partition keys, vector width)."""


def _vector_width(schema: pa.Schema) -> int | None:
    if VECTOR_COLUMN not in schema.names:
        return None
    typ = schema.field(VECTOR_COLUMN).type
    return int(typ.list_size) if pa.types.is_fixed_size_list(typ) else None


def write_embeddings(
    lancedb_uri: str, table: pa.Table, partition: Mapping[str, str]
) -> WriteResult:
    """Make the (dataset, cell, date) partition of `dinov3_embeddings` exactly `table` (1 commit).

    A table that already holds vectors of another width (another model) is refused: mixing
    widths is impossible in one column, and the error says how to move on.
    """
    missing = [k for k in PARTITION_KEYS if not partition.get(k)]
    if missing or set(partition) - set(PARTITION_KEYS):
        raise EmbeddingTableError(
            f"an embeddings partition is {{dataset, cell, date}}; got {dict(partition)}"
        )
    width = _vector_width(table.schema)
    if width is None:
        raise EmbeddingTableError(
            f"rows need a fixed-size float32 list column {VECTOR_COLUMN!r}; got {table.schema}"
        )
    db = connect(lancedb_uri)
    if EMBEDDINGS_TABLE in db.table_names():
        existing = db.open_table(EMBEDDINGS_TABLE)
        stored = _vector_width(existing.schema)
        if stored is not None and stored != width:
            raise EmbeddingTableError(
                f"{EMBEDDINGS_TABLE} under {lancedb_uri} holds {stored}-d vectors; these are "
                f"{width}-d (another model). Embed with the same model, or point "
                "FLYWHEEL_LANCEDB_URI elsewhere / drop the table to start over with this one"
            )
        models = set(table.column("model_id").to_pylist()) if table.num_rows else set()
        if models and existing.count_rows() > 0:
            elsewhere = f"NOT ({partition_filter(partition)})"
            other_model = f"NOT ({sql_in('model_id', sorted(models))})"
            others = (
                existing.search()
                .where(sql_and(elsewhere, other_model))
                .select(["model_id"])
                .limit(1)
                .to_arrow()
            )
            if others.num_rows:
                log.warning(
                    "%s already holds vectors of model %s; these are from %s: neighbours across "
                    "models are meaningless, re-embed the other partitions with one model",
                    EMBEDDINGS_TABLE,
                    others.column("model_id")[0].as_py(),
                    ", ".join(sorted(models)),
                )
    return replace_partition(db, EMBEDDINGS_TABLE, table, dict(partition))


def _vector_index(table: object) -> object | None:
    for idx in table.list_indices():  # type: ignore[attr-defined]
        if list(idx.columns) == [VECTOR_COLUMN]:
            return idx
    return None


def ann_partitions(rows: int) -> int:
    """About sqrt(n) IVF partitions: the usual balance of centroid scan against partition scan."""
    return max(1, round(math.sqrt(rows)))


def default_nprobes(rows: int) -> int:
    """Partitions a query probes on an index built over `rows` rows (see PROBE_FRACTION)."""
    partitions = ann_partitions(rows)
    return min(partitions, max(MIN_NPROBES, math.ceil(partitions * PROBE_FRACTION)))


def build_ann_index(table: object, rows: int) -> str:
    """Build (or replace) the cosine IVF_FLAT index on `vector`; says what was built."""
    from lancedb.index import IvfFlat

    partitions = ann_partitions(rows)
    table.create_index(  # type: ignore[attr-defined]
        VECTOR_COLUMN,
        config=IvfFlat(distance_type="cosine", num_partitions=partitions),
        replace=True,
    )
    return f"IVF_FLAT (cosine, {partitions} partition(s), {default_nprobes(rows)} probes)"


def ensure_ann_index(lancedb_uri: str, min_rows: int = DEFAULT_MIN_ROWS) -> str:
    """Build, refresh or deliberately skip the ANN index on `vector`; says which happened."""
    db = connect(lancedb_uri)
    if EMBEDDINGS_TABLE not in db.table_names():
        return f"no index: table {EMBEDDINGS_TABLE} does not exist yet"
    table = db.open_table(EMBEDDINGS_TABLE)
    rows = table.count_rows()
    idx = _vector_index(table)
    try:
        if idx is None:
            if rows < min_rows:
                return (
                    f"no index (exact search): {rows} rows < {min_rows}, where a flat scan is "
                    "exact and fast and IVF partitions could not train"
                )
            log.info("building the ANN index on %s (%d rows)", EMBEDDINGS_TABLE, rows)
            kind = build_ann_index(table, rows)
            return f"built {kind} on {rows} rows"
        stats = table.index_stats(idx.name)  # type: ignore[attr-defined]
        unindexed = int(stats.num_unindexed_rows) if stats else rows
        indexed = int(stats.num_indexed_rows) if stats else 0
        segments = int(stats.num_indices) if stats and stats.num_indices else 1
        if unindexed == 0:
            return f"index up to date ({indexed} rows indexed)"
        if unindexed > indexed or segments >= MAX_DELTA_SEGMENTS:
            log.info("rebuilding the ANN index: %d unindexed of %d rows", unindexed, rows)
            kind = build_ann_index(table, rows)
            return f"rebuilt {kind} on {rows} rows ({unindexed} were unindexed)"
        table.to_lance().optimize.optimize_indices(index_names=[idx.name])  # type: ignore[attr-defined]
        return f"index refreshed: {unindexed} new rows added ({rows} rows)"
    except Exception as exc:
        if "conflict" in str(exc).lower() or "retryable" in str(exc).lower():
            log.warning("ANN index update skipped (concurrent commit): %s", exc)
            return (
                f"index update skipped: another writer committed first ({exc}); "
                "rows stay searchable (unindexed rows are scanned)"
            )
        raise
