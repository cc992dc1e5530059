"""Local rasters: a folder of GeoTIFFs/COGs, or a static STAC catalog, with a band mapping.

Scenes. In a folder, every multi-band raster is a scene, and so is every directory whose rasters
are single bands named by band (`B02.tif ... SCL.tif`, the layout of an unpacked L2A product).
In a static STAC catalog (`root` ends in `.json`), every item is a scene, optionally only those of
`collection`. Files are described by the raster registry's own reader
(`flywheel_core.rasters.inspect.inspect_raster`): the same checks, the same errors, the same
acquisition-time tags. A file with no acquisition time is offered for every date window, marked
`acquired_known: False`.

Bands. The option `band_map` maps the flywheel's band names (`red, green, blue, nir` for VHR;
`B02 ... B12, SCL` for MSI) to the source's: a band description or file stem (`"B04"`), a
1-based band number (`"3"`), or in a catalog an asset key with an optional band (`"visual:1"`).
Unmapped bands are found by name (common aliases: `blue` for B02, `scl` for SCL, ...); a
three- or four-band VHR raster with unnamed bands is taken as R, G, B (, NIR).

Radiometry. VHR must be 8-bit DN, or give `dn_scale` (DN8 = value * dn_scale, clipped). MSI DNs
become reflectance by, in order: the option `boa_offset` (DN), the file's `BOA_ADD_OFFSET` tag (as
L2A products carry it), the band's GDAL scale/offset, float pixels taken as reflectance already,
and last the Sentinel-2 rule of `s2_radiometry` (baseline by date, then the dark-pixel check).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pystac
import rasterio
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery.catalog import CatalogError, StacCatalog
from flywheel_core.imagery.sources import s2_radiometry
from flywheel_core.imagery.sources.types import (
    SCL,
    BandWindow,
    ImagerySource,
    Kind,
    Scene,
    SourceError,
    TargetGrid,
    cell_coverage,
)
from flywheel_core.imagery.sources.window import warp_to_grid
from flywheel_core.rasters.inspect import RasterError, RasterInfo, inspect_raster

log = logging.getLogger(__name__)

ALIASES: dict[str, tuple[str, ...]] = {
    "red": ("red", "r"),
    "green": ("green", "g"),
    "blue": ("blue", "b"),
    "nir": ("nir", "n", "nir08"),
    "B02": ("b02", "blue", "b2"),
    "B03": ("b03", "green", "b3"),
    "B04": ("b04", "red", "b4"),
    "B05": ("b05", "rededge1", "b5"),
    "B06": ("b06", "rededge2", "b6"),
    "B07": ("b07", "rededge3", "b7"),
    "B08": ("b08", "nir", "b8"),
    "B8A": ("b8a", "nir08"),
    "B11": ("b11", "swir16"),
    "B12": ("b12", "swir22"),
    SCL: ("scl",),
}
VHR_REQUIRED = ("red", "green", "blue")
OPTIONS = ("band_map", "collection", "dn_scale", "boa_offset", "quantification")
SEP = "#"  # an asset value is "<href>#<1-based band>"


@dataclass(frozen=True)
class _Entry:
    """A file (or asset) of a scene: its key, where it is, and its bands' names."""

    key: str
    href: str
    band_names: tuple[str, ...]


def band_ref(href: str, index: int) -> str:
    return f"{href}{SEP}{index}"


def split_ref(ref: str) -> tuple[str, int]:
    href, _, index = ref.rpartition(SEP)
    return href, int(index)


class LocalSource(ImagerySource):
    name = "local"
    kinds: ClassVar[tuple[Kind, ...]] = ("vhr", "msi")
    radiometry_doc = (
        "VHR: 8-bit DN as stored (or value * dn_scale); MSI: L2A DN to reflectance by "
        "boa_offset, the BOA_ADD_OFFSET tag, GDAL scale/offset, or the Sentinel-2 date rule"
    )

    def __init__(self, kind: Kind, root: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(kind, root, options)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise self.error(f"unknown option(s) {unknown}; known: {', '.join(OPTIONS)}")
        if not root:
            raise self.error("no root: give a folder of GeoTIFFs/COGs or a catalog.json")
        self.band_map: dict[str, str] = {
            str(k): str(v) for k, v in (self.options.get("band_map") or {}).items()
        }
        bad = sorted(set(self.band_map) - set(self.bands))
        if bad:
            raise self.error(f"band_map names {bad}, not {self.kind} bands {list(self.bands)}")
        self._scenes: list[Scene] | None = None
        self._unusable: list[tuple[BaseGeometry, str]] = []  # footprint, why (folder mode)
        self._catalog: StacCatalog | None = None

    # -- scenes ------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return Path(self.root).expanduser()

    def _stac(self) -> StacCatalog | None:
        if self.path.suffix.lower() != ".json":
            return None
        if self._catalog is None:
            self._catalog = StacCatalog(self.path)
        return self._catalog

    def search(self, cell: str, start: date, end: date) -> list[Scene]:
        catalog = self._stac()
        if catalog is not None:
            return self._search_catalog(catalog, cell, start, end)
        if not self.path.is_dir():
            raise self.error(f"{self.path} is neither a folder nor a catalog.json", cell, start)
        t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
        t1 = datetime(end.year, end.month, end.day, tzinfo=UTC)
        area = cell_polygon(cell)
        found = []
        for scene in self._folder_scenes():
            if not scene.footprint.intersects(area):
                continue
            known = scene.properties.get("acquired_known", True)
            if known and not t0 <= scene.acquired < t1:
                continue
            acquired = scene.acquired if known else t0
            found.append(_with(scene, coverage=cell_coverage(scene.footprint, cell), at=acquired))
        if not found:
            for footprint, problem in self._unusable:
                if footprint.intersects(area):
                    raise self.error(problem, cell, start)
        return found

    def _search_catalog(
        self, catalog: StacCatalog, cell: str, start: date, end: date
    ) -> list[Scene]:
        try:
            items = catalog.candidates(
                self.options.get("collection"), cell_polygon(cell), start, end
            )
        except CatalogError as exc:
            raise self.error(str(exc), cell, start) from None
        scenes = []
        for ref, item in items:
            entries = [
                e for key, a in item.assets.items() if (e := _asset_entry(key, a)) is not None
            ]
            assets = self._resolve(entries, ref.item_id, cell, start)
            crs = f"EPSG:{ref.epsg}" if ref.epsg else _file_crs(split_ref(assets[self.bands[0]])[0])
            scenes.append(
                Scene(
                    scene_id=ref.item_id,
                    source=self.name,
                    sensor=ref.collection or str(item.properties.get("platform", "")),
                    gsd_m=float(item.properties.get("gsd") or _file_gsd(assets)),
                    crs=crs,
                    footprint=ref.footprint,
                    acquired=ref.acquired,
                    cloud_cover=ref.cloud_cover,
                    coverage=ref.coverage,
                    assets=assets,
                    properties=dict(item.properties),
                )
            )
        return scenes

    def _folder_scenes(self) -> list[Scene]:
        if self._scenes is not None:
            return self._scenes
        files = sorted(
            p for p in self.path.rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file()
        )
        infos: list[RasterInfo] = []
        unreadable: list[str] = []
        for p in files:
            try:
                infos.append(inspect_raster(p))
            except RasterError as exc:
                log.warning("%s: skipped: %s", self.name, exc)
                unreadable.append(str(exc))
        if unreadable and not infos:  # nothing usable at all: say why, not "no scene"
            more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
            raise self.error(f"no usable raster in {self.path}: {unreadable[0]}{more}")
        groups: dict[str, list[RasterInfo]] = {}
        for info in infos:
            if info.count == 1 and band_key(info.path.stem, self.bands) is not None:
                groups.setdefault(str(info.path.parent), []).append(info)
            else:
                groups[str(info.path)] = [info]
        scenes = []
        for key, members in groups.items():
            first = members[0]
            entries = [_file_entry(i, self.bands, grouped=len(members) > 1) for i in members]
            footprint = first.footprint
            for m in members[1:]:
                footprint = footprint.intersection(m.footprint)
            try:
                assets = self._resolve(entries, key)
            except SourceError as exc:
                log.warning("%s: skipped: %s", self.name, exc)
                self._unusable.append((footprint, exc.problem))
                continue
            times = [m.acquired or time_in_name(m.path.stem) for m in members]
            acquired = next((t for t in times if t is not None), None)
            scenes.append(
                Scene(
                    scene_id=Path(key).relative_to(self.path.resolve()).as_posix()
                    if Path(key).is_relative_to(self.path.resolve())
                    else key,
                    source=self.name,
                    sensor=first.tags.get("SENSOR", self.kind),
                    gsd_m=min(m.gsd_m for m in members),
                    crs=first.crs,
                    footprint=footprint,
                    acquired=acquired or datetime(1970, 1, 1, tzinfo=UTC),
                    cloud_cover=None,
                    coverage=0.0,
                    assets=assets,
                    properties={"acquired_known": acquired is not None, "dtype": first.dtype},
                )
            )
        log.info("%s: %d scenes in %s", self.name, len(scenes), self.path)
        self._scenes = scenes
        return scenes

    def _resolve(
        self, entries: Sequence[_Entry], scene: str, cell: str = "", day: date | None = None
    ) -> dict[str, str]:
        """Flywheel band -> "href#band" for one scene's files, by `band_map`, then by name."""
        found: dict[str, str] = {}
        for band in self.bands:
            ref = _match(self.band_map.get(band), band, entries)
            if ref is not None:
                found[band] = ref
        if self.kind == "vhr" and not all(b in found for b in VHR_REQUIRED):
            multi = [e for e in entries if len(e.band_names) >= 3]
            if len(multi) == 1 and not self.band_map:
                e = multi[0]
                found = {
                    b: band_ref(e.href, i + 1)
                    for i, b in enumerate(self.bands[: len(e.band_names)])
                }
        required = VHR_REQUIRED if self.kind == "vhr" else self.bands
        missing = [b for b in required if b not in found]
        if missing:
            names = sorted({n for e in entries for n in (e.key, *e.band_names)})
            raise self.error(
                f"scene {scene} lacks bands {missing} (it has {names}); map them with the "
                "band_map option",
                cell,
                day,
            )
        return found

    # -- pixels ------------------------------------------------------------------------------

    def read(
        self, scene: Scene, grid: TargetGrid, bands: Sequence[str] | None = None
    ) -> BandWindow:
        names = tuple(b for b in (bands or self.bands) if b in scene.assets)
        missing = [b for b in (bands or ()) if b not in scene.assets]
        if missing:
            raise self.error(f"scene {scene.scene_id} has no band(s) {missing}")
        by_file: dict[str, list[tuple[str, int]]] = {}
        for b in names:
            href, index = split_ref(scene.assets[b])
            by_file.setdefault(href, []).append((b, index))
        layers: dict[str, np.ndarray] = {}
        rules: dict[str, s2_radiometry.L2ARadiometry | None] = {}
        valid = np.ones((grid.height, grid.width), dtype=bool)
        notes: list[str] = []
        for href, members in by_file.items():
            try:
                src_ctx = rasterio.open(href)
            except rasterio.errors.RasterioError as exc:
                raise self.error(f"scene {scene.scene_id}: cannot open {href}: {exc}") from None
            with src_ctx as src:
                for band, index in members:
                    data, ok = warp_to_grid(src, grid, [index], nearest=band == SCL)
                    layers[band] = data[0]
                    if band != SCL:
                        valid &= ok
                    if self.kind == "vhr":
                        layers[band], note = self._dn8(src, index, band, data[0], scene)
                        notes.append(note)
                    elif band != SCL:
                        rules[band] = self._stated_l2a(src, index)
        if rules:
            notes.extend(self._to_reflectance(layers, rules, scene))
        stack = np.stack([layers[b] for b in names])
        radiometry = "dn8" if self.kind == "vhr" else "boa_reflectance"
        kept = tuple(dict.fromkeys(n for n in notes if n))
        return BandWindow(stack, names, grid, valid, radiometry, (scene.scene_id,), kept)

    def _dn8(
        self, src: rasterio.io.DatasetReader, index: int, band: str, dn: np.ndarray, scene: Scene
    ) -> tuple[np.ndarray, str]:
        if src.dtypes[index - 1] == "uint8":
            return dn, ""
        scale = self.options.get("dn_scale")
        if scale is None:
            raise self.error(
                f"scene {scene.scene_id}: VHR band {band} is {src.dtypes[index - 1]}, not "
                "8-bit: set the dn_scale option (DN8 = value * dn_scale)"
            )
        return np.clip(np.rint(dn * float(scale)), 0, 255), f"dn8 = value * {scale}"

    def _stated_l2a(
        self, src: rasterio.io.DatasetReader, index: int
    ) -> s2_radiometry.L2ARadiometry | None:
        """The radiometry the settings or the file state; None leaves it to the date rule."""
        quant = float(self.options.get("quantification", s2_radiometry.QUANTIFICATION))
        if "boa_offset" in self.options:
            return s2_radiometry.L2ARadiometry(
                float(self.options["boa_offset"]), quant, "option boa_offset"
            )
        tags = src.tags()
        if "BOA_ADD_OFFSET" in tags:
            q = float(tags.get("BOA_QUANTIFICATION_VALUE", quant))
            return s2_radiometry.L2ARadiometry(float(tags["BOA_ADD_OFFSET"]), q, "BOA_ADD_OFFSET")
        scale, offset = src.scales[index - 1], src.offsets[index - 1]
        if scale not in (0, 1) or offset != 0:
            return s2_radiometry.L2ARadiometry(offset / scale, 1 / scale, "GDAL scale/offset")
        if src.dtypes[index - 1].startswith("float"):
            return s2_radiometry.L2ARadiometry(0.0, 1.0, "float pixels taken as reflectance")
        return None

    def _to_reflectance(
        self,
        layers: dict[str, np.ndarray],
        rules: Mapping[str, s2_radiometry.L2ARadiometry | None],
        scene: Scene,
    ) -> list[str]:
        """DNs to reflectance in place; the date rule is decided once, over all its bands."""
        pending = [b for b, r in rules.items() if r is None]
        decided: s2_radiometry.L2ARadiometry | None = None
        if pending:
            known = scene.properties.get("acquired_known", True)
            stated = s2_radiometry.from_metadata(
                scene.properties, None, scene.acquired.date() if known else None
            )
            pooled = np.concatenate([layers[b][np.isfinite(layers[b])] for b in pending])
            decided = s2_radiometry.check_dark_pixels(stated, pooled)
        notes = []
        for band, rule in rules.items():
            chosen = rule or decided
            assert chosen is not None
            layers[band] = chosen.reflectance(layers[band], nodata=None)
            notes.append(chosen.rule)
        return notes

    def rasters(self, scene: Scene, cell: str, day: date, workdir: Path) -> dict[str, str]:
        """The files themselves where chipping can read them as they are, else the window."""
        refs = {b: split_ref(r) for b, r in scene.assets.items()}
        if self.kind == "vhr":
            hrefs = {h for h, _ in refs.values()}
            in_order = all(refs[b][1] == i + 1 for i, b in enumerate(self.bands) if b in refs)
            if len(hrefs) == 1 and in_order and "dn_scale" not in self.options:
                href = hrefs.pop()
                with rasterio.open(href) as src:
                    if src.dtypes[0] == "uint8":
                        return {"image": href}
        elif (
            "boa_offset" not in self.options
            and all(i == 1 for _, i in refs.values())
            and all(_tagged(h) for h, _ in refs.values())
        ):
            return {b: h for b, (h, _) in refs.items()}
        return super().rasters(scene, cell, day, workdir)


def _file_entry(info: RasterInfo, bands: Sequence[str], grouped: bool) -> _Entry:
    """A file as an entry: a band file of a product folder is keyed by the band it holds."""
    key = band_key(info.path.stem, bands) if grouped or info.count == 1 else None
    return _Entry(key or info.path.stem, str(info.path), tuple(info.band_names))


def _tagged(href: str) -> bool:
    with rasterio.open(href) as src:
        return src.count == 1 and ("BOA_ADD_OFFSET" in src.tags() or src.dtypes[0] == "uint8")


# A band named inside a file name, as unpacked L2A products write it: T32UPU_..._B02_10m.jp2
_BAND_IN_NAME = re.compile(r"(?:^|_)(B0[1-9]|B1[0-2]|B8A|SCL)(?:_|$)", re.IGNORECASE)
_TIME_IN_NAME = re.compile(r"(\d{8}T\d{6})|(\d{4}-\d{2}-\d{2})")


def band_key(stem: str, bands: Sequence[str]) -> str | None:
    """The band a single-band file holds, by its stem: `B02`, `blue`, or `..._B02_10m`."""
    low = stem.lower()
    for b in bands:
        if low == b.lower() or low in ALIASES.get(b, ()):
            return b
    match = _BAND_IN_NAME.search(stem)
    if match and match.group(1).upper() in bands:
        return match.group(1).upper()
    return None


def time_in_name(stem: str) -> datetime | None:
    """An acquisition time written into a file name (20250701T102031 or 2025-07-01), UTC."""
    match = _TIME_IN_NAME.search(stem)
    if match is None:
        return None
    text = match.group(0)
    fmt = "%Y%m%dT%H%M%S" if "T" in text else "%Y-%m-%d"
    try:
        return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def _match(target: str | None, band: str, entries: Sequence[_Entry]) -> str | None:
    """`band`'s "href#n": by the mapping's target, else by the band's name and aliases."""
    if target is not None:
        key, _, num = target.partition(":")
        if key.isdigit() and not num:
            single = [e for e in entries if len(e.band_names) > 1] or list(entries)
            return band_ref(single[0].href, int(key)) if single else None
        for e in entries:
            if e.key == key:
                return band_ref(e.href, int(num) if num else 1)
        for e in entries:
            if key in e.band_names:
                return band_ref(e.href, e.band_names.index(key) + 1)
        return None
    names = (band.lower(), *ALIASES.get(band, ()))
    for e in entries:  # a single-band file or asset named like the band
        if len(e.band_names) == 1 and e.key.lower() in names:
            return band_ref(e.href, 1)
    for e in entries:  # a band of a multi-band file with that description
        lowered = [n.lower() for n in e.band_names]
        for n in names:
            if n in lowered:
                return band_ref(e.href, lowered.index(n) + 1)
    return None


def _asset_entry(key: str, asset: pystac.Asset) -> _Entry | None:
    href = asset.get_absolute_href() or asset.href
    if not href or not href.lower().split("?")[0].endswith((".tif", ".tiff")):
        return None
    eo = asset.extra_fields.get("eo:bands") or []
    names = tuple(str(b.get("name") or b.get("common_name") or "") for b in eo) or (key,)
    return _Entry(key, href, names)


def _file_crs(href: str) -> str:
    with rasterio.open(href) as src:
        if src.crs is None:
            raise ValueError(f"{href} has no CRS")
        code = src.crs.to_epsg()
        return f"EPSG:{code}" if code else src.crs.to_wkt()


def _file_gsd(assets: Mapping[str, str]) -> float:
    href, _ = split_ref(next(iter(assets.values())))
    with rasterio.open(href) as src:
        return float(abs(src.transform.a))


def _with(scene: Scene, *, coverage: float, at: datetime) -> Scene:
    return replace(scene, coverage=coverage, acquired=at)
