"""Patch-level DINOv3 vectors: one row per patch token, for objects smaller than a chip.

A rooftop PV array covers a few of a chip's 14 x 14 patches (about 5 m each for a 256 px chip at
0.3 m), so the chip's CLS vector barely moves with it; its patch vectors do. They are optional
(196 rows per chip for the real models) and live in their own table, `dinov3_patch_embeddings`,
keyed `<tile uid>#p<row>_<col>` and partitioned like the chip vectors. Each patch carries its
footprint in EPSG:4326, projected through the tile's own CRS and transform when the row has them
(flywheel chips and raster tiles do); otherwise it is interpolated inside the tile's footprint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from shapely import wkb
from shapely.geometry import box

from flywheel_core.embed.dinov3 import DinoModel
from flywheel_core.embed.embedder import EmbeddingOutput
from flywheel_core.geo.projection import reproject

PATCH_TABLE = "dinov3_patch_embeddings"


def patch_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("uid", pa.string()),
            ("tile_uid", pa.string()),
            ("dataset", pa.string()),
            ("cell", pa.string()),
            ("date", pa.string()),
            ("patch_row", pa.int16()),
            ("patch_col", pa.int16()),
            ("footprint", pa.binary()),  # WKB polygon, EPSG:4326
            ("vector", pa.list_(pa.float32(), dim)),
            ("model_id", pa.string()),
            ("trained", pa.bool_()),
            ("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def _patch_boxes(row: dict[str, Any], grid: int) -> list[bytes | None]:
    """Footprints of a grid x grid split of the tile, row-major, as EPSG:4326 WKB."""
    out: list[bytes | None] = []
    if row.get("transform") and row.get("crs"):
        a, b, c, d, e, f = row["transform"]
        sx, sy = row["width"] / grid, row["height"] / grid
        for i in range(grid):
            for j in range(grid):
                xs = [c + a * (j + dj) * sx + b * (i + di) * sy for di in (0, 1) for dj in (0, 1)]
                ys = [f + d * (j + dj) * sx + e * (i + di) * sy for di in (0, 1) for dj in (0, 1)]
                local = box(min(xs), min(ys), max(xs), max(ys))
                out.append(wkb.dumps(reproject(local, row["crs"], 4326)))
        return out
    if row.get("footprint"):
        minx, miny, maxx, maxy = wkb.loads(row["footprint"]).bounds
        dx, dy = (maxx - minx) / grid, (maxy - miny) / grid
        for i in range(grid):
            for j in range(grid):
                top = maxy - i * dy
                out.append(wkb.dumps(box(minx + j * dx, top - dy, minx + (j + 1) * dx, top)))
        return out
    return [None for _ in range(grid * grid)]


def patch_table(
    dino: DinoModel,
    rows: list[dict[str, Any]],
    out: EmbeddingOutput,
    dataset: str,
    created_at: datetime | None = None,
) -> pa.Table:
    """One row per patch token of every tile (requires `out.patches`)."""
    schema = patch_schema(dino.dim)
    if not rows:
        return schema.empty_table()
    if out.patches is None:
        raise ValueError("patch vectors were not computed: embed with patch_vectors=True")
    p = out.patches.shape[1]
    grid = round(p**0.5)
    if grid * grid != p:
        raise ValueError(f"{p} patches do not form a square grid")
    stamp = created_at or datetime.now(UTC)
    records: dict[str, list[Any]] = {name: [] for name in schema.names if name != "vector"}
    for row in rows:
        boxes = _patch_boxes(row, grid)
        for k in range(p):
            i, j = divmod(k, grid)
            records["uid"].append(f"{row['uid']}#p{i:02d}_{j:02d}")
            records["tile_uid"].append(row["uid"])
            records["dataset"].append(dataset)
            records["cell"].append(row.get("cell"))
            records["date"].append(row.get("date"))
            records["patch_row"].append(i)
            records["patch_col"].append(j)
            records["footprint"].append(boxes[k])
            records["model_id"].append(dino.model_id)
            records["trained"].append(dino.trained)
            records["created_at"].append(stamp)
    arrays = {name: pa.array(values, schema.field(name).type) for name, values in records.items()}
    flat = np.ascontiguousarray(out.patches, dtype=np.float32).ravel()
    arrays["vector"] = pa.FixedSizeListArray.from_arrays(
        pa.array(flat), type=schema.field("vector").type
    )
    return pa.table({name: arrays[name] for name in schema.names}, schema=schema)
