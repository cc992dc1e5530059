"""Writing Cloud-Optimized GeoTIFFs.

GDAL's COG driver can only copy an existing dataset, so the raster is assembled in memory (with
its tags, band descriptions, scales and offsets, which the copy keeps) and then copied. The output
goes to a temporary name first so a reader never sees half a file. GDAL writes no timestamps into
GeoTIFFs, so the same array and metadata give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile
from rasterio.transform import Affine


def write_cog(
    path: Path,
    data: np.ndarray,
    *,
    epsg: int,
    transform: Affine,
    descriptions: Sequence[str],
    tags: Mapping[str, object],
    nodata: float | None = None,
    resampling: str = "average",
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
) -> Path:
    """Write a (bands, rows, cols) array as a DEFLATE-compressed COG with overviews when large."""
    if data.ndim == 2:
        data = data[np.newaxis]
    if len(descriptions) != data.shape[0]:
        raise ValueError(f"{len(descriptions)} descriptions for {data.shape[0]} bands")
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "crs": f"EPSG:{epsg}",
        "transform": transform,
        "nodata": nodata,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data)
            ds.update_tags(**{k: str(v) for k, v in tags.items()})
            for i, text in enumerate(descriptions, start=1):
                ds.set_band_description(i, text)
            if scales is not None:
                ds.scales = tuple(scales)
            if offsets is not None:
                ds.offsets = tuple(offsets)
        with mem.open() as src:
            rasterio.shutil.copy(
                src,
                tmp,
                driver="COG",
                COMPRESS="DEFLATE",
                PREDICTOR="2",
                BLOCKSIZE="512",
                OVERVIEW_RESAMPLING=resampling.upper(),
                NUM_THREADS="1",
            )
    os.replace(tmp, path)
    return path


def read_tags(path: Path) -> dict[str, str]:
    with rasterio.open(path) as src:
        return dict(src.tags())
