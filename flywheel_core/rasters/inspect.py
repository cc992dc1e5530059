"""Open a raster file and decide whether it can become a dataset, before anything is written.

Every input problem a user can fix (not a raster, no CRS, truncated, too small for one tile) is a
`RasterError` naming the file and the problem, raised before the registry, the object store or
Lance are touched, so a bad file never leaves a half-registered dataset behind.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from flywheel_core.errors import FlywheelError
from flywheel_core.geo.projection import reproject
from flywheel_core.rasters.tiling import band_names

log = logging.getLogger(__name__)

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_EARTH_M_PER_DEG = math.pi / 180.0 * 6_371_008.8
# Tags that carry an acquisition time. TIFFTAG_DATETIME is left out on purpose: the TIFF spec
# makes it the file's creation time, which for satellite products is the processing date.
ACQUISITION_TAGS = (
    "ACQUISITION_DATETIME",
    "ACQUISITIONDATETIME",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "ACQUIRED",
    "DATETIME",
    "FLYWHEEL_DATE",
)
_DATE_FORMATS = ("%Y:%m:%d %H:%M:%S", "%Y%m%d", "%Y%m%dT%H%M%S")
_READ_CHUNK = 8 << 20


# What GDAL raises through rasterio: its own errors, and raw CPLE errors from copies (COG driver).
GDAL_ERRORS: tuple[type[Exception], ...] = (RasterioError, CPLE_BaseError)


class RasterError(FlywheelError, ValueError):
    """A file that cannot become a raster dataset; the message names the file and the reason."""


@dataclass(frozen=True)
class RasterInfo:
    """What a registry row records about a raster, read from its header only."""

    path: Path
    uri: str
    driver: str
    width: int
    height: int
    count: int
    dtype: str
    band_names: list[str]
    crs: str
    transform: Affine
    nodata: float | None
    gsd_m: float
    footprint: BaseGeometry  # EPSG:4326, edges densified so a reprojected outline stays true
    acquired: datetime | None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_tiff(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) in _TIFF_MAGIC


def crs_string(crs: rasterio.crs.CRS) -> str:
    """EPSG:n when the CRS has an EPSG code, else its WKT (so it always round-trips)."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def parse_acquired(tags: dict[str, str], name: str = "") -> datetime | None:
    """Acquisition time from the first acquisition tag that parses (UTC when no zone is given)."""
    upper = {k.upper(): v for k, v in tags.items()}
    for key in ACQUISITION_TAGS:
        text = (upper.get(key) or "").strip()
        if not text:
            continue
        parsed = _parse_time(text)
        if parsed is not None:
            return parsed
        log.warning("%s: tag %s=%r is not a date; ignored", name, key, text)
    return None


def _parse_time(text: str) -> datetime | None:
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def metric_gsd(crs: CRS, res_x: float, center_lat: float) -> float:
    """Ground sample distance in metres (degrees converted at the raster's centre latitude)."""
    if crs.is_geographic:
        return res_x * _EARTH_M_PER_DEG * math.cos(math.radians(center_lat))
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return res_x * unit


def _footprint(src: rasterio.io.DatasetReader, crs: str) -> BaseGeometry:
    left, bottom, right, top = src.bounds
    outline = box(left, bottom, right, top)
    dense = shapely.segmentize(outline, max(right - left, top - bottom) / 32.0)
    return reproject(dense, crs, 4326)


def _truncated_blocks(path: Path, size: int) -> str | None:
    """A GeoTIFF whose strip/tile byte ranges end past the end of the file: it was cut short.

    Reading the block tables (image and every internal overview) costs no pixel reads, so a
    truncated file is caught before a single tile is cut, however large the scene.
    """
    with rasterio.open(path) as src:
        n_overviews = len(src.overviews(1))
    for ovr in [None, *range(n_overviews)]:
        with rasterio.open(path, overview_level=ovr) as level:
            interleave = level.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE", "PIXEL")
            bands = range(1, level.count + 1) if interleave == "BAND" else [1]
            for bidx in bands:
                bh, bw = level.block_shapes[bidx - 1]
                for r in range(math.ceil(level.height / bh)):
                    for c in range(math.ceil(level.width / bw)):
                        off = level.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=bidx)
                        n = level.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=bidx)
                        if off and n and int(off) + int(n) > size:
                            where = "image" if ovr is None else f"overview {ovr}"
                            return (
                                f"block ({r}, {c}) of the {where} ends at byte "
                                f"{int(off) + int(n)} but the file has {size} bytes"
                            )
    return None


def inspect_raster(path: Path, uri: str | None = None) -> RasterInfo:
    """Header facts of a local raster file, or a `RasterError` saying why it cannot be used."""
    name = uri or str(path)
    if not path.exists():
        raise RasterError(f"{name}: no such file")
    if path.is_dir():
        raise RasterError(f"{name}: is a directory, not a raster file")
    size = path.stat().st_size
    if size == 0:
        raise RasterError(f"{name}: the file is empty (0 bytes)")
    tiff = is_tiff(path)
    try:
        with warnings.catch_warnings():  # a missing geotransform gets its own error below
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except GDAL_ERRORS as exc:
        if tiff:
            raise RasterError(
                f"{name}: a TIFF file GDAL cannot open: truncated or corrupt ({exc})"
            ) from None
        raise RasterError(f"{name}: not a raster GDAL can read ({exc})") from None
    with src:
        if src.count == 0:
            raise RasterError(f"{name}: has no raster bands")
        if src.crs is None:
            hint = (
                " (it is georeferenced by ground control points only: warp it first, e.g. "
                "`gdalwarp -t_srs EPSG:<code>`)"
                if src.gcps[0]
                else " (assign one with `gdal_edit.py -a_srs EPSG:<code>` if you know it)"
            )
            raise RasterError(f"{name}: has no CRS, so its tiles cannot be located{hint}")
        t = src.transform
        if t.is_identity:
            raise RasterError(f"{name}: has a CRS but no geotransform (pixel grid unplaced)")
        if t.b != 0 or t.d != 0:
            raise RasterError(
                f"{name}: has a rotated or sheared geotransform; warp it to a north-up grid first"
            )
        dtypes = set(src.dtypes)
        if len(dtypes) != 1:
            raise RasterError(f"{name}: bands have different data types {sorted(dtypes)}")
        if tiff and src.driver in ("GTiff", "COG"):
            problem = _truncated_blocks(path, size)
            if problem:
                raise RasterError(f"{name}: truncated: {problem}")
        crs = crs_string(src.crs)
        footprint = _footprint(src, crs)
        tags = dict(src.tags())
        return RasterInfo(
            path=path,
            uri=name,
            driver=src.driver,
            width=src.width,
            height=src.height,
            count=src.count,
            dtype=src.dtypes[0],
            band_names=band_names(src),
            crs=crs,
            transform=t,
            nodata=src.nodata,
            gsd_m=metric_gsd(CRS.from_user_input(crs), abs(t.a), footprint.centroid.y),
            footprint=footprint,
            acquired=parse_acquired(tags, name),
            tags=tags,
        )


_READ_FAILURE = re.compile(
    r"read failed|IReadBlock|TIFFRead|ReadEncoded|decod|inflate|unexpected end|short read",
    re.IGNORECASE,
)


def read_error(name: str, exc: Exception) -> RasterError:
    """A pixel read that failed mid-file: truncated or corrupt data behind an intact header."""
    cause = exc.__cause__ or exc.__context__
    detail = f"{exc}" + (f"; {cause}" if cause and str(cause) not in str(exc) else "")
    kind = "truncated or corrupt" if _READ_FAILURE.search(detail) else "unreadable"
    return RasterError(f"{name}: pixel data is {kind} ({detail})")
