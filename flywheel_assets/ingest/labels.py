"""`seed_labels`: the active labels of a cell as of its date, frozen per partition.

DESIGN.md keeps seed labels in memory; here they are also written to Lance, because Dagster hands
them to other processes anyway, and a frozen copy with the DuckLake snapshot id makes every
downstream step of the partition reproducible.
"""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, MetadataValue, Output, asset
from shapely import wkb

from flywheel_assets.metadata import preview_metadata
from flywheel_assets.partitions import SETTINGS, cell_date
from flywheel_assets.resources import ImageryResource
from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.lake.labels import current_snapshot_id, labels_for_cell
from flywheel_core.partitions import CellDate
from flywheel_core.preview import vector_map
from flywheel_resources.ducklake import DuckLakeResource


def with_partition_columns(labels: pa.Table, part: CellDate, snapshot_id: int) -> pa.Table:
    n = labels.num_rows
    uid = pc.binary_join_element_wise(
        pa.array([f"{part.key}|"] * n, pa.string()), labels["label_id"], ""
    )
    return (
        labels.append_column("uid", uid)
        .append_column("cell", pa.array([part.cell] * n, pa.string()))
        .append_column("date", pa.array([part.date.isoformat()] * n, pa.string()))
        .append_column("ducklake_snapshot_id", pa.array([snapshot_id] * n, pa.int64()))
    )


@asset(
    partitions_def=cell_date,
    io_manager_key="lance_io",
    group_name="ingest",
    kinds={"ducklake", "lancedb"},
)
def seed_labels(
    context: AssetExecutionContext, ducklake: DuckLakeResource, imagery: ImageryResource
) -> Output[pa.Table]:
    """Active labels whose footprint intersects the cell, installed by the partition date."""
    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    with ducklake.connect() as con:
        snapshot = current_snapshot_id(con)
        labels = labels_for_cell(con, part.cell, part.date)
    table = with_partition_columns(labels, part, snapshot)
    kinds = pc.value_counts(labels["geometry_type"]).to_pylist() if labels.num_rows else []
    if labels.num_rows == 0:
        context.log.warning(
            f"no active labels intersect cell {part.cell} as of {part.date}: "
            "the partition is empty "
            "(import labels with `flywheel labels import FILE`)"
        )
    shapes = [wkb.loads(g) for g in labels["prompt_geometry"].to_pylist()]
    img = vector_map(cell_polygon(part.cell), shapes)
    return Output(
        table,
        metadata={
            "labels": labels.num_rows,
            "by_geometry_type": MetadataValue.json({k["values"]: k["counts"] for k in kinds}),
            "ducklake_snapshot_id": snapshot,
            **preview_metadata(img, imagery.previews_dir, "seed_labels", part),
        },
    )
