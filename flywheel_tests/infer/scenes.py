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


def write_s2_scene(
    folder: Path,
    *,
    origin: tuple[float, float] = (ORIGIN[0] - 50.0, ORIGIN[1] + 50.0),
    size_m: float = 400.0,
    offset: float = -1000.0,
    seed: int = 0,
    coarse: tuple[str, ...] = ("B05", "B06", "B07", "B8A", "B11", "B12"),
    nodata_px: dict[str, tuple[int, int]] | None = None,
    crs: str = CRS,
) -> dict[str, str]:
    """Sentinel-2 L2A-like band files (uint16 DNs, BOA_ADD_OFFSET / quantification tags, nodata 0)
    and an SCL, on 10 m grids (20 m for `coarse` bands and SCL) from `origin` (top-left, in
    `crs`); `nodata_px` puts a 0 DN at (row, col) of the named bands. Band name -> path."""
    from flywheel_core.imagery.l2a import BANDS

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    assets: dict[str, str] = {}
    for name in (*BANDS, "SCL"):
        res = 20.0 if name in coarse or name == "SCL" else 10.0
        n = int(size_m / res)
        if name == "SCL":
            data = np.full((1, n, n), 4, np.uint8)
            tags: dict[str, str] = {}
        else:
            data = rng.integers(1200, 5000, size=(1, n, n)).astype(np.uint16)
            for band, (r, c) in (nodata_px or {}).items():
                if band == name:
                    data[0, r, c] = 0
            tags = {"BOA_ADD_OFFSET": str(int(offset)), "BOA_QUANTIFICATION_VALUE": "10000"}
        path = folder / f"{name}.tif"
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            count=1,
            height=n,
            width=n,
            dtype=data.dtype,
            crs=crs,
            transform=Affine(res, 0, origin[0], 0, -res, origin[1]),
            nodata=0,
        ) as dst:
            dst.write(data)
            dst.update_tags(**tags)
        assets[name] = str(path)
    return assets
