"""Cut a VHR scene into georeferenced chips for one cell.

A chip belongs to the cell that contains its centre, so adjacent cells' chip sets never overlap
even though their scenes do; each chip carries its own CRS and transform so masks and prompts can
be projected into it without the scene.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from shapely import wkb
from shapely.geometry import Point, box
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.chip_grid import chip_windows
from flywheel_core.geo.h3index import h3_cell
from flywheel_core.geo.projection import reproject
from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.settings import ChipSettings
from flywheel_core.store.lance_tables import pixels_field

log = logging.getLogger(__name__)

CHIP_S2_LEVEL_OFFSET = 2  # chips are indexed two S2 levels below their partition cell

VHR_CHIP_SCHEMA = pa.schema(
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


def _band_names(src: rasterio.io.DatasetReader) -> list[str]:
    return [d or f"band{i + 1}" for i, d in enumerate(src.descriptions)]


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
        src_size = round(chips.size_px * gsd / native_gsd)
        src_overlap = round(chips.overlap_px * gsd / native_gsd)
        crs = src.crs.to_string()
        names = _band_names(src)
        windows = chip_windows(src.width, src.height, src_size, src_overlap)
        log.info(
            "%s: %d candidate chips of %d px at %.3f m",
            scene.scene_id,
            len(windows),
            chips.size_px,
            gsd,
        )
        for w in windows:
            window = Window(w.col_off, w.row_off, w.size, w.size)
            wt = src.window_transform(window)
            cx, cy = wt @ (w.size / 2, w.size / 2)
            center = reproject(Point(cx, cy), crs, 4326)
            if not cell_area.contains(center):
                continue
            data = src.read(
                window=window,
                out_shape=(src.count, chips.size_px, chips.size_px),
                resampling=Resampling.bilinear if w.size != chips.size_px else Resampling.nearest,
            )
            scale = w.size / chips.size_px
            transform = wt @ Affine.scale(scale, scale)
            left, top = wt @ (0, 0)
            right, bottom = wt @ (w.size, w.size)
            footprint = reproject(box(left, bottom, right, top), crs, 4326)
            chip_id = f"{cell}|{day.isoformat()}|r{w.row_off:05d}c{w.col_off:05d}"
            chip_level = min(s2_level + CHIP_S2_LEVEL_OFFSET, 30)
            yield {
                "uid": chip_id,
                "chip_id": chip_id,
                "cell": cell,
                "date": day.isoformat(),
                "row_off": w.row_off,
                "col_off": w.col_off,
                "bands": data.shape[0],
                "height": data.shape[1],
                "width": data.shape[2],
                "dtype": str(data.dtype),
                "band_names": names,
                "image": np.ascontiguousarray(data).tobytes(),
                "crs": crs,
                "transform": list(transform)[:6],
                "gsd_m": gsd,
                "footprint": wkb.dumps(footprint),
                "center_lon": center.x,
                "center_lat": center.y,
                "s2_token": cell_from_lonlat(center.x, center.y, chip_level),
                "s2_token_level": chip_level,
                "h3_cell": h3_cell(center.x, center.y, h3_resolution),
                "sensor": scene.sensor,
                "scene_id": scene.scene_id,
                "scene_href": scene.href,
                "acquired": scene.acquired,
            }


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    if not rows:
        return schema.empty_table()
    return pa.Table.from_pylist(rows, schema=schema)
