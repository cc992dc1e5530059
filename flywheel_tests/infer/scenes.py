"""Synthetic GeoTIFFs for the inference tests (helpers, not fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

CRS = "EPSG:32632"
GSD = 0.5
ORIGIN = (691_000.0, 5_335_000.0)  # UTM 32N, near Munich
TRANSFORM = Affine(GSD, 0, ORIGIN[0], 0, -GSD, ORIGIN[1])


def write_scene(
    path: Path,
    data: np.ndarray | None = None,
    *,
    shape: tuple[int, int, int] | None = None,
    seed: int = 0,
    chunk_rows: int = 256,
    nodata: float | None = None,
) -> Path:
    """A tiled uint8 GeoTIFF: `data` (bands, rows, cols), or random pixels of `shape` written
    chunk by chunk (so a big test scene never exists in memory at once)."""
    count, height, width = data.shape if data is not None else shape
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "count": count,
        "height": height,
        "width": width,
        "dtype": "uint8",
        "crs": CRS,
        "transform": TRANSFORM,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        if data is not None:
            dst.write(data)
        else:
            for r0 in range(0, height, chunk_rows):
                n = min(chunk_rows, height - r0)
                block = rng.integers(0, 256, size=(count, n, width), dtype=np.uint8)
                dst.write(block, window=Window(0, r0, width, n))
    return path
