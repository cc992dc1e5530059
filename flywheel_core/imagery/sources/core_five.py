"""Core-Five (Hugging Face dataset `gajeshladhar/core-five`): one netCDF datatree per S2 cell.

Each level-13 S2 cell has one file, `src/datatree/<level-10 token>/<level-13 token>.nc`, a netCDF4
datatree opened with `xarray.open_datatree(path, engine="h5netcdf")`. Its group `hr` holds the
very-high-resolution image (`data`, (band, y, x), uint8, about 0.25 m), its group `s2` the
Sentinel-2 time series ((time, y, x) per band, 10 m). A partition cell at level 13 or finer maps
to its level-13 ancestor's file; a coarser cell is an error (it spans many files).

`root` is a local mirror (a folder holding `src/datatree/...`, as `huggingface-cli download
--local-dir` writes it) or `hf://datasets/<owner>/<name>[@revision]` (the default: the hub, one
file downloaded per level-13 cell through `huggingface_hub.hf_hub_download`, then cached by it).
Options: `hr_group` ("hr"), `hr_variable` ("data"), `s2_group` ("s2"), `revision` and `cache_dir`
(hub only). Scenes: VHR, one per file (`<file>#hr`); MSI, one per `s2` time step.

Reading puts only the window over the target grid (plus two source pixels) in memory: the
variable is georeferenced with rioxarray (`rio.write_crs`, `rio.clip_box`, lazily, so h5netcdf
reads just that slab), written to an in-memory rasterio dataset and warped onto the grid by the
project's `window.warp_to_grid`, as every other source's rasters are.

Assumptions about the layout (UNVERIFIED: no real file could be opened from here; the loader is
tested on fixtures written in this layout, flywheel_tests/fixtures/core_five.py):

- Paths as above; a root that already points at `src/` or `src/datatree/` works too.
- Coordinates `x`/`y` (else the variable's last two dimensions) are pixel centres, evenly spaced,
  in metres of the file's projected CRS; `y` may run either way.
- The CRS is a grid-mapping variable (rioxarray's CF convention: the variable named by the data
  variable's `grid_mapping` attribute, else `spatial_ref`, with `crs_wkt` or `spatial_ref` WKT
  or CF projection attributes), in the group or the root; or else an attribute `crs` (EPSG code,
  "EPSG:xxxxx" or WKT), `epsg`, `proj:epsg` or `proj:code` on the variable, the group or the root.
- `hr/data` bands are red, green, blue[, nir] in that order (or named by a `band` coordinate
  such as "red"/"R"); extra dimensions of size one (a single `time`) are squeezed.
- The VHR acquisition time is an attribute `acquired`, `datetime`, `time`, `date`,
  `acquisition_date` or `start_datetime` on `hr/data`, the `hr` group or the root, or a size-one
  `time` coordinate of the group. Without one the date is unknown: the scene is then listed for
  every date window, with `acquired` = the window's start and `properties["acquired_known"] =
  False` (the imagery is one fixed capture per cell, so any month may use it).
- `s2` bands are variables named `B02` ... `B12` (`B2`, lower case also match) with a `time`
  dimension, or one variable with a `band` coordinate naming them; `SCL` may be missing (then the
  scene's `cloud_cover` is None and reading SCL is an error).
- Sentinel-2 values are L2A digital numbers (uint16, 0 = no data) unless the variable carries CF
  `scale_factor`/`add_offset`, in which case xarray's decoding is taken as the reflectance.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from affine import Affine
from pyproj import CRS
from rasterio.io import MemoryFile
from rasterio.warp import transform_bounds
from shapely.geometry import box

from flywheel_core.geo.projection import reproject
from flywheel_core.geo.s2 import InvalidCellError, cell_level, cell_polygon, parent_token
from flywheel_core.imagery.l2a import SCL_NO_DATA, cloud_fractions
from flywheel_core.imagery.sources.s2_radiometry import (
    L2ARadiometry,
    check_dark_pixels,
    from_metadata,
)
from flywheel_core.imagery.sources.types import (
    MSI_READ_BANDS,
    SCL,
    VHR_BANDS,
    BandWindow,
    ImagerySource,
    Kind,
    Scene,
    SourceError,
    TargetGrid,
    cell_coverage,
)
from flywheel_core.imagery.sources.window import composite, warp_to_grid

log = logging.getLogger(__name__)

HUB_REPO = "gajeshladhar/core-five"
HUB_ROOT = f"hf://datasets/{HUB_REPO}"
FILE_LEVEL = 13
FOLDER_LEVEL = 10
DATATREE_DIR = "src/datatree"
ROOT_SETTING = (
    "set the core-five root to a local mirror folder (imagery resource `vhr_root`/`msi_root`, "
    "FLYWHEEL_VHR_ROOT/FLYWHEEL_MSI_ROOT, or `--root`)"
)
DEFAULT_OPTIONS: dict[str, Any] = {
    "hr_group": "hr",
    "hr_variable": "data",
    "s2_group": "s2",
    "revision": None,
    "cache_dir": None,
}
ACQUIRED_ATTRS = ("acquired", "datetime", "time", "date", "acquisition_date", "start_datetime")
CRS_ATTRS = ("crs", "epsg", "proj:epsg", "proj:code")
SCL_CLOUDS_NOTE = "cloud_cover: SCL classes 8, 9, 10 over the cell's valid pixels"
_HUB_RE = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?/?$")
_VHR_NAMES = {
    "red": "red",
    "r": "red",
    "green": "green",
    "g": "green",
    "blue": "blue",
    "b": "blue",
    "nir": "nir",
    "n": "nir",
}


def datatree_file(cell: str) -> str:
    """The file (relative to the dataset root) holding a level-13-or-finer cell.

    Raises InvalidCellError for a bad token or a cell coarser than level 13.
    """
    level = cell_level(cell)
    if level < FILE_LEVEL:
        raise InvalidCellError(
            f"cell is at S2 level {level}, coarser than the level-{FILE_LEVEL} cells Core-Five "
            f"files are named by: use level-{FILE_LEVEL} or finer partition cells"
        )
    return f"{DATATREE_DIR}/{parent_token(cell, FOLDER_LEVEL)}/{parent_token(cell, FILE_LEVEL)}.nc"


@dataclass(frozen=True)
class _Raster:
    """Where a variable's pixels are: its spatial dimensions, CRS and north-up pixel grid."""

    xdim: str
    ydim: str
    crs: CRS
    transform: Affine  # of the whole variable, north-up (row 0 = northernmost)
    width: int
    height: int
    y_ascending: bool

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    @property
    def gsd(self) -> float:
        return float(abs(self.transform.a))

    def crs_name(self) -> str:
        code = self.crs.to_epsg()
        return f"EPSG:{code}" if code is not None else self.crs.to_wkt()


def _rio(da: xr.DataArray) -> Any:
    """rioxarray's accessor (registered by `import rioxarray`)."""
    return da.rio


class CoreFiveSource(ImagerySource):
    """VHR (`hr`) and Sentinel-2 (`s2`) imagery from Core-Five's per-cell netCDF datatrees."""

    name: ClassVar[str] = "core-five"
    kinds: ClassVar[tuple[Kind, ...]] = ("vhr", "msi")
    radiometry_doc: ClassVar[str] = (
        "VHR: hr/data is uint8 and taken as stored as 8-bit DN (dn8). MSI: the s2 bands are "
        "Sentinel-2 L2A DNs, turned into surface reflectance by the L2A offset rule "
        "(s2_radiometry: a BOA_ADD_OFFSET/BOA_QUANTIFICATION_VALUE or processing-baseline "
        "attribute if the file has one, else the acquisition date: -1000 DN from 2022-01-25; "
        "then the dark-pixel check), unless a variable carries CF scale_factor/add_offset, when "
        "xarray's decoding is the reflectance; SCL as stored. UNVERIFIED against real files."
    )

    def __init__(self, kind: Kind, root: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(kind, root or HUB_ROOT, options)
        unknown = sorted(set(self.options) - set(DEFAULT_OPTIONS))
        if unknown:
            raise self.error(
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}"
            )
        self.settings: dict[str, Any] = {**DEFAULT_OPTIONS, **self.options}
        self.hub_repo: str | None = None
        self.hub_revision: str | None = self.settings["revision"]
        if self.root.startswith("hf://"):
            match = _HUB_RE.match(self.root)
            if match is None:
                raise self.error(
                    f"root {self.root!r} is not hf://datasets/<owner>/<name>[@revision]; "
                    f"{ROOT_SETTING}"
                )
            self.hub_repo = match["repo"]
            self.hub_revision = match["rev"] or self.hub_revision
        elif "://" in self.root:
            raise self.error(
                f"root {self.root!r}: Core-Five is read from a local folder or {HUB_ROOT}"
            )

    # -- files -----------------------------------------------------------------------------

    def file_for(self, cell: str) -> str:
        """The dataset file of a partition cell (level 13 or finer), relative to the root."""
        try:
            return datatree_file(cell)
        except InvalidCellError as exc:
            raise self.error(str(exc), cell) from exc

    def locate(self, relative: str, cell: str = "") -> Path | None:
        """The local path of a dataset file (downloading it from the hub), None if there is none."""
        if self.hub_repo is not None:
            return self._download(relative, cell)
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise self.error(f"root folder {root} does not exist; {ROOT_SETTING}", cell)
        tail = relative.split("/")
        for candidate in (
            root.joinpath(*tail),
            root.joinpath(*tail[1:]),  # root is src/
            root.joinpath(*tail[2:]),  # root is src/datatree/
        ):
            if candidate.is_file():
                return candidate
        return None

    def _download(self, relative: str, cell: str) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        try:
            path = hf_hub_download(
                repo_id=self.hub_repo or HUB_REPO,
                filename=relative,
                repo_type="dataset",
                revision=self.hub_revision,
                cache_dir=self.settings["cache_dir"],
            )
        except RemoteEntryNotFoundError:
            return None
        except Exception as exc:  # offline, unreachable, gated, no such repo or revision
            raise self.error(
                f"cannot fetch {relative} from hf://datasets/{self.hub_repo} "
                f"({type(exc).__name__}); {ROOT_SETTING}",
                cell,
            ) from exc
        return Path(path)

    @contextmanager
    def _open(self, path: Path, cell: str) -> Iterator[xr.DataTree]:
        try:
            tree = xr.open_datatree(path, engine="h5netcdf")
        except Exception as exc:
            raise self.error(f"cannot read {path}: {_one_line(exc)}", cell) from exc
        try:
            yield tree
        finally:
            tree.close()

    def _group(self, tree: xr.DataTree, key: str) -> xr.Dataset | None:
        group = str(self.settings[key]).strip("/")
        try:
            node = tree[group]
        except KeyError:
            return None
        return node.to_dataset() if isinstance(node, xr.DataTree) else None

    # -- search ----------------------------------------------------------------------------

    def search(self, cell: str, start: date, end: date) -> list[Scene]:
        relative = self.file_for(cell)
        path = self.locate(relative, cell)
        if path is None:
            log.info("%s: no file %s for cell %s: no data there", self.name, relative, cell)
            return []
        with self._open(path, cell) as tree:
            key = "hr_group" if self.kind == "vhr" else "s2_group"
            group = self._group(tree, key)
            if group is None:
                log.info(
                    "%s: %s has no group %r: no %s data for cell %s",
                    self.name,
                    relative,
                    self.settings[key],
                    self.kind,
                    cell,
                )
                return []
            try:
                if self.kind == "vhr":
                    scenes = self._search_vhr(tree, group, cell, relative, start, end)
                else:
                    scenes = self._search_msi(tree, group, cell, relative, start, end)
            except SourceError:
                raise
            except Exception as exc:
                raise self.error(f"cannot read {path}: {_one_line(exc)}", cell) from exc
        covering = [s for s in scenes if s.coverage > 0]
        if scenes and not covering:
            log.info("%s: %s does not reach cell %s: no data there", self.name, relative, cell)
        return covering

    def _search_vhr(
        self,
        tree: xr.DataTree,
        hr: xr.Dataset,
        cell: str,
        relative: str,
        start: date,
        end: date,
    ) -> list[Scene]:
        var_name = str(self.settings["hr_variable"])
        if var_name not in hr.data_vars:
            raise self.error(f"{relative}: group {self.settings['hr_group']} has no {var_name}")
        da = self._vhr_array(hr, relative)
        raster = self._raster(tree, hr, da, relative)
        names = self._vhr_names(da, relative)
        acquired = _acquired(tree, hr, da)
        known = acquired is not None
        if acquired is None:
            acquired = datetime.combine(start, time(), tzinfo=UTC)
        elif not start <= acquired.date() < end:
            return []
        footprint = reproject(box(*raster.bounds), raster.crs_name(), 4326)
        attrs = {**tree.attrs, **hr.attrs}
        sensor = str(attrs.get("sensor") or attrs.get("platform") or "core-five hr")
        return [
            Scene(
                scene_id=f"{relative}#{self.settings['hr_group']}",
                source=self.name,
                sensor=sensor,
                gsd_m=raster.gsd,
                crs=raster.crs_name(),
                footprint=footprint,
                acquired=acquired,
                cloud_cover=None,
                coverage=cell_coverage(footprint, cell),
                assets={"image": f"{relative}#{self.settings['hr_group']}/{var_name}"},
                properties={
                    "file": relative,
                    "group": self.settings["hr_group"],
                    "variable": var_name,
                    "bands": names,
                    "acquired_known": known,
                },
            )
        ]

    def _search_msi(
        self,
        tree: xr.DataTree,
        s2: xr.Dataset,
        cell: str,
        relative: str,
        start: date,
        end: date,
    ) -> list[Scene]:
        group = str(self.settings["s2_group"])
        found = {b: _band_array(s2, b) for b in MSI_READ_BANDS}
        present = {b: da for b, da in found.items() if da is not None}
        if not present:
            raise self.error(f"{relative}: group {group} has none of the bands {MSI_READ_BANDS}")
        first = next(iter(present.values()))
        if "time" not in first.dims:
            raise self.error(f"{relative}: the {group} bands have no time dimension")
        raster = self._raster(tree, s2, first, relative)
        footprint = reproject(box(*raster.bounds), raster.crs_name(), 4326)
        coverage = cell_coverage(footprint, cell)
        times = [_to_datetime(v) for v in first["time"].values]
        scl = present.get(SCL)
        scl_raster = self._raster(tree, s2, scl, relative) if scl is not None else None
        scenes = []
        for index, when in enumerate(times):
            if when is None:
                raise self.error(f"{relative}: time step {index} is not a date")
            if not start <= when.date() < end:
                continue
            cloud = None
            if scl is not None and scl_raster is not None and coverage > 0:
                cloud = self._cell_clouds(scl.isel(time=index), scl_raster, cell)
            scenes.append(
                Scene(
                    scene_id=f"{relative}#{group}@{when.isoformat()}",
                    source=self.name,
                    sensor=str(s2.attrs.get("platform") or "sentinel-2"),
                    gsd_m=raster.gsd,
                    crs=raster.crs_name(),
                    footprint=footprint,
                    acquired=when,
                    cloud_cover=cloud,
                    coverage=coverage,
                    assets={b: f"{relative}#{group}/{da.name}" for b, da in present.items()},
                    properties={
                        "file": relative,
                        "group": group,
                        "time": when.isoformat(),
                        "time_index": index,
                        "acquired_known": True,
                        "cloud_cover_from": SCL_CLOUDS_NOTE if cloud is not None else None,
                    },
                )
            )
        return scenes

    def _cell_clouds(self, scl: xr.DataArray, raster: _Raster, cell: str) -> float | None:
        """Percent of the cell's valid SCL pixels that are clouds; None when none is valid."""
        polygon = reproject(cell_polygon(cell), 4326, raster.crs_name())
        window = self._clip(scl, raster, polygon.bounds)
        if window is None:
            return None
        values = np.nan_to_num(np.asarray(window.values, dtype=np.float64), nan=SCL_NO_DATA)
        xs, ys = np.meshgrid(window[raster.xdim].values, window[raster.ydim].values)
        inside = shapely.contains_xy(polygon, xs, ys)
        codes = values[inside].astype(np.uint8)
        if codes.size == 0 or not (codes != SCL_NO_DATA).any():
            return None
        return 100.0 * cloud_fractions(codes)["cloud_fraction"]

    # -- read ------------------------------------------------------------------------------

    def read(
        self, scene: Scene, grid: TargetGrid, bands: Sequence[str] | None = None
    ) -> BandWindow:
        if scene.parts:
            return composite([self.read(part, grid, bands) for part in scene.parts])
        relative = str(scene.properties.get("file", ""))
        if not relative:
            raise self.error(f"scene {scene.scene_id} is not a {self.name} scene")
        day = scene.acquired.date()
        path = self.locate(relative)
        if path is None:
            raise self.error(f"file {relative} of scene {scene.scene_id} is gone", day=day)
        with self._open(path, "") as tree:
            try:
                if self.kind == "vhr":
                    return self._read_vhr(tree, scene, grid, bands, relative)
                return self._read_msi(tree, scene, grid, bands, relative)
            except SourceError:
                raise
            except Exception as exc:
                raise self.error(
                    f"cannot read scene {scene.scene_id}: {_one_line(exc)}", day=day
                ) from exc

    def _read_vhr(
        self,
        tree: xr.DataTree,
        scene: Scene,
        grid: TargetGrid,
        bands: Sequence[str] | None,
        relative: str,
    ) -> BandWindow:
        hr = self._group(tree, "hr_group")
        if hr is None or str(self.settings["hr_variable"]) not in hr.data_vars:
            raise self.error(f"scene {scene.scene_id}: {relative} has no hr image")
        da = self._vhr_array(hr, relative)
        if da.dtype != np.uint8:
            raise self.error(
                f"scene {scene.scene_id}: hr data is {da.dtype}, not uint8: its radiometry is "
                "unknown to this loader"
            )
        names = self._vhr_names(da, relative)
        wanted = tuple(bands) if bands is not None else names
        missing = [b for b in wanted if b not in names]
        if missing:
            raise self.error(
                f"band {', '.join(missing)} is not in scene {scene.scene_id} "
                f"(it has {', '.join(names)})",
                day=scene.acquired.date(),
            )
        raster = self._raster(tree, hr, da, relative)
        band_dim = da.dims[0]
        selected = da.isel({band_dim: [names.index(b) for b in wanted]})
        data, valid = self._warp(selected, raster, grid, nearest=False, dtype="uint8")
        return BandWindow(
            data=data,
            band_names=wanted,
            grid=grid,
            valid=valid,
            radiometry="dn8",
            scene_ids=(scene.scene_id,),
            notes=("core-five hr: uint8 as stored (dn8)",),
        )

    def _read_msi(
        self,
        tree: xr.DataTree,
        scene: Scene,
        grid: TargetGrid,
        bands: Sequence[str] | None,
        relative: str,
    ) -> BandWindow:
        s2 = self._group(tree, "s2_group")
        if s2 is None:
            raise self.error(f"scene {scene.scene_id}: {relative} has no s2 group")
        wanted = tuple(bands) if bands is not None else MSI_READ_BANDS
        unknown = [b for b in wanted if b not in MSI_READ_BANDS]
        if unknown:
            raise self.error(f"band {', '.join(unknown)} is not a Sentinel-2 L2A band")
        arrays = {b: _band_array(s2, b) for b in wanted}
        missing = [b for b, da in arrays.items() if da is None]
        if missing:
            raise self.error(
                f"band {', '.join(missing)} is not in scene {scene.scene_id}",
                day=scene.acquired.date(),
            )
        # Each band at this scene's time step, cut to the grid's window (source pixels).
        windows: dict[str, tuple[np.ndarray, Affine, CRS] | None] = {}
        decoded: dict[str, bool] = {}
        for band in wanted:
            da = arrays[band]
            assert da is not None
            step = da.isel(time=self._time_index(da, scene, relative))
            raster = self._raster(tree, s2, step, relative)
            windows[band] = self._window(step, raster, grid)
            decoded[band] = "scale_factor" in da.encoding or "add_offset" in da.encoding
        rule, notes = self._msi_radiometry(tree, s2, scene, arrays, windows, decoded)
        out = np.full((len(wanted), grid.height, grid.width), np.nan, dtype=np.float32)
        valid = np.ones((grid.height, grid.width), dtype=bool)
        for i, band in enumerate(wanted):
            window = windows[band]
            if window is None:
                valid[:] = False
                continue
            values, transform, crs = window
            if band == SCL:
                pixels = values.astype(np.float32)
                pixels[pixels == SCL_NO_DATA] = np.nan
            elif decoded[band] or rule is None:
                pixels = values.astype(np.float32)
            else:
                pixels = rule.reflectance(values, nodata=0)
            warped, ok = _warp_array(pixels, transform, crs, grid, nearest=band == SCL)
            out[i] = warped
            valid &= ok
        out[:, ~valid] = np.nan
        return BandWindow(
            data=out,
            band_names=wanted,
            grid=grid,
            valid=valid,
            radiometry="boa_reflectance",
            scene_ids=(scene.scene_id,),
            notes=tuple(notes),
        )

    def _msi_radiometry(
        self,
        tree: xr.DataTree,
        s2: xr.Dataset,
        scene: Scene,
        arrays: Mapping[str, xr.DataArray | None],
        windows: Mapping[str, tuple[np.ndarray, Affine, CRS] | None],
        decoded: Mapping[str, bool],
    ) -> tuple[L2ARadiometry | None, list[str]]:
        """One L2A rule for the scene's DN bands (metadata, then the dark pixels of them all)."""
        notes = []
        dn_bands = [b for b in arrays if b != SCL and not decoded[b]]
        rule = None
        if dn_bands:
            attrs = {str(k): v for k, v in {**tree.attrs, **s2.attrs}.items()}
            first = arrays[dn_bands[0]]
            assert first is not None
            radiometry = from_metadata(
                _radiometry_properties(attrs, first.attrs),
                _asset_fields(first.attrs),
                scene.acquired.date(),
            )
            dns = [w[0] for b in dn_bands if (w := windows[b]) is not None]
            valid_dns = (
                np.concatenate([d[np.isfinite(d) & (d != 0)].ravel() for d in dns])
                if dns
                else np.empty(0)
            )
            rule = check_dark_pixels(radiometry, valid_dns)
            notes.append(f"core-five s2 {', '.join(dn_bands)}: L2A DN -> reflectance, {rule.rule}")
        cf = [b for b in arrays if b != SCL and decoded[b]]
        if cf:
            notes.append(
                f"core-five s2 {', '.join(cf)}: CF scale_factor/add_offset decoded by xarray "
                "taken as reflectance (UNVERIFIED)"
            )
        return rule, notes

    def _time_index(self, da: xr.DataArray, scene: Scene, relative: str) -> int:
        wanted = _to_datetime(scene.properties.get("time"))
        for index, value in enumerate(da["time"].values):
            if _to_datetime(value) == wanted:
                return index
        raise self.error(
            f"scene {scene.scene_id}: {relative} has no time step {scene.properties.get('time')}"
        )

    # -- georeferencing --------------------------------------------------------------------

    def _vhr_array(self, hr: xr.Dataset, relative: str) -> xr.DataArray:
        """hr data as (band, y, x): the band dimension is `band`, else the one other dimension
        (extra dimensions of size one, such as a single time step, are dropped)."""
        da = hr[str(self.settings["hr_variable"])]
        ydim, xdim = _spatial_dims(da)
        extra = [str(d) for d in da.dims if d not in (ydim, xdim)]
        band_dim = (
            "band"
            if "band" in extra
            else next((d for d in extra if da.sizes[d] > 1), extra[0] if extra else None)
        )
        if band_dim is None or any(da.sizes[d] != 1 for d in extra if d != band_dim):
            raise self.error(f"{relative}: hr data has dimensions {da.dims}, not (band, y, x)")
        da = da.isel({d: 0 for d in extra if d != band_dim})
        return da.transpose(band_dim, ydim, xdim)

    def _vhr_names(self, da: xr.DataArray, relative: str) -> tuple[str, ...]:
        band_dim = da.dims[0]
        count = int(da.sizes[band_dim])
        labels = da[band_dim].values if band_dim in da.coords else None
        if labels is not None and labels.dtype.kind in "USO":
            names = tuple(_VHR_NAMES.get(str(v).strip().lower(), str(v)) for v in labels)
        else:
            names = VHR_BANDS[:count]
        if count < 3 or count > len(VHR_BANDS) or set(names[:3]) != set(VHR_BANDS[:3]):
            raise self.error(f"{relative}: hr data bands {names} are not red, green, blue[, nir]")
        return names

    def _raster(
        self, tree: xr.DataTree, group: xr.Dataset, da: xr.DataArray, relative: str
    ) -> _Raster:
        ydim, xdim = _spatial_dims(da)
        if xdim not in da.coords or ydim not in da.coords:
            raise self.error(f"{relative}: {da.name} has no {xdim}/{ydim} coordinates")
        xs = np.asarray(da[xdim].values, dtype=np.float64)
        ys = np.asarray(da[ydim].values, dtype=np.float64)
        if xs.size < 2 or ys.size < 2:
            raise self.error(f"{relative}: {da.name} is less than 2 pixels wide")
        dx, dy = float(xs[1] - xs[0]), float(ys[1] - ys[0])
        if not (_even(xs, dx) and _even(ys, dy)) or dx <= 0 or dy == 0:
            raise self.error(f"{relative}: {da.name}'s {xdim}/{ydim} are not evenly spaced")
        crs = self._crs(tree, group, da, relative)
        top = float(ys.max()) + abs(dy) / 2
        left = float(xs[0]) - dx / 2
        transform = Affine(dx, 0.0, left, 0.0, -abs(dy), top)
        return _Raster(xdim, ydim, crs, transform, xs.size, ys.size, dy > 0)

    def _crs(self, tree: xr.DataTree, group: xr.Dataset, da: xr.DataArray, relative: str) -> CRS:
        mapping = str(da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping") or "")
        names = [n for n in (mapping, "spatial_ref", "crs") if n]
        for holder in (group, tree.to_dataset()):
            for name in names:
                if name in holder.variables:
                    crs = _crs_from_mapping(holder[name].attrs)
                    if crs is not None:
                        return crs
        for attrs in (da.attrs, group.attrs, tree.attrs):
            for key in CRS_ATTRS:
                value = attrs.get(key)
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue
                try:
                    return _crs_from_value(value)
                except Exception as exc:
                    raise self.error(f"{relative}: attribute {key}={value!r} is no CRS") from exc
        raise self.error(
            f"{relative}: {da.name} has no CRS (no spatial_ref variable, no crs/epsg attribute)"
        )

    def _clip(
        self, da: xr.DataArray, raster: _Raster, bounds: tuple[float, float, float, float]
    ) -> xr.DataArray | None:
        """The variable over `bounds` (its CRS) plus two pixels, lazily; None outside it."""
        from rioxarray.exceptions import NoDataInBounds, OneDimensionalRaster

        left, bottom, right, top = bounds
        fl, fb, fr, ft = raster.bounds
        pad = 2 * max(raster.gsd, abs(raster.transform.e))
        if left - pad >= fr or right + pad <= fl or bottom - pad >= ft or top + pad <= fb:
            return None
        geo = _rio(da).set_spatial_dims(x_dim=raster.xdim, y_dim=raster.ydim)
        geo = _rio(geo).write_crs(raster.crs)
        try:
            clipped: xr.DataArray = _rio(geo).clip_box(
                left - pad, bottom - pad, right + pad, top + pad, auto_expand=True
            )
        except (NoDataInBounds, OneDimensionalRaster, rasterio.errors.WindowError):
            return None
        return clipped

    def _window(
        self, da: xr.DataArray, raster: _Raster, grid: TargetGrid
    ) -> tuple[np.ndarray, Affine, CRS] | None:
        """The source pixels (2-D, north-up) under the grid, their transform and CRS."""
        bounds = transform_bounds(grid.crs, raster.crs, *grid.bounds, densify_pts=21)
        clipped = self._clip(da, raster, bounds)
        if clipped is None:
            return None
        if raster.y_ascending:
            clipped = clipped.isel({raster.ydim: slice(None, None, -1)})
        values = np.asarray(clipped.values)
        xs = np.asarray(clipped[raster.xdim].values, dtype=np.float64)
        ys = np.asarray(clipped[raster.ydim].values, dtype=np.float64)
        t = raster.transform
        transform = Affine(t.a, 0.0, float(xs[0]) - t.a / 2, 0.0, t.e, float(ys[0]) - t.e / 2)
        return values, transform, raster.crs

    def _warp(
        self, da: xr.DataArray, raster: _Raster, grid: TargetGrid, *, nearest: bool, dtype: str
    ) -> tuple[np.ndarray, np.ndarray]:
        window = self._window(da, raster, grid)
        count = int(da.shape[0])
        if window is None:
            empty = np.zeros((count, grid.height, grid.width), dtype=dtype)
            return empty, np.zeros((grid.height, grid.width), dtype=bool)
        values, transform, crs = window
        return _warp_stack(values, transform, crs, grid, nearest=nearest, dtype=dtype)


# -- helpers -------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _even(values: np.ndarray, step: float) -> bool:
    return bool(np.allclose(np.diff(values), step, rtol=1e-6, atol=1e-6 * abs(step)))


def _spatial_dims(da: xr.DataArray) -> tuple[str, str]:
    dims = [str(d) for d in da.dims]
    for ydim, xdim in (("y", "x"), ("northing", "easting"), ("lat", "lon")):
        if ydim in dims and xdim in dims:
            return ydim, xdim
    if len(dims) < 2:
        raise ValueError(f"{da.name} has fewer than two dimensions")
    return dims[-2], dims[-1]


def _crs_from_mapping(attrs: Mapping[str, Any]) -> CRS | None:
    for key in ("crs_wkt", "spatial_ref"):
        if attrs.get(key):
            return CRS.from_wkt(str(attrs[key]))
    if attrs.get("epsg_code"):
        return CRS.from_user_input(str(attrs["epsg_code"]))
    if attrs.get("grid_mapping_name"):
        return CRS.from_cf(dict(attrs))
    return None


def _crs_from_value(value: Any) -> CRS:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        return CRS.from_epsg(int(value))
    return CRS.from_user_input(str(value))


def _to_datetime(value: Any) -> datetime | None:
    """A UTC datetime from an attribute or coordinate value (ISO text, datetime64, ...)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    result: datetime = stamp.to_pydatetime()
    return result


def _acquired(tree: xr.DataTree, hr: xr.Dataset, da: xr.DataArray) -> datetime | None:
    for attrs in (da.attrs, hr.attrs, tree.attrs):
        for key in ACQUIRED_ATTRS:
            if key in attrs:
                when = _to_datetime(attrs[key])
                if when is not None:
                    return when
    if "time" in hr.coords and hr["time"].size == 1:
        return _to_datetime(hr["time"].values)
    return None


def _band_key(name: str) -> str:
    return re.sub(r"^B0(\d)$", r"B\1", name.strip().upper())


def _band_array(s2: xr.Dataset, band: str) -> xr.DataArray | None:
    """The (time, y, x) array of a Sentinel-2 band: its own variable, or a slice of a stack."""
    key = _band_key(band)
    for name in s2.data_vars:
        if _band_key(str(name)) == key:
            return s2[name]
    for name in s2.data_vars:
        da = s2[name]
        if "band" in da.dims and "band" in da.coords:
            labels = [_band_key(str(v)) for v in da["band"].values]
            if key in labels:
                return da.isel(band=labels.index(key))
    return None


def _radiometry_properties(
    attrs: Mapping[str, Any], band_attrs: Mapping[str, Any]
) -> dict[str, Any]:
    """The L2A metadata s2_radiometry knows, from the file's attributes (if it has any)."""
    props: dict[str, Any] = {}
    for holder in (attrs, band_attrs):
        for key in ("s2:processing_baseline", "processing_baseline", "PROCESSING_BASELINE"):
            if key in holder:
                props["s2:processing_baseline"] = holder[key]
        for key in ("earthsearch:boa_offset_applied", "boa_offset_applied"):
            if key in holder:
                props["earthsearch:boa_offset_applied"] = bool(holder[key])
    return props


def _asset_fields(band_attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """`raster:bands` scale/offset from a band's L2A tags, when the file keeps them."""
    if "BOA_ADD_OFFSET" not in band_attrs:
        return None
    quant = float(band_attrs.get("BOA_QUANTIFICATION_VALUE", 10000.0))
    offset = float(band_attrs["BOA_ADD_OFFSET"])
    return {"raster:bands": [{"scale": 1.0 / quant, "offset": offset / quant}]}


def _warp_stack(
    values: np.ndarray,
    transform: Affine,
    crs: CRS,
    grid: TargetGrid,
    *,
    nearest: bool,
    dtype: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(bands, h, w) source pixels in memory onto the grid, through window.warp_to_grid."""
    stack = values if values.ndim == 3 else values[np.newaxis]
    floating = stack.dtype.kind == "f"
    profile = {
        "driver": "GTiff",
        "count": stack.shape[0],
        "height": stack.shape[1],
        "width": stack.shape[2],
        "dtype": str(stack.dtype),
        "crs": crs.to_wkt(),
        "transform": transform,
        "nodata": math.nan if floating else None,
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(stack)
        with memory.open() as src:
            return warp_to_grid(
                src, grid, list(range(1, stack.shape[0] + 1)), nearest=nearest, dtype=dtype
            )


def _warp_array(
    pixels: np.ndarray, transform: Affine, crs: CRS, grid: TargetGrid, *, nearest: bool
) -> tuple[np.ndarray, np.ndarray]:
    data, valid = _warp_stack(pixels, transform, crs, grid, nearest=nearest, dtype="float32")
    return data[0], valid


__all__ = ["HUB_ROOT", "CoreFiveSource", "datatree_file"]
