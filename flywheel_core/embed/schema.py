"""The shape of an embedding row, shared by the writer, the Parquet export, QA and search.

One row per tile (a flywheel VHR chip or a tile of a registered raster dataset). `vector` is the
CLS token and `mean_patch` the mean of the patch tokens, both L2-normalised float32 of the
model's width, so cosine distance is 1 - dot product and the same rows serve LanceDB, DuckDB vss
and numpy. `trained` is False when the model had random weights (the offline tiny config): such
vectors are for plumbing, never for conclusions, and every reader can tell.
"""

from __future__ import annotations

import pyarrow as pa

EMBEDDINGS_TABLE = "dinov3_embeddings"
VECTOR_COLUMNS = ("vector", "mean_patch")


def embedding_schema(dim: int) -> pa.Schema:
    """Arrow schema of `dinov3_embeddings` for vectors of width `dim`."""
    vec = pa.list_(pa.float32(), dim)
    return pa.schema(
        [
            ("uid", pa.string()),  # = the tile's uid (vhr_chips.uid for the flywheel chips)
            ("dataset", pa.string()),  # "vhr_chips" or a registered raster dataset id
            ("tile_id", pa.string()),
            ("cell", pa.string()),  # S2 token at the partition level
            ("date", pa.string()),  # ISO date of the partition
            ("footprint", pa.binary()),  # WKB polygon, EPSG:4326
            ("center_lon", pa.float64()),
            ("center_lat", pa.float64()),
            ("vector", vec),
            ("mean_patch", vec),
            ("norm", pa.float32()),  # the CLS norm before normalisation (0 flags a dead input)
            ("model_id", pa.string()),
            ("trained", pa.bool_()),
            ("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )
