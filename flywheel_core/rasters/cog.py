"""Is a file a Cloud-Optimized GeoTIFF, and if not, make it one.

The validation follows the rules of GDAL's `validate_cloud_optimized_geotiff.py` (rio-cogeo is not
a dependency): a GeoTIFF, tiled and with internal overviews when larger than 512 px, every IFD
at the head of the file (main IFD within the 300-byte ghost header zone, overview IFDs after it),
and pixel data ordered smallest overview first, full resolution last, so a reader gets the
header in one range request and each zoom level in contiguous ranges. Missing overviews are an
error here, not GDAL's warning: tiles and previews of large scenes read from them.

Conversion is GDAL's COG driver copying block by block, so memory stays bounded on any size.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
import rasterio.shutil

log = logging.getLogger(__name__)

COG_MIN_TILED_PX = 512  # above this width or height a COG must be tiled and have overviews
MAX_MAIN_IFD_OFFSET = 300  # the main IFD follows at most GDAL's ghost header


@dataclass(frozen=True)
class CogReport:
    path: str
    errors: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors


def _offset(ds: rasterio.io.DatasetReader, item: str) -> int | None:
    value = ds.get_tag_item(item, "TIFF", bidx=1)
    return int(value) if value not in (None, "") else None


def validate_cog(path: Path) -> CogReport:
    """Check the COG layout rules; the report lists every rule the file breaks."""
    errors: list[str] = []
    details: dict[str, object] = {}
    with rasterio.open(path) as src:
        details.update(
            driver=src.driver,
            block_shape=list(src.block_shapes[0]),
            overviews=list(src.overviews(1)),
            layout=src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", ""),
            compression=src.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION", "NONE"),
        )
        if src.driver != "GTiff":
            return CogReport(str(path), [f"not a GeoTIFF (GDAL driver {src.driver})"], details)
        if any(f.endswith(".ovr") for f in src.files):
            errors.append("overviews are in an external .ovr file; they must be internal")
        large = src.width > COG_MIN_TILED_PX or src.height > COG_MIN_TILED_PX
        bh, bw = src.block_shapes[0]
        if large and bw == src.width:
            errors.append(f"{src.width}x{src.height} px but striped ({bh}-row strips), not tiled")
        n_overviews = len(src.overviews(1))
        if large and n_overviews == 0:
            errors.append(f"{src.width}x{src.height} px but without internal overviews")
        if src.overviews(1) != sorted(src.overviews(1)):
            errors.append("overviews are not ordered from finest to coarsest")
    ifds: list[int] = []
    first_blocks: list[int | None] = []
    for ovr in [None, *range(n_overviews)]:
        with rasterio.open(path, overview_level=ovr) as level:
            ifds.append(_offset(level, "IFD_OFFSET") or 0)
            first_blocks.append(_offset(level, "BLOCK_OFFSET_0_0"))
            if large and ovr is not None and level.block_shapes[0][1] == level.width > 1024:
                errors.append(f"overview {ovr} is striped, not tiled")
    details["ifd_offsets"] = ifds
    details["first_block_offsets"] = first_blocks
    if ifds[0] > MAX_MAIN_IFD_OFFSET:
        errors.append(
            f"the main IFD is at byte {ifds[0]}, not at the head of the file "
            f"(<= {MAX_MAIN_IFD_OFFSET})"
        )
    for k in range(1, len(ifds)):
        if ifds[k] < ifds[k - 1]:
            errors.append(f"the IFD of overview {k - 1} comes before the previous IFD")
    data = [b for b in first_blocks if b]
    if data and max(ifds) > min(data):
        errors.append("pixel data starts before the last IFD (IFDs must all come first)")
    # Coarsest overview first, full resolution last.
    for k in range(len(first_blocks) - 1):
        finer, coarser = first_blocks[k], first_blocks[k + 1]
        if finer and coarser and finer < coarser:
            what = "the full-resolution image" if k == 0 else f"overview {k - 1}"
            errors.append(f"the data of {what} comes before that of overview {k}")
    return CogReport(str(path), errors, details)


def convert_to_cog(
    src_path: Path,
    dst_path: Path,
    *,
    blocksize: int = 512,
    compress: str = "DEFLATE",
    num_threads: str = "ALL_CPUS",
) -> Path:
    """Copy any GDAL-readable raster into a COG (tags, band names, no-data kept); atomic rename."""
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_path.with_name(f".{dst_path.name}.partial")
    log.info("converting %s to a COG", src_path.name)
    try:
        rasterio.shutil.copy(
            src_path,
            tmp,
            driver="COG",
            COMPRESS=compress,
            PREDICTOR="YES",
            BLOCKSIZE=str(blocksize),
            OVERVIEWS="AUTO",
            BIGTIFF="IF_SAFER",
            NUM_THREADS=num_threads,
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst_path)
    return dst_path
