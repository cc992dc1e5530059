"""The `dinov3_embeddings` Lance table: partition-exact writes and its ANN index.

Rows are written per (dataset, cell, date) with the project's single-commit `replace_partition`,
so a rerun leaves exactly that partition's new vectors. The ANN index is IVF_HNSW_SQ on the
cosine distance of `vector` (the vectors are unit length), searched with `refine_factor(10)`
exact re-ranking, which is what keeps its recall near 1 (figures in the README and
bench/embeddings.py; they depend on the query set, so both are stated there). An index is only
worth having once the table is big:
below `min_rows` a flat scan is exact and takes milliseconds, and IVF's k-means needs enough rows
per partition to train, so small tables are left unindexed on purpose.

After later writes the index is refreshed incrementally (`optimize_indices`, which adds a delta
segment for unindexed rows) and rebuilt when deltas pile up or the table more than doubled since
the last build, because centroids trained on a small sample no longer fit.
"""

from __future__ import annotations

import logging
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
ROWS_PER_PARTITION = 25_000  # HNSW graph per IVF partition; queries probe up to 20 partitions
MAX_DELTA_SEGMENTS = 8
REFINE_FACTOR = 10  # what readers should pass to `.refine_factor()` for exact re-ranking


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


def _build(table: object, rows: int) -> str:
    from lancedb.index import HnswSq

    partitions = max(1, rows // ROWS_PER_PARTITION)
    table.create_index(  # type: ignore[attr-defined]
        VECTOR_COLUMN, config=HnswSq(distance_type="cosine", num_partitions=partitions)
    )
    return f"IVF_HNSW_SQ (cosine, {partitions} partition(s))"


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
            kind = _build(table, rows)
            return f"built {kind} on {rows} rows"
        stats = table.index_stats(idx.name)  # type: ignore[attr-defined]
        unindexed = int(stats.num_unindexed_rows) if stats else rows
        indexed = int(stats.num_indexed_rows) if stats else 0
        segments = int(stats.num_indices) if stats and stats.num_indices else 1
        if unindexed == 0:
            return f"index up to date ({indexed} rows indexed)"
        if unindexed > indexed or segments >= MAX_DELTA_SEGMENTS:
            log.info("rebuilding the ANN index: %d unindexed of %d rows", unindexed, rows)
            kind = _build(table, rows)
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
