"""Cutting a raster into tiles: windows, georeferencing, tile rows and the GeoParquet tile index.

Used by both the flywheel's VHR chips and registered raster datasets, so a tile's footprint, S2
and H3 ids and transform mean the same thing wherever it came from. Tiles are read window by
window; a scene is never loaded whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely import wkb
from shapely.geometry import Point, box
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.chip_grid import chip_windows
from flywheel_core.geo.h3index import h3_cell
from flywheel_core.geo.projection import reproject
from flywheel_core.geo.s2 import cell_from_lonlat

log = logging.getLogger(__name__)

TILE_S2_LEVEL_OFFSET = 2  # tiles are indexed two S2 levels below their partition cell
PROGRESS_EVERY = 500  # tiles between progress lines on long scenes


@dataclass(frozen=True)
class TileWindow:
    """A square window of `src_size` source pixels, read out as `out_size` pixels."""

    row_off: int
    col_off: int
    src_size: int
    out_size: int

    @property
    def window(self) -> Window:
        return Window(self.col_off, self.row_off, self.src_size, self.src_size)


@dataclass(frozen=True)
class TilePlace:
    """Where a tile lies: its output-pixel transform, lon/lat footprint and centre."""

    window: TileWindow
    transform: Affine
    footprint: BaseGeometry  # EPSG:4326
    center: Point  # EPSG:4326


def source_pixels(out_px: int, gsd: float, native_gsd: float) -> int:
    """Source pixels covering `out_px` output pixels at `gsd` (the scene has `native_gsd`)."""
    return round(out_px * gsd / native_gsd)


def tile_windows(
    width: int, height: int, out_size: int, src_size: int, src_overlap: int
) -> list[TileWindow]:
    """Regular windows over the raster; the last row/column is pulled back to the edge."""
    return [
        TileWindow(w.row_off, w.col_off, w.size, out_size)
        for w in chip_windows(width, height, src_size, src_overlap)
    ]


def place_tile(src_transform: Affine, crs: str, tw: TileWindow) -> TilePlace:
    wt = window_transform(tw.window, src_transform)
    cx, cy = wt @ (tw.src_size / 2, tw.src_size / 2)
    center = reproject(Point(cx, cy), crs, 4326)
    scale = tw.src_size / tw.out_size
    left, top = wt @ (0, 0)
    right, bottom = wt @ (tw.src_size, tw.src_size)
    footprint = reproject(box(left, bottom, right, top), crs, 4326)
    return TilePlace(tw, wt @ Affine.scale(scale, scale), footprint, center)


def read_tile(src: rasterio.io.DatasetReader, tw: TileWindow) -> np.ndarray:
    """(bands, out, out) pixels of the window; bilinear only when the GSD is changed."""
    return src.read(
        window=tw.window,
        out_shape=(src.count, tw.out_size, tw.out_size),
        resampling=Resampling.bilinear if tw.src_size != tw.out_size else Resampling.nearest,
    )


def iter_tiles(
    src: rasterio.io.DatasetReader,
    windows: list[TileWindow],
    keep: Callable[[TilePlace], bool] | None = None,
    label: str = "",
    progress_every: int | None = None,
) -> Iterator[tuple[TilePlace, np.ndarray]]:
    """Placed and read tiles; `keep` filters on the place before any pixel is read."""
    every = progress_every or PROGRESS_EVERY
    crs = src.crs.to_string()
    kept = 0
    for i, tw in enumerate(windows, start=1):
        place = place_tile(src.transform, crs, tw)
        if keep is not None and not keep(place):
            continue
        kept += 1
        yield place, read_tile(src, tw)
        if i % every == 0:
            log.info("%s: %d/%d windows done, %d tiles kept", label, i, len(windows), kept)


def band_names(src: rasterio.io.DatasetReader) -> list[str]:
    return [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]


def tile_row(
    place: TilePlace,
    data: np.ndarray,
    *,
    uid: str,
    chip_id: str,
    cell: str,
    day: date,
    band_names: list[str],
    crs: str,
    gsd_m: float,
    s2_level: int,
    h3_resolution: int,
    sensor: str,
    scene_id: str,
    scene_href: str,
    acquired: datetime | None,
) -> dict:
    """One row of `TILE_SCHEMA`: pixels, georeferencing and S2/H3 ids of the tile centre."""
    center = place.center
    tile_level = min(s2_level + TILE_S2_LEVEL_OFFSET, 30)
    return {
        "uid": uid,
        "chip_id": chip_id,
        "cell": cell,
        "date": day.isoformat(),
        "row_off": place.window.row_off,
        "col_off": place.window.col_off,
        "bands": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": str(data.dtype),
        "band_names": band_names,
        "image": np.ascontiguousarray(data).tobytes(),
        "crs": crs,
        "transform": list(place.transform)[:6],
        "gsd_m": gsd_m,
        "footprint": wkb.dumps(place.footprint),
        "center_lon": center.x,
        "center_lat": center.y,
        "s2_token": cell_from_lonlat(center.x, center.y, tile_level),
        "s2_token_level": tile_level,
        "h3_cell": h3_cell(center.x, center.y, h3_resolution),
        "sensor": sensor,
        "scene_id": scene_id,
        "scene_href": scene_href,
        "acquired": acquired,
    }


@dataclass(frozen=True)
class PixelFacts:
    nodata_fraction: float  # share of pixels where every band is no-data
    non_finite: int  # NaN/inf values that are not the no-data value


def pixel_facts(data: np.ndarray, nodata: float | None) -> PixelFacts:
    non_finite = 0
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if nodata is not None and np.isnan(nodata):
            bad &= ~np.isnan(data)
        non_finite = int(np.count_nonzero(bad))
    if nodata is None:
        return PixelFacts(0.0, non_finite)
    empty = np.isnan(data) if np.isnan(nodata) else data == nodata
    return PixelFacts(float(np.all(empty, axis=0).mean()), non_finite)


INDEX_COLUMNS = (
    "tile_id",
    "uid",
    "dataset",
    "cell",
    "date",
    "row_off",
    "col_off",
    "window_width",
    "window_height",
    "width",
    "height",
    "crs",
    "transform",
    "center_lon",
    "center_lat",
    "s2_token",
    "s2_token_level",
    "h3_cell",
    "nodata_fraction",
)


def index_record(row: dict, dataset: str, src_size: int, nodata_fraction: float) -> dict:
    """The tile's entry in the GeoParquet index: the row without pixels, plus its window."""
    return {
        "tile_id": row["chip_id"],
        "uid": row["uid"],
        "dataset": dataset,
        "cell": row["cell"],
        "date": row["date"],
        "row_off": row["row_off"],
        "col_off": row["col_off"],
        "window_width": src_size,
        "window_height": src_size,
        "width": row["width"],
        "height": row["height"],
        "crs": row["crs"],
        "transform": list(row["transform"]),
        "center_lon": row["center_lon"],
        "center_lat": row["center_lat"],
        "s2_token": row["s2_token"],
        "s2_token_level": row["s2_token_level"],
        "h3_cell": row["h3_cell"],
        "nodata_fraction": nodata_fraction,
        "geometry": wkb.loads(row["footprint"]),
    }


def write_tile_index(records: Iterable[dict], path: Path) -> Path:
    """Write the index as GeoParquet (geometry = tile footprint, EPSG:4326)."""
    rows = list(records)
    frame = gpd.GeoDataFrame(
        rows or {c: [] for c in (*INDEX_COLUMNS, "geometry")},
        columns=[*INDEX_COLUMNS, "geometry"],
        geometry="geometry",
        crs="EPSG:4326",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path
