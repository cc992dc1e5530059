"""The row layout of a tile, shared by the flywheel's VHR chips and registered raster datasets.

One layout for both means every reader (masks, MSI alignment, the DINOv3 embedder) handles a chip
of the flywheel and a tile of a user's raster the same way: raw `image` bytes shaped by
`bands`/`height`/`width`/`dtype`, a WKB `footprint` in EPSG:4326 and `uid` as the key.
"""

from __future__ import annotations

import pyarrow as pa

from flywheel_core.store.lance_tables import pixels_field

RASTER_TILES_TABLE = "raster_tiles"

TILE_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("chip_id", pa.string()),
        ("cell", pa.string()),
        ("date", pa.string()),
        ("row_off", pa.int32()),
        ("col_off", pa.int32()),
        ("bands", pa.int16()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("dtype", pa.string()),
        ("band_names", pa.list_(pa.string())),
        pixels_field("image"),
        ("crs", pa.string()),
        ("transform", pa.list_(pa.float64(), 6)),
        ("gsd_m", pa.float64()),
        ("footprint", pa.binary()),
        ("center_lon", pa.float64()),
        ("center_lat", pa.float64()),
        ("s2_token", pa.string()),
        ("s2_token_level", pa.int16()),
        ("h3_cell", pa.string()),
        ("sensor", pa.string()),
        ("scene_id", pa.string()),
        ("scene_href", pa.string()),
        ("acquired", pa.timestamp("us", tz="UTC")),
    ]
)

# Tiles of registered datasets live in one Lance table, one partition per dataset.
RASTER_TILE_SCHEMA = TILE_SCHEMA.append(pa.field("dataset", pa.string()))
