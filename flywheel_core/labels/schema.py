"""The Arrow shape of a batch of labels, matching the lake's `labels` table column for column.

Importers, SAM and model proposals all build this schema, so one insert path serves every source
and a missing or renamed column fails before anything reaches the lake.
"""

from __future__ import annotations

import pyarrow as pa

SOURCE_KINDS = ("seed", "sam", "model", "human")
GEOMETRY_TYPES = ("point", "polygon")
STATUSES = ("active", "retracted")

LABELS_SCHEMA = pa.schema(
    [
        pa.field("label_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_kind", pa.string(), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("doi", pa.string()),
        pa.field("geometry", pa.binary(), nullable=False),
        pa.field("geometry_type", pa.string(), nullable=False),
        pa.field("prompt_geometry", pa.binary(), nullable=False),
        pa.field("area_m2", pa.float64()),
        pa.field("reported_area_m2", pa.float64()),
        pa.field("centroid_lon", pa.float64()),
        pa.field("centroid_lat", pa.float64()),
        pa.field("bbox_xmin", pa.float64()),
        pa.field("bbox_ymin", pa.float64()),
        pa.field("bbox_xmax", pa.float64()),
        pa.field("bbox_ymax", pa.float64()),
        pa.field("s2_level", pa.int32()),
        pa.field("s2_cell", pa.string()),
        pa.field("s2_cells", pa.list_(pa.string())),
        pa.field("h3_cell", pa.string()),
        pa.field("install_date", pa.date32()),
        pa.field("confidence", pa.float64()),
        pa.field("round", pa.int32()),
        pa.field("model_id", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("import_id", pa.string()),
        pa.field("created_at", pa.timestamp("us")),
        pa.field("properties", pa.string()),
    ]
)

LABEL_COLUMNS: tuple[str, ...] = tuple(LABELS_SCHEMA.names)


def empty_labels() -> pa.Table:
    return LABELS_SCHEMA.empty_table()
