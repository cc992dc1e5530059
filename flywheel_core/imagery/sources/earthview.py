"""Satellogic EarthView: 1 m RGB + NIR tiles (UTM, 384 m) listed in one Parquet index.

The layout is the public `satellogic-earthview` bucket's: `<root>/colab/satellogic-earthview-
items.parquet` lists every tile (`json_path, zone, region, date, geometry`), and a tile's rasters
sit beside its metadata JSON (`/json/` -> `/tif/`, `_metadata.json` -> `_TOA.tif` or
`_VISUAL.tif`). A cell spanning several tiles of one date is one mosaic scene whose parts are
the tiles; `read` warps each part onto the grid and composites them.

S3 objects (index and rasters) are downloaded whole into a temporary folder the instance holds,
through a boto3 client configured like the object store's (FLYWHEEL_S3_ENDPOINT,
FLYWHEEL_S3_USE_SSL, AWS_REGION); without credentials it signs nothing, which is what the public
bucket wants.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import rasterio
import shapely
from rasterio.errors import RasterioIOError
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.s2 import InvalidCellError, cell_polygon
from flywheel_core.imagery.sources.types import (
    BandWindow,
    ImagerySource,
    Kind,
    Scene,
    TargetGrid,
    cell_coverage,
)
from flywheel_core.imagery.sources.window import composite, warp_to_grid
from flywheel_core.rasters.inspect import RasterError
from flywheel_core.rasters.source import is_s3, local_file
from flywheel_core.store.objects import S3Endpoint, split_s3

DEFAULT_INDEX = "colab/satellogic-earthview-items.parquet"
INDEX_COLUMNS = ("json_path", "zone", "region", "date", "geometry")
ASSETS = ("TOA", "VISUAL")
TOA_QUANTIFICATION = 10000.0  # reflectance = DN / 10000, as the provider's notebook reads TOA
# 0.4 TOA reflectance maps to DN 255: vegetation NIR and bright roofs mostly stay below it, while
# panels (about 0.05-0.15) keep 30-100 levels; only clouds and white roofs saturate.
DEFAULT_TOA_FULL_SCALE = 0.4
GSD_M = 1.0
TOA_BANDS = {"red": 1, "green": 2, "blue": 3, "nir": 4}
VISUAL_BANDS = {"red": 1, "green": 2, "blue": 3}
OPTIONS = ("asset", "toa_full_scale", "index")
_ZONE = re.compile(r"^(\d{1,2})([NS])$")
_STAMP = re.compile(r"^(\d{8})_(\d{6})_")  # ids like 20220701_085711_SN18_... (when present)


@dataclass(frozen=True)
class _Tile:
    json_path: str
    zone: str
    region: str
    day: date
    footprint: BaseGeometry


class EarthViewSource(ImagerySource):
    """EarthView tiles under a local folder or an s3://bucket/prefix, as 8-bit VHR windows."""

    name: ClassVar[str] = "earthview"
    kinds: ClassVar[tuple[Kind, ...]] = ("vhr",)
    radiometry_doc: ClassVar[str] = (
        "TOA asset (default): uint16 R, G, B, NIR; reflectance = DN / 10000; "
        "dn8 = clip(round(255 * reflectance / toa_full_scale), 0, 255), toa_full_scale 0.4 by "
        "default (vegetation NIR and bright roofs stay below it). VISUAL asset: the provider's "
        "uint8 RGB render, used as it is (no NIR)."
    )

    def __init__(self, kind: Kind, root: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(kind, root, options)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise self.error(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
        asset = str(self.options.get("asset", "TOA")).upper()
        if asset not in ASSETS:
            raise self.error(f"option asset must be TOA or VISUAL, not {self.options['asset']!r}")
        full_scale = self.options.get("toa_full_scale", DEFAULT_TOA_FULL_SCALE)
        if (
            isinstance(full_scale, bool)
            or not isinstance(full_scale, int | float)
            or not math.isfinite(full_scale)
            or full_scale <= 0
        ):
            raise self.error(f"option toa_full_scale must be a positive number, not {full_scale!r}")
        index = self.options.get("index", DEFAULT_INDEX)
        if not isinstance(index, str) or not index.strip("/"):
            raise self.error(f"option index must be a path relative to the root, not {index!r}")
        if not root:
            raise self.error("needs a root: a local folder or s3://bucket/prefix")
        self.asset = asset
        self.toa_full_scale = float(full_scale)
        self.index_path = index.strip("/")
        self._root = root.removeprefix("file://").rstrip("/")
        self._index: pa.Table | None = None
        self._client: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self._band_indexes())

    # -- search -------------------------------------------------------------------------------

    def search(self, cell: str, start: date, end: date) -> list[Scene]:
        try:
            area = cell_polygon(cell)
        except InvalidCellError as exc:
            raise self.error(str(exc), cell, start) from None
        table = self._load_index(cell, start)
        days = table["date"]
        mask = pc.and_(
            pc.greater_equal(days, pa.scalar(start, pa.date32())),
            pc.less(days, pa.scalar(end, pa.date32())),
        )
        rows = table.filter(mask)
        if rows.num_rows == 0:
            return []
        geoms = _geometries(rows["geometry"])
        hits = np.flatnonzero(shapely.intersects(geoms, area))
        by_day: dict[date, list[_Tile]] = {}
        paths = rows["json_path"].to_pylist()
        zones = rows["zone"].to_pylist()
        regions = rows["region"].to_pylist()
        dates = rows["date"].to_pylist()
        for i in hits:
            tile = _Tile(
                str(paths[i]).lstrip("/"),
                str(zones[i]).removeprefix("zone="),
                str(regions[i]).removeprefix("region="),
                dates[i],
                geoms[i],
            )
            by_day.setdefault(tile.day, []).append(tile)
        return [self._scene(tiles, cell) for _, tiles in sorted(by_day.items())]

    def _scene(self, tiles: list[_Tile], cell: str) -> Scene:
        parts = sorted(
            (self._tile_scene(t, cell) for t in tiles),
            key=lambda s: (-s.coverage, s.scene_id),
        )
        parts = _unique_ids(parts)
        if len(parts) == 1:
            return parts[0]
        footprint = shapely.union_all([p.footprint for p in parts])
        day = tiles[0].day
        digest = hashlib.sha256(
            "\n".join(sorted(str(p.properties["json_path"]) for p in parts)).encode()
        ).hexdigest()[:10]
        return Scene(
            scene_id=f"earthview-{day.isoformat()}-mosaic-{digest}",
            source=self.name,
            sensor=parts[0].sensor,
            gsd_m=GSD_M,
            crs=parts[0].crs,
            footprint=footprint,
            acquired=min(p.acquired for p in parts),
            cloud_cover=None,
            coverage=cell_coverage(footprint, cell),
            properties={
                "date": day.isoformat(),
                "regions": [p.properties["region"] for p in parts],
                "zones": sorted({str(p.properties["zone"]) for p in parts}),
            },
            parts=tuple(parts),
        )

    def _tile_scene(self, tile: _Tile, cell: str) -> Scene:
        crs = self._crs_of_zone(tile.zone, cell, tile.day)
        tif = _tif_path(tile.json_path)
        if tif is None:
            raise self.error(
                f"index row {tile.json_path!r} is not a .../json/..._metadata.json path",
                cell,
                tile.day,
            )
        return Scene(
            scene_id=f"earthview-{tile.day.isoformat()}-{tile.region}",
            source=self.name,
            sensor="Satellogic",
            gsd_m=GSD_M,
            crs=crs,
            footprint=tile.footprint,
            acquired=_acquired(tile),
            cloud_cover=None,
            coverage=cell_coverage(tile.footprint, cell),
            assets={
                "TOA": self._uri(f"{tif}_TOA.tif"),
                "VISUAL": self._uri(f"{tif}_VISUAL.tif"),
                "metadata": self._uri(tile.json_path),
            },
            properties={
                "date": tile.day.isoformat(),
                "zone": tile.zone,
                "region": tile.region,
                "json_path": tile.json_path,
            },
        )

    def _crs_of_zone(self, zone: str, cell: str, day: date) -> str:
        m = _ZONE.match(zone.strip().upper())
        if not m or not 1 <= int(m.group(1)) <= 60:
            raise self.error(f"index zone {zone!r} is not a UTM zone like 32N or 19S", cell, day)
        return f"EPSG:{(32600 if m.group(2) == 'N' else 32700) + int(m.group(1))}"

    def _load_index(self, cell: str, day: date) -> pa.Table:
        if self._index is not None:
            return self._index
        uri = self._uri(self.index_path)
        path = self._fetch(uri, what="index", cell=cell, day=day)
        try:
            schema = pq.read_schema(path)
            missing = [c for c in INDEX_COLUMNS if c not in schema.names]
            if missing:
                raise self.error(f"index {uri} lacks column(s) {', '.join(missing)}", cell, day)
            table = pq.read_table(path, columns=list(INDEX_COLUMNS))
        except (pa.ArrowException, OSError) as exc:
            raise self.error(
                f"index {uri} is not readable Parquet ({_line(exc)})", cell, day
            ) from None
        if not _is_geometry_type(table["geometry"].type):
            raise self.error(
                f"index {uri}: column geometry has type {table['geometry'].type}, "
                "not WKB (plain or GeoParquet) or WKT",
                cell,
                day,
            )
        days = _as_date32(table["date"])
        if days is None:
            raise self.error(
                f"index {uri}: column date has type {table['date'].type}, not a date", cell, day
            )
        self._index = table.set_column(table.schema.get_field_index("date"), "date", days)
        return self._index

    # -- read ---------------------------------------------------------------------------------

    def read(
        self, scene: Scene, grid: TargetGrid, bands: Sequence[str] | None = None
    ) -> BandWindow:
        available = self._band_indexes()
        names = tuple(bands) if bands is not None else tuple(available)
        day = scene.acquired.date()
        wrong = [b for b in names if b not in available]
        if wrong:
            raise self.error(
                f"the {self.asset} asset has no band(s) {', '.join(wrong)} "
                f"(it has {', '.join(available)})",
                day=day,
            )
        if scene.source != self.name:
            raise self.error(f"scene {scene.scene_id} is from {scene.source}, not earthview")
        windows = [
            self._read_part(part, grid, names, [available[b] for b in names], day)
            for part in (scene.parts or (scene,))
        ]
        return composite(windows)

    def _read_part(
        self, part: Scene, grid: TargetGrid, names: tuple[str, ...], indexes: list[int], day: date
    ) -> BandWindow:
        uri = part.assets.get(self.asset)
        if not uri:
            raise self.error(f"scene {part.scene_id} has no {self.asset} asset", day=day)
        path = self._fetch(uri, what=f"scene {part.scene_id}", day=day)
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise self.error(f"scene {part.scene_id}: {uri} has no CRS", day=day)
                if src.count < max(indexes):
                    raise self.error(
                        f"scene {part.scene_id}: {uri} has {src.count} band(s), "
                        f"expected {max(indexes)}",
                        day=day,
                    )
                data, valid = warp_to_grid(src, grid, indexes)
                has_nodata = src.nodata is not None
        except RasterioIOError as exc:
            raise self.error(
                f"scene {part.scene_id}: {uri} is not a readable raster ({_line(exc)})", day=day
            ) from None
        if not has_nodata:
            # No declared nodata: all bands 0 is the fill outside the imaged area, not a pixel.
            valid &= ~(np.nan_to_num(data, nan=0.0) == 0).all(axis=0)
        if self.asset == "TOA":
            reflectance = data.astype(np.float64) / TOA_QUANTIFICATION
            scaled = np.floor(255.0 * reflectance / self.toa_full_scale + 0.5)
            note = (
                f"TOA reflectance = DN / 10000, dn8 = 255 * reflectance / {self.toa_full_scale:g}"
            )
        else:
            scaled = np.floor(data.astype(np.float64) + 0.5)
            note = "VISUAL: the provider's 8-bit RGB render"
        dn8 = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.uint8)
        dn8[:, ~valid] = 0
        return BandWindow(dn8, names, grid, valid, "dn8", (part.scene_id,), (note,))

    # -- files --------------------------------------------------------------------------------

    def _band_indexes(self) -> dict[str, int]:
        return TOA_BANDS if self.asset == "TOA" else VISUAL_BANDS

    def _uri(self, rel: str) -> str:
        rel = rel.lstrip("/")
        if is_s3(self._root):
            bucket, prefix = split_s3(self._root)
            key = f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel
            return f"s3://{bucket}/{key}"
        return str(Path(self._root) / rel)

    def _fetch(self, uri: str, *, what: str, cell: str = "", day: date | None = None) -> Path:
        """A local path for `uri`, downloading s3:// objects once into the instance's folder."""
        if not is_s3(uri):
            if not Path(uri).is_file():
                raise self.error(f"{what}: no such file {uri}", cell, day)
            return Path(uri)
        folder = self._cache_dir() / hashlib.sha256(uri.encode()).hexdigest()[:16]
        done = folder / PurePosixPath(uri).name
        if done.is_file():
            return done
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return local_file(uri, folder, self._s3())
        except RasterError as exc:
            raise self.error(f"{what}: {_line(exc)}", cell, day) from None
        except Exception as exc:  # botocore's connection and permission errors
            raise self.error(f"{what}: cannot download {uri}: {_line(exc)}", cell, day) from None

    def _cache_dir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="flywheel-earthview-")
        return Path(self._tmp.name)

    def _s3(self) -> Any:
        if self._client is None:
            self._client = _s3_client()
        return self._client


def _s3_client() -> Any:
    """A boto3 client like the object store's; unsigned when no credentials are found."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    where = S3Endpoint.from_env()
    session = boto3.session.Session()
    config = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        signature_version=UNSIGNED if session.get_credentials() is None else None,
    )
    return session.client(
        "s3",
        endpoint_url=where.url,
        use_ssl=where.use_ssl,
        region_name=where.region,
        config=config,
    )


def _tif_path(json_path: str) -> str | None:
    """The rasters' common stem: `/json/` -> `/tif/`, without `_metadata.json`."""
    if not json_path.endswith("_metadata.json"):
        return None
    rooted = "/" + json_path
    if "/json/" not in rooted:
        return None
    return rooted.replace("/json/", "/tif/", 1).removesuffix("_metadata.json").lstrip("/")


def _acquired(tile: _Tile) -> datetime:
    """The time in the item id when it has one for the tile's date, else the date at 00:00 UTC."""
    m = _STAMP.match(PurePosixPath(tile.json_path).name)
    if m and m.group(1) == tile.day.strftime("%Y%m%d"):
        try:
            return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime(tile.day.year, tile.day.month, tile.day.day, tzinfo=UTC)


def _unique_ids(parts: list[Scene]) -> list[Scene]:
    """Two tiles of one region and date (two passes) get ids told apart by their paths."""
    seen: dict[str, int] = {}
    for p in parts:
        seen[p.scene_id] = seen.get(p.scene_id, 0) + 1
    out = []
    for p in parts:
        if seen[p.scene_id] > 1:
            tag = hashlib.sha256(str(p.properties["json_path"]).encode()).hexdigest()[:8]
            p = replace(p, scene_id=f"{p.scene_id}-{tag}")
        out.append(p)
    return out


def _as_date32(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    kind = column.type
    try:
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pc.cast(pc.utf8_slice_codeunits(column, 0, 10), pa.date32())
        if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
            return pc.cast(column, pa.date32())
    except pa.ArrowInvalid:
        return None
    return None


def _is_geometry_type(kind: pa.DataType) -> bool:
    if isinstance(kind, pa.ExtensionType):
        kind = kind.storage_type
    return bool(
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _geometries(column: pa.ChunkedArray) -> np.ndarray:
    """Shapely geometries from WKB (plain or GeoParquet) or WKT; None where a row has none."""
    if isinstance(column.type, pa.ExtensionType):
        column = pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
    values = np.asarray(column.to_pylist(), dtype=object)
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return np.asarray(shapely.from_wkt(values))
    return np.asarray(shapely.from_wkb(values))


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
