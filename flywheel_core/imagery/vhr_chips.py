"""Cut a VHR scene into georeferenced chips for one cell.

A chip belongs to the cell that contains its centre, so adjacent cells' chip sets never overlap
even though their scenes do; each chip carries its own CRS and transform so masks and prompts can
be projected into it without the scene. The cutting itself is the raster datasets' tiling
(`flywheel_core.rasters.tiling`): a flywheel scene is one raster dataset among others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import rasterio
from shapely.geometry.base import BaseGeometry

from flywheel_core.rasters.schema import TILE_SCHEMA
from flywheel_core.rasters.tiling import (
    TilePlace,
    band_names,
    iter_tiles,
    source_pixels,
    tile_row,
    tile_windows,
)
from flywheel_core.settings import ChipSettings

log = logging.getLogger(__name__)

VHR_CHIP_SCHEMA = TILE_SCHEMA


@dataclass(frozen=True)
class VhrScene:
    href: str
    scene_id: str
    sensor: str
    acquired: datetime


def chip_image(row: dict) -> np.ndarray:
    """The (bands, height, width) array stored in a chip row."""
    return np.frombuffer(row["image"], dtype=row["dtype"]).reshape(
        row["bands"], row["height"], row["width"]
    )


def chip_id_for(cell: str, day: date, row_off: int, col_off: int) -> str:
    """Chip ids (also the uid) name the partition and the window: stable across reruns."""
    return f"{cell}|{day.isoformat()}|r{row_off:05d}c{col_off:05d}"


def iter_vhr_chips(
    scene: VhrScene,
    cell: str,
    day: date,
    cell_area: BaseGeometry,
    chips: ChipSettings,
    s2_level: int,
    h3_resolution: int,
) -> Iterator[dict]:
    """Rows of the cell's chips, read window by window (the scene is never loaded whole)."""
    with rasterio.open(scene.href) as src:
        if src.crs is None:
            raise ValueError(f"{scene.href} has no CRS; chips need a georeferenced scene")
        native_gsd = abs(src.transform.a)
        gsd = chips.gsd_m or native_gsd
        crs = src.crs.to_string()
        names = band_names(src)
        windows = tile_windows(
            src.width,
            src.height,
            chips.size_px,
            source_pixels(chips.size_px, gsd, native_gsd),
            source_pixels(chips.overlap_px, gsd, native_gsd),
        )
        log.info(
            "%s: %d candidate chips of %d px at %.3f m",
            scene.scene_id,
            len(windows),
            chips.size_px,
            gsd,
        )

        def in_cell(place: TilePlace) -> bool:
            return cell_area.contains(place.center)

        for place, data in iter_tiles(src, windows, keep=in_cell, label=scene.scene_id):
            chip_id = chip_id_for(cell, day, place.window.row_off, place.window.col_off)
            yield tile_row(
                place,
                data,
                uid=chip_id,
                chip_id=chip_id,
                cell=cell,
                day=day,
                band_names=names,
                crs=crs,
                gsd_m=gsd,
                s2_level=s2_level,
                h3_resolution=h3_resolution,
                sensor=scene.sensor,
                scene_id=scene.scene_id,
                scene_href=scene.href,
                acquired=scene.acquired,
            )


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    if not rows:
        return schema.empty_table()
    return pa.Table.from_pylist(rows, schema=schema)
