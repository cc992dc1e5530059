"""Embed a registered raster dataset's tiles with the same partition run as the flywheel's chips.

A dataset's tiles are grouped by their (S2 cell, date) so its vectors land in the same
`dinov3_embeddings` table and the same `embeddings/<dataset>/cell=/date=/` export layout as the
VHR chips, and search, QA and the vss index treat both alike. Only a ready dataset is embedded:
a failed one may have missing or stale tiles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import lancedb

from flywheel_core.embed.dinov3 import DinoModel
from flywheel_core.embed.partition import PartitionEmbedding, embed_partition, tile_batches
from flywheel_core.embed.table import DEFAULT_MIN_ROWS
from flywheel_core.errors import FlywheelError
from flywheel_core.rasters.registry import KIND_FILE, RasterDataset
from flywheel_core.store.lance_tables import connect, partition_filter
from flywheel_core.store.objects import ObjectStore

log = logging.getLogger(__name__)


class DatasetNotReadyError(FlywheelError, RuntimeError):
    pass


@dataclass(frozen=True)
class DatasetEmbedding:
    dataset_id: str
    partitions: dict[tuple[str, str], PartitionEmbedding]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions.values())

    @property
    def qa_passed(self) -> bool:
        return all(
            p.qa["coverage"] == 1.0 and not p.qa["nan_vectors"] and not p.qa["zero_vectors"]
            for p in self.partitions.values()
        )


def tile_partitions(db: lancedb.DBConnection, ds: RasterDataset) -> list[tuple[str, str]]:
    """The distinct (cell, date) of a dataset's tiles, sorted."""
    table = db.open_table(ds.lance_table or "raster_tiles")
    keys = (
        table.search()
        .where(partition_filter({"dataset": ds.dataset_id}))
        .select(["cell", "date"])
        .limit(None)
        .to_arrow()
    )
    return sorted(set(zip(keys["cell"].to_pylist(), keys["date"].to_pylist(), strict=True)))


def embed_dataset(
    dino: DinoModel,
    ds: RasterDataset,
    *,
    lancedb_uri: str,
    store: ObjectStore,
    batch_size: int = 16,
    min_index_rows: int = DEFAULT_MIN_ROWS,
    progress: Callable[[str], None] | None = None,
) -> DatasetEmbedding:
    """Embed every (cell, date) partition of a ready dataset; each run replaces its partition."""
    if not ds.ready:
        raise DatasetNotReadyError(
            f"raster dataset {ds.dataset_id} is {ds.status}, not ready: fix and re-register it "
            "(`flywheel rasters show` lists the failed checks) before embedding"
        )
    if ds.kind != KIND_FILE:
        raise DatasetNotReadyError(
            f"{ds.dataset_id} is a {ds.kind}: the flywheel's VHR chips are embedded by the "
            "dinov3_embeddings asset, per cell and date"
        )
    db = connect(lancedb_uri)
    table_name = ds.lance_table or "raster_tiles"
    parts = tile_partitions(db, ds)
    say = progress or log.info
    say(f"{ds.dataset_id}: {ds.tile_count} tiles in {len(parts)} cell/date partitions")
    done: dict[tuple[str, str], PartitionEmbedding] = {}
    for cell, day in parts:
        where = partition_filter({"dataset": ds.dataset_id, "cell": cell, "date": day})
        expected, chunks = tile_batches(db, table_name, where, 4 * batch_size)
        done[(cell, day)] = embed_partition(
            dino,
            chunks,
            expected,
            dataset=ds.dataset_id,
            cell=cell,
            date=day,
            lancedb_uri=lancedb_uri,
            store=store,
            batch_size=batch_size,
            min_index_rows=min_index_rows,
            progress=say,
        )
    return DatasetEmbedding(ds.dataset_id, done)
