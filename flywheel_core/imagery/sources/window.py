"""Reading bands onto a target grid, compositing windows, and writing a window out as rasters.

`warp_to_grid` is the one place a source's raster file (local, `s3://` through GDAL, or a COG over
HTTP) is read: only the window over the grid plus a margin is fetched, then warped onto the grid.
`materialize` writes a window as files rasterio opens (one 8-bit GeoTIFF for VHR, one GeoTIFF
per band for MSI, coded like L2A: DN = (reflectance + 0.1) * 10000 with BOA_ADD_OFFSET = -1000
in the tags), so chipping and inference read every source through the same code. A window is
written once per (source, cell, date, scene): a manifest, written last, marks it complete, so an
interrupted write is redone and a complete one is reused (inference reads what chipping read).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject as warp_reproject
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery.cog import write_cog
from flywheel_core.imagery.sources.types import (
    SCL,
    WINDOW_MARGIN_M,
    BandWindow,
    Scene,
    TargetGrid,
)

if TYPE_CHECKING:
    from flywheel_core.imagery.sources.types import ImagerySource

log = logging.getLogger(__name__)

MSI_WINDOW_RES_M = 10.0
L2A_OFFSET_DN = -1000.0  # how materialized MSI windows are coded (processing baseline >= 04.00)
L2A_QUANTIFICATION = 10000.0
MANIFEST = "window.json"


def epsg_of(crs: str) -> int:
    code = CRS.from_user_input(crs).to_epsg()
    if code is None:
        raise ValueError(f"CRS {crs!r} has no EPSG code")
    return int(code)


def warp_to_grid(
    src: rasterio.io.DatasetReader,
    grid: TargetGrid,
    indexes: Sequence[int],
    *,
    nearest: bool = False,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """(bands, h, w) of the given 1-based band indexes on `grid`, and where they had data.

    The source window is the grid's bounds (transformed, densified) plus two source pixels, so
    a scene is never read whole. Pixels outside the source or equal to its nodata are invalid;
    in the float output they are NaN, in an integer output 0.
    """
    if src.crs is None:
        raise ValueError(f"{src.name} has no CRS")
    win = padded_window(src, grid.bounds, grid.crs)
    shape = (len(indexes), grid.height, grid.width)
    if win is None or win.width <= 0 or win.height <= 0:
        empty: np.ndarray = np.full(shape, np.nan if dtype.startswith("float") else 0, dtype=dtype)
        return empty, np.zeros((grid.height, grid.width), dtype=bool)
    data = src.read(list(indexes), window=win).astype(np.float32)
    nodata = src.nodata
    if nodata is not None:
        data[data == nodata] = np.nan
    if src.dtypes[0].startswith("float"):
        data[~np.isfinite(data)] = np.nan
    out = np.full(shape, np.nan, dtype=np.float32)
    warp_reproject(
        data,
        out,
        src_transform=src.window_transform(win),
        src_crs=src.crs,
        src_nodata=np.nan,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=np.nan,
        resampling=Resampling.nearest if nearest else Resampling.bilinear,
    )
    valid: np.ndarray = np.asarray(np.isfinite(out).all(axis=0))
    if dtype.startswith("float"):
        return out.astype(dtype), valid
    info = np.iinfo(dtype)
    cast: np.ndarray = np.clip(np.nan_to_num(np.rint(out), nan=0.0), info.min, info.max).astype(
        dtype
    )
    return cast, valid


def padded_window(
    src: rasterio.io.DatasetReader,
    bounds: tuple[float, float, float, float],
    crs: str,
    densify_pts: int = 21,
) -> Window | None:
    """The source pixels over `bounds` (in `crs`) plus two pixels, whole pixels, clipped to the
    raster; None where they miss it. The one place a window is cut for reading a band."""
    left, bottom, right, top = transform_bounds(crs, src.crs, *bounds, densify_pts=densify_pts)
    pad = 2 * abs(src.transform.a)
    raw = from_bounds(left - pad, bottom - pad, right + pad, top + pad, src.transform)
    col0, row0 = math.floor(raw.col_off), math.floor(raw.row_off)
    col1, row1 = math.ceil(raw.col_off + raw.width), math.ceil(raw.row_off + raw.height)
    if not (col1 > 0 and row1 > 0 and col0 < src.width and row0 < src.height):
        return None
    whole = Window(0, 0, src.width, src.height)
    win: Window = Window(col0, row0, col1 - col0, row1 - row0).intersection(whole)
    return win


def composite(windows: Sequence[BandWindow]) -> BandWindow:
    """One window from several on the same grid: each pixel from the first window valid there."""
    if not windows:
        raise ValueError("nothing to composite")
    first = windows[0]
    data = first.data.copy()
    valid = first.valid.copy()
    for w in windows[1:]:
        if w.band_names != first.band_names or w.data.shape != first.data.shape:
            raise ValueError("windows of a composite must have the same bands and grid")
        take = w.valid & ~valid
        data[:, take] = w.data[:, take]
        valid |= take
    notes = tuple(dict.fromkeys(n for w in windows for n in w.notes))
    ids = tuple(dict.fromkeys(i for w in windows for i in w.scene_ids))
    return BandWindow(data, first.band_names, first.grid, valid, first.radiometry, ids, notes)


def window_grid(source: ImagerySource, scene: Scene, cell: str) -> TargetGrid:
    """The grid a source's window over a cell is written on: the scene's CRS, native VHR GSD."""
    res = scene.gsd_m if source.kind == "vhr" else MSI_WINDOW_RES_M
    margin = max(WINDOW_MARGIN_M, 2 * res)
    return TargetGrid.around(cell_polygon(cell), scene.crs, res, margin)


def _folder(workdir: Path, source: str, cell: str, day: date, scene_id: str) -> Path:
    digest = hashlib.sha256(scene_id.encode()).hexdigest()[:12]
    return workdir / source / cell / day.isoformat() / digest


def materialize(
    source: ImagerySource, scene: Scene, cell: str, day: date, workdir: Path
) -> dict[str, str]:
    """Write (or reuse) the scene's window over the cell; band or "image" -> file path."""
    folder = _folder(workdir, source.name, cell, day, scene.scene_id)
    manifest = folder / MANIFEST
    if manifest.exists():
        files = json.loads(manifest.read_text())["files"]
        if all((folder / f).exists() for f in files.values()):
            return {k: str(folder / f) for k, f in files.items()}
    grid = window_grid(source, scene, cell)
    window = source.read(scene, grid)
    if not window.valid.any():
        raise source.error(f"scene {scene.scene_id} has no valid pixel over the cell", cell, day)
    tags = {
        "FLYWHEEL_SOURCE": source.name,
        "FLYWHEEL_SCENES": ",".join(window.scene_ids),
        "FLYWHEEL_RADIOMETRY": window.radiometry,
        "ACQUISITION_DATETIME": scene.acquired.isoformat(),
        "FLYWHEEL_NOTES": "; ".join(window.notes),
    }
    epsg = epsg_of(grid.crs)
    if source.kind == "vhr":
        files = {"image": "image.tif"}
        write_cog(
            folder / "image.tif",
            np.clip(np.nan_to_num(window.data, nan=0.0), 0, 255).astype(np.uint8),
            epsg=epsg,
            transform=grid.transform,
            descriptions=list(window.band_names),
            tags=tags,
        )
    else:
        files = {}
        for name in window.band_names:
            files[name] = f"{name}.tif"
            band = window.band(name)
            if name == SCL:
                coded = np.nan_to_num(band, nan=0.0).astype(np.uint8)
                extra: dict[str, object] = {}
            else:
                coded = encode_l2a(band)
                extra = {
                    "BOA_ADD_OFFSET": L2A_OFFSET_DN,
                    "BOA_QUANTIFICATION_VALUE": L2A_QUANTIFICATION,
                }
            write_cog(
                folder / files[name],
                coded,
                epsg=epsg,
                transform=grid.transform,
                descriptions=[name],
                tags={**tags, **extra},
                nodata=0,
                resampling="nearest",
            )
    manifest.write_text(json.dumps({"scene_id": scene.scene_id, "files": files, **tags}))
    log.info("%s: wrote the window of %s over %s (%s)", source.name, scene.scene_id, cell, day)
    return {k: str(folder / f) for k, f in files.items()}


def encode_l2a(reflectance: np.ndarray) -> np.ndarray:
    """uint16 DN = (reflectance + 0.1) * 10000, 0 (no data) where NaN; at least 1 where valid."""
    dn = np.rint((reflectance.astype(np.float64) - L2A_OFFSET_DN / L2A_QUANTIFICATION) * 1e4)
    out = np.clip(np.nan_to_num(dn, nan=0.0), 1, 65535).astype(np.uint16)
    out[~np.isfinite(reflectance)] = 0
    return out
