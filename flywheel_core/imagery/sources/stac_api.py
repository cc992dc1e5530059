"""Sentinel-2 L2A from a STAC API: Earth Search v1 by default, any API serving the same items.

`search` asks the API (`pystac-client`, its real paging and conformance code) for the items of
the configured collections over the cell's bounding box and date window, keeps one item per
acquisition (the first collection's: Collection 1 before the older `sentinel-2-l2a`), drops
items whose footprint misses the cell, and joins the items of one solar day that each cover only
part of the cell (a cell across two MGRS tiles) into one mosaic scene whose `parts` are read
and composited. `choose` reads only the SCL band of the best candidates on a 20 m grid over the
cell and takes the clearest. `read` opens each band's COG over HTTP(S) (or `s3://`) with
rasterio, fetching only the window's bytes (range requests), and turns DNs into reflectance
with the rule of `s2_radiometry.py`: the item's metadata first, the dark pixels last.

Options: `collections` (default sentinel-2-c1-l2a, sentinel-2-l2a; earlier ones win duplicates),
`max_cloud` (percent, default 60, sent as the query `eo:cloud_cover < max_cloud`), `timeout_s`
(per HTTP request, API and COGs; default 60) and `max_candidates` (scenes whose SCL `choose`
reads, default 8). A scene keeps its item's properties, plus `collection`, `flywheel:cell` (the
cell it was found for, so errors of `read` can name it) and `flywheel:assets` (each band's asset
fields, such as `raster:bands`, which decide its radiometry).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import pystac
import rasterio
import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from rasterio.errors import RasterioError
from rasterio.features import geometry_mask
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from urllib3.util.retry import Retry

from flywheel_core.geo.projection import reproject
from flywheel_core.geo.s2 import InvalidCellError, cell_polygon
from flywheel_core.imagery.l2a import SCL_CLOUD_SHADOW, SCL_CLOUDS, SCL_NO_DATA
from flywheel_core.imagery.sources.s2_radiometry import (
    L2ARadiometry,
    check_dark_pixels,
    from_metadata,
)
from flywheel_core.imagery.sources.types import (
    SCL,
    BandWindow,
    Choice,
    ImagerySource,
    Kind,
    Scene,
    TargetGrid,
    cell_coverage,
)
from flywheel_core.imagery.sources.window import composite, warp_to_grid

log = logging.getLogger(__name__)

EARTH_SEARCH_V1 = "https://earth-search.aws.element84.com/v1"
DEFAULT_COLLECTIONS: tuple[str, ...] = ("sentinel-2-c1-l2a", "sentinel-2-l2a")
DEFAULT_MAX_CLOUD = 60.0
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_CANDIDATES = 8
OPTIONS = ("collections", "max_cloud", "timeout_s", "max_candidates")
PAGE_LIMIT = 100
HTTP_RETRIES = 2  # per API request, for connection errors, timeouts, 429 and 5xx answers
GSD_M = 10.0
SCL_GRID_RES_M = 20.0
SAME_ACQUISITION_S = 120.0
FULL_COVERAGE = 0.999  # an item covering at least this much of the cell is not mosaicked
SCL_BAD = (SCL_NO_DATA, SCL_CLOUD_SHADOW, *SCL_CLOUDS)
CELL_KEY = "flywheel:cell"
ASSETS_KEY = "flywheel:assets"  # band -> the asset's extra fields (raster:bands, eo:bands, ...)
COLLECTION_KEY = "collection"

# Earth Search v1 asset keys (common names) -> L2A band names; upper-case keys such as "B04"
# (other APIs) are taken as they are.
ASSET_BANDS: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "swir16": "B11",
    "swir22": "B12",
    "scl": SCL,
}
BAND_NAMES: tuple[str, ...] = tuple(ASSET_BANDS.values())

# GDAL settings for reading COGs over HTTP: no directory listing next to each file (a plain HTTP
# server answers it with an HTML page or a 404, an S3 bucket with a slow LIST), consecutive
# ranges merged into one request, a cache for the header, a few retries, public S3 unsigned.
_GDAL_HTTP: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "VSI_CACHE": "TRUE",
    "AWS_NO_SIGN_REQUEST": "YES",
}


@dataclass(frozen=True)
class _Item:
    scene: Scene
    rank: int  # index of its collection in the collections option
    uri: str | None  # s2:product_uri
    tile: str | None  # MGRS tile, e.g. 32UPU
    solar_day: date


class StacApiSource(ImagerySource):
    """Sentinel-2 L2A items of a STAC API as MSI windows (surface reflectance and SCL)."""

    name: ClassVar[str] = "stac-api"
    kinds: ClassVar[tuple[Kind, ...]] = ("msi",)
    radiometry_doc: ClassVar[str] = (
        "uint16 L2A DNs per band COG, nodata 0; reflectance = (DN + offset) / 10000 with the "
        "offset from the item's metadata (asset raster:bands scale/offset, then "
        "earthsearch:boa_offset_applied, then s2:processing_baseline >= 04.00 -> -1000, then the "
        "acquisition date), dropped to 0 when it would make the window's dark pixels negative "
        "(flags reported wrong, Element84/earth-search #66, #71); decided per item, the rule "
        "that applied is in the window's notes. SCL as class codes."
    )

    def __init__(self, kind: Kind, root: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(kind, root, options)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise self.error(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
        url = (root or EARTH_SEARCH_V1).strip()
        if not url.startswith(("http://", "https://")):
            raise self.error(f"root must be a STAC API URL (http:// or https://), not {root!r}")
        self.url = url.rstrip("/")
        collections = _collections(self.options.get("collections", DEFAULT_COLLECTIONS))
        if collections is None:
            raise self.error(
                "option collections must be a non-empty list of collection ids, not "
                f"{self.options.get('collections')!r}"
            )
        self.collections = collections
        max_cloud = _number(self.options.get("max_cloud", DEFAULT_MAX_CLOUD))
        if max_cloud is None or not 0 < max_cloud <= 100:
            raise self.error(
                f"option max_cloud must be a percentage in (0, 100], not "
                f"{self.options.get('max_cloud')!r}"
            )
        timeout = _number(self.options.get("timeout_s", DEFAULT_TIMEOUT_S))
        if timeout is None or timeout <= 0:
            raise self.error(
                f"option timeout_s must be a positive number of seconds, not "
                f"{self.options.get('timeout_s')!r}"
            )
        candidates = self.options.get("max_candidates", DEFAULT_MAX_CANDIDATES)
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise self.error(
                f"option max_candidates must be a positive integer, not {candidates!r}"
            )
        self.max_cloud = max_cloud
        self.timeout_s = timeout
        self.max_candidates = candidates

    # -- search -------------------------------------------------------------------------------

    def search(self, cell: str, start: date, end: date) -> list[Scene]:
        try:
            area = cell_polygon(cell)
        except InvalidCellError as exc:
            raise self.error(str(exc), cell, start) from None
        if end <= start:
            return []
        window = f"{start.isoformat()}/{(end - timedelta(days=1)).isoformat()}"
        query = {"eo:cloud_cover": {"lt": self.max_cloud}} if self.max_cloud < 100 else None
        try:
            io = StacApiIO(timeout=self.timeout_s, max_retries=_retries())
            client = Client.open(self.url, stac_io=io, timeout=self.timeout_s)
            found = client.search(
                collections=list(self.collections),
                bbox=list(area.bounds),
                datetime=window,
                query=query,
                limit=PAGE_LIMIT,
            )
            items = list(found.items())
        except APIError as exc:
            status = getattr(exc, "status_code", None)
            problem = (
                f"STAC API {self.url} answered HTTP {status}: {_one_line(exc)}"
                if status
                else f"STAC API {self.url} unreachable: {_one_line(exc)}"
            )
            raise self.error(problem, cell, start) from None
        except (requests.RequestException, pystac.STACError, pystac.STACTypeError) as exc:
            raise self.error(f"STAC API {self.url}: {_one_line(exc)}", cell, start) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"STAC API {self.url} answered something unreadable: {_one_line(exc)}"
            raise self.error(problem, cell, start) from None
        parsed = [it for item in items if (it := self._item(item, cell, start))]
        unique = _unique(parsed)
        kept = [
            it for it in unique if it.scene.coverage > 0 and start <= it.scene.acquired.date() < end
        ]
        dropped = len(parsed) - len(unique)
        if dropped:
            log.info(
                "%s: %s %s: %d duplicate item(s) of another collection dropped",
                self.name,
                cell,
                window,
                dropped,
            )
        scenes = _mosaics(kept, cell)
        return sorted(scenes, key=lambda s: (s.acquired, s.scene_id))

    def _item(self, item: pystac.Item, cell: str, day: date) -> _Item | None:
        acquired = _acquired(item)
        if acquired is None:
            log.warning("%s: item %s has no datetime; skipped", self.name, item.id)
            return None
        props = dict(item.properties)
        crs = _crs(item)
        if crs is None:
            raise self.error(
                f"item {item.id} has no proj:epsg, proj:code or mgrs:utm_zone", cell, day
            )
        assets: dict[str, str] = {}
        fields: dict[str, dict[str, Any]] = {}
        for key, asset in item.assets.items():
            band = _band_of(key)
            if band is None or band in assets:
                continue
            assets[band] = asset.get_absolute_href() or asset.href
            fields[band] = dict(asset.extra_fields)
        if item.geometry is None:
            log.warning("%s: item %s has no geometry; skipped", self.name, item.id)
            return None
        footprint = shape(item.geometry)
        collection = item.collection_id or ""
        rank = (
            self.collections.index(collection)
            if collection in self.collections
            else len(self.collections)
        )
        cloud = _number(props.get("eo:cloud_cover"))
        scene = Scene(
            scene_id=item.id,
            source=self.name,
            sensor=str(props.get("platform") or "sentinel-2"),
            gsd_m=GSD_M,
            crs=crs,
            footprint=footprint,
            acquired=acquired,
            cloud_cover=cloud,
            coverage=cell_coverage(footprint, cell),
            assets=assets,
            properties={
                **props,
                COLLECTION_KEY: collection,
                CELL_KEY: cell,
                ASSETS_KEY: fields,
            },
        )
        lon = footprint.centroid.x if not footprint.is_empty else 0.0
        solar = (acquired + timedelta(hours=lon / 15.0)).date()
        uri = props.get("s2:product_uri")
        return _Item(scene, rank, str(uri) if uri else None, _tile(item), solar)

    # -- choose -------------------------------------------------------------------------------

    def choose(self, scenes: Sequence[Scene], cell: str, start: date, end: date) -> Choice | None:
        """The clearest scene by its SCL over the cell (clear pixels / the cell's pixels).

        A scene's score is the fraction of the cell's 20 m pixels that have data and are not
        no data, cloud shadow or cloud (SCL 0, 3, 8, 9, 10): the clear fraction of its valid
        pixels times its coverage, both measured on the pixels. Ties go to the lower
        eo:cloud_cover, then the earlier scene. Only the `max_candidates` scenes with the lowest
        eo:cloud_cover (then most coverage) are read; one without an SCL asset scores 0.
        """
        if not scenes:
            return None
        ranked = sorted(scenes, key=_metadata_rank)
        candidates = ranked[: self.max_candidates]
        if len(candidates) < len(ranked):
            log.info(
                "%s: %s %s..%s: reading the SCL of the %d of %d scenes with the lowest cloud cover",
                self.name,
                cell,
                start,
                end,
                len(candidates),
                len(ranked),
            )
        area = cell_polygon(cell)
        scores: dict[str, float] = {}
        for scene in candidates:
            scores[scene.scene_id] = self._clear_fraction(scene, area)
        best = min(candidates, key=lambda s: (-scores[s.scene_id], _cloud(s), s.acquired))
        reason = (
            f"clearest over the cell by SCL: {scores[best.scene_id]:.1%} of the cell's 20 m "
            f"pixels clear (not no data, cloud shadow or cloud); {len(candidates)} of "
            f"{len(scenes)} candidates read, ties to the lower eo:cloud_cover, then the earlier"
        )
        return Choice(best, reason, scores)

    def _clear_fraction(self, scene: Scene, area: BaseGeometry) -> float:
        if any(SCL not in part.assets for part in scene.parts or (scene,)):
            log.warning("%s: scene %s has no SCL asset; scored 0", self.name, scene.scene_id)
            return 0.0
        grid = TargetGrid.around(area, scene.crs, SCL_GRID_RES_M)
        window = self.read(scene, grid, [SCL])
        inside = geometry_mask(
            [mapping(reproject(area, 4326, scene.crs))],
            out_shape=(grid.height, grid.width),
            transform=grid.transform,
            invert=True,
        )
        if not inside.any():  # a cell smaller than a pixel: the pixels around it
            inside = np.ones_like(inside)
        scl = window.band(SCL)
        clear = window.valid & inside & ~np.isin(np.nan_to_num(scl, nan=0.0), SCL_BAD)
        return round(float(clear.sum()) / float(inside.sum()), 4)

    # -- read ---------------------------------------------------------------------------------

    def read(
        self, scene: Scene, grid: TargetGrid, bands: Sequence[str] | None = None
    ) -> BandWindow:
        names = tuple(bands) if bands is not None else self.bands
        cell = str(scene.properties.get(CELL_KEY, ""))
        day = scene.acquired.date()
        unknown = [b for b in names if b not in BAND_NAMES]
        if unknown:
            raise self.error(
                f"unknown band(s) {', '.join(unknown)}; Sentinel-2 L2A has {', '.join(BAND_NAMES)}",
                cell,
                day,
            )
        if not names:
            raise self.error("no band to read", cell, day)
        windows = [self._read_item(part, grid, names) for part in scene.parts or (scene,)]
        return windows[0] if len(windows) == 1 else composite(windows)

    def _read_item(self, item: Scene, grid: TargetGrid, names: tuple[str, ...]) -> BandWindow:
        cell = str(item.properties.get(CELL_KEY, ""))
        day = item.acquired.date()
        for band in names:
            if band not in item.assets:
                raise self.error(
                    f"scene {item.scene_id} has no asset for band {band} "
                    f"(it has {', '.join(sorted(item.assets)) or 'none'})",
                    cell,
                    day,
                )
        dns: dict[str, np.ndarray] = {}
        valid = np.ones((grid.height, grid.width), dtype=bool)
        with rasterio.Env(**self._gdal_env()):
            for band in names:
                href = item.assets[band]
                try:
                    with rasterio.open(href) as src:
                        data, ok = warp_to_grid(src, grid, [1], nearest=band == SCL)
                except (RasterioError, OSError, ValueError) as exc:
                    raise self.error(
                        f"cannot read band {band} of scene {item.scene_id} from {href}: "
                        f"{_one_line(exc)}",
                        cell,
                        day,
                    ) from None
                dns[band] = data[0]
                valid &= ok
        out = np.full((len(names), grid.height, grid.width), np.nan, dtype=np.float32)
        notes: list[str] = []
        fields = item.properties.get(ASSETS_KEY, {})
        groups: dict[tuple[float, float, str], list[str]] = {}
        for band in names:
            if band == SCL:
                continue
            rule = from_metadata(item.properties, fields.get(band), day)
            groups.setdefault((rule.offset_dn, rule.quantification, rule.rule), []).append(band)
        for (offset, quant, text), group in groups.items():
            values = np.concatenate([dns[b][np.isfinite(dns[b])] for b in group])
            checked = check_dark_pixels(L2ARadiometry(offset, quant, text), values)
            for band in group:
                out[names.index(band)] = checked.reflectance(dns[band], nodata=None)
            notes.append(
                f"{item.scene_id} {','.join(group)}: {checked.rule}: reflectance = "
                f"(DN {checked.offset_dn:+g}) / {checked.quantification:g}"
            )
        if SCL in names:
            out[names.index(SCL)] = dns[SCL]
        out[:, ~valid] = np.nan
        return BandWindow(
            out, names, grid, valid, "boa_reflectance", (item.scene_id,), tuple(notes)
        )

    def _gdal_env(self) -> dict[str, str]:
        seconds = str(max(1, math.ceil(self.timeout_s)))
        return {**_GDAL_HTTP, "GDAL_HTTP_TIMEOUT": seconds, "GDAL_HTTP_CONNECTTIMEOUT": seconds}


# -- helpers ----------------------------------------------------------------------------------


def _retries() -> Retry:
    """Fewer retries than pystac-client's five: a dead endpoint fails in ~3 timeouts, not 6."""
    return Retry(
        total=HTTP_RETRIES,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "POST", "HEAD"}),
        raise_on_status=False,
    )


def _collections(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        return None
    if not all(isinstance(v, str) and v.strip() for v in value):
        return None
    return tuple(dict.fromkeys(v.strip() for v in value))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _band_of(key: str) -> str | None:
    if key in ASSET_BANDS:
        return ASSET_BANDS[key]
    return key if key in BAND_NAMES else None


def _acquired(item: pystac.Item) -> datetime | None:
    when = item.datetime
    if when is None:
        raw = item.properties.get("start_datetime")
        if not raw:
            return None
        when = pystac.utils.str_to_datetime(str(raw))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _crs(item: pystac.Item) -> str | None:
    places: list[Mapping[str, Any]] = [item.properties]
    places += [a.extra_fields for a in item.assets.values()]
    for place in places:
        epsg = place.get("proj:epsg")
        if isinstance(epsg, int) and not isinstance(epsg, bool):
            return f"EPSG:{epsg}"
        code = place.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            return code.upper()
    zone = item.properties.get("mgrs:utm_zone")
    band = str(item.properties.get("mgrs:latitude_band", "N")).upper()
    if isinstance(zone, int) and 1 <= zone <= 60:
        return f"EPSG:{32600 + zone if band >= 'N' else 32700 + zone}"
    return None


def _tile(item: pystac.Item) -> str | None:
    props = item.properties
    grid = props.get("grid:code")
    if isinstance(grid, str) and grid:
        return grid.upper().removeprefix("MGRS-")
    parts = (props.get("mgrs:utm_zone"), props.get("mgrs:latitude_band"))
    square = props.get("mgrs:grid_square")
    if all(p is not None for p in (*parts, square)):
        return f"{parts[0]}{parts[1]}{square}".upper()
    tile = props.get("s2:tile_id") or props.get("s2:mgrs_tile")
    return str(tile).upper() if tile else None


def _same_acquisition(a: _Item, b: _Item) -> bool:
    """Whether two items are one acquisition of one tile (in two collections, or reprocessed).

    The same product URI, or the same MGRS tile within `SAME_ACQUISITION_S` (reprocessed
    Collection 1 items carry another baseline, so another product URI, and timestamps that may
    differ in the fractions of a second; one tile is not seen twice within minutes).
    """
    if a.uri and a.uri == b.uri:
        return True
    if a.tile is None or a.tile != b.tile:
        return False
    return abs((a.scene.acquired - b.scene.acquired).total_seconds()) < SAME_ACQUISITION_S


def _unique(items: Sequence[_Item]) -> list[_Item]:
    """One item per acquisition: the one of the earliest collection in the option, then first."""
    kept: list[_Item] = []
    for _, it in sorted(enumerate(items), key=lambda pair: (pair[1].rank, pair[0])):
        if not any(_same_acquisition(it, k) for k in kept):
            kept.append(it)
    return kept


def _mosaics(items: Sequence[_Item], cell: str) -> list[Scene]:
    """Items as scenes; the partial items of one solar day joined into one mosaic scene."""
    scenes = [it.scene for it in items if it.scene.coverage >= FULL_COVERAGE]
    by_day: dict[date, list[Scene]] = {}
    for it in items:
        if it.scene.coverage < FULL_COVERAGE:
            by_day.setdefault(it.solar_day, []).append(it.scene)
    for day, group in by_day.items():
        if len(group) == 1:
            scenes.append(group[0])
            continue
        parts = tuple(sorted(group, key=lambda s: (-s.coverage, s.acquired, s.scene_id)))
        footprint = unary_union([p.footprint for p in parts])
        known = [p for p in parts if p.cloud_cover is not None]
        weight = sum(p.coverage for p in known)
        cloud = (  # the parts' cloud cover, weighted by how much of the cell each covers
            sum(_cloud(p) * p.coverage for p in known) / weight if known and weight > 0 else None
        )
        sensors = {p.sensor for p in parts}
        scenes.append(
            Scene(
                scene_id="+".join(p.scene_id for p in parts),
                source=parts[0].source,
                sensor=sensors.pop() if len(sensors) == 1 else "sentinel-2",
                gsd_m=GSD_M,
                crs=parts[0].crs,
                footprint=footprint,
                acquired=min(p.acquired for p in parts),
                cloud_cover=cloud,
                coverage=cell_coverage(footprint, cell),
                properties={
                    CELL_KEY: cell,
                    "mosaic_of": [p.scene_id for p in parts],
                    "solar_day": day.isoformat(),
                    COLLECTION_KEY: ",".join(
                        dict.fromkeys(str(p.properties.get(COLLECTION_KEY)) for p in parts)
                    ),
                },
                parts=parts,
            )
        )
    return scenes


def _cloud(scene: Scene) -> float:
    return scene.cloud_cover if scene.cloud_cover is not None else 100.0


def _metadata_rank(scene: Scene) -> tuple[float, float, datetime]:
    return (_cloud(scene), -round(scene.coverage, 3), scene.acquired)
