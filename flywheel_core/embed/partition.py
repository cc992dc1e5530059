"""One partition's embedding run, end to end: tiles in, vectors in Lance and Parquet, QA out.

Kept out of the Dagster asset so that the flywheel's VHR chips and any registered raster dataset
go through the same steps, and so the whole run is testable without Dagster. Tiles stream from
Lance in chunks (a partition is never held in memory as pixels, only as vectors and thumbnails),
the Lance partition is replaced in one commit, the Parquet export is overwritten at its fixed
key, QA reads that export back through DuckDB, and the ANN index is brought up to date last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import lancedb
import numpy as np
import pyarrow as pa

from flywheel_core.embed.dinov3 import DinoModel
from flywheel_core.embed.embedder import embed_pixels, embedding_table, tile_pixels
from flywheel_core.embed.export import export_parquet
from flywheel_core.embed.patches import PATCH_TABLE, patch_schema, patch_table
from flywheel_core.embed.preview import thumbnail
from flywheel_core.embed.qa import qa_metrics
from flywheel_core.embed.schema import embedding_schema
from flywheel_core.embed.table import DEFAULT_MIN_ROWS, ensure_ann_index, write_embeddings
from flywheel_core.store.lance_tables import connect, partition_filter, replace_partition
from flywheel_core.store.objects import ObjectStore

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class PartitionEmbedding:
    rows: int
    expected: int
    lance_version: int
    export_uri: str
    index_status: str
    qa: dict[str, Any]
    seconds_embedding: float
    vectors: np.ndarray  # (N, D) CLS vectors, for the preview
    thumbs: list[np.ndarray] = field(default_factory=list)
    places: list[tuple[int, int]] = field(default_factory=list)
    patch_rows: int = 0

    @property
    def tiles_per_second(self) -> float:
        return self.rows / self.seconds_embedding if self.seconds_embedding > 0 else 0.0


def tile_batches(
    db: lancedb.DBConnection, table_name: str, where: str, chunk: int
) -> tuple[int, Iterator[list[dict[str, Any]]]]:
    """(row count, chunks of tile rows as dicts) of a Lance table's filtered rows."""
    if table_name not in db.table_names():
        raise FileNotFoundError(f"Lance table {table_name!r} does not exist: materialize it first")
    table = db.open_table(table_name)
    total = table.count_rows(where)

    def chunks() -> Iterator[list[dict[str, Any]]]:
        pending: list[dict[str, Any]] = []
        reader = table.search().where(where).limit(None).to_batches(batch_size=chunk)
        for batch in reader:
            pending.extend(batch.to_pylist())
            while len(pending) >= chunk:
                yield pending[:chunk]
                pending = pending[chunk:]
        if pending:
            yield pending

    return total, chunks()


def embed_partition(
    dino: DinoModel,
    chunks: Iterator[list[dict[str, Any]]],
    expected: int,
    *,
    dataset: str,
    cell: str,
    date: str,
    lancedb_uri: str,
    store: ObjectStore,
    batch_size: int = 16,
    patch_vectors: bool = False,
    min_index_rows: int = DEFAULT_MIN_ROWS,
    progress: Progress | None = None,
) -> PartitionEmbedding:
    """Embed the partition's tiles and write, export, check and index them."""
    say = progress or log.info
    stamp = datetime.now(UTC)
    tables: list[pa.Table] = []
    patches: list[pa.Table] = []
    thumbs: list[np.ndarray] = []
    places: list[tuple[int, int]] = []
    done, seconds = 0, 0.0
    for rows in chunks:
        start = time.perf_counter()
        images = [tile_pixels(r) for r in rows]  # decoded once: for the model and the preview
        out = embed_pixels(dino, images, batch_size, patch_vectors)
        seconds += time.perf_counter() - start
        tables.append(embedding_table(dino, rows, out, dataset, stamp))
        if patch_vectors:
            patches.append(patch_table(dino, rows, out, dataset, stamp))
        thumbs.extend(thumbnail(image) for image in images)
        places.extend((int(r.get("row_off") or 0), int(r.get("col_off") or 0)) for r in rows)
        done += len(rows)
        rate = done / seconds if seconds else 0.0
        say(f"embedded {done}/{expected} tiles of {dataset} {cell}|{date} ({rate:.1f} tiles/s)")
    table = pa.concat_tables(tables) if tables else embedding_schema(dino.dim).empty_table()
    partition = {"dataset": dataset, "cell": cell, "date": date}
    result = write_embeddings(lancedb_uri, table, partition)
    patch_rows = _write_patches(lancedb_uri, dino, patches, partition, patch_vectors)
    uri = export_parquet(table, store, dataset, cell, date)
    say(f"exported {table.num_rows} vectors to {uri}")
    with duckdb.connect() as con:
        qa = qa_metrics(con, uri, expected)
    status = ensure_ann_index(lancedb_uri, min_index_rows)
    say(f"ANN index: {status}")
    vectors = (
        np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32).reshape(
            table.num_rows, dino.dim
        )
        if table.num_rows
        else np.zeros((0, dino.dim), dtype=np.float32)
    )
    return PartitionEmbedding(
        rows=table.num_rows,
        expected=expected,
        lance_version=result.version,
        export_uri=uri,
        index_status=status,
        qa=qa,
        seconds_embedding=seconds,
        vectors=vectors,
        thumbs=thumbs,
        places=places,
        patch_rows=patch_rows,
    )


def _write_patches(
    lancedb_uri: str,
    dino: DinoModel,
    patches: list[pa.Table],
    partition: dict[str, str],
    wanted: bool,
) -> int:
    """Replace the partition's patch vectors; a run without them clears an earlier run's."""
    db = connect(lancedb_uri)
    if not wanted and PATCH_TABLE not in db.table_names():
        return 0
    if not wanted:
        existing = db.open_table(PATCH_TABLE)
        stale = existing.count_rows(partition_filter(partition))
        if not stale:
            return 0
        log.info("clearing %d patch vectors of an earlier run in %s", stale, partition)
        replace_partition(db, PATCH_TABLE, existing.schema.empty_table(), partition)
        return 0
    table = pa.concat_tables(patches) if patches else patch_schema(dino.dim).empty_table()
    replace_partition(db, PATCH_TABLE, table, partition)
    return table.num_rows
