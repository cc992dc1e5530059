"""Register a raster file as a dataset: COG, tiles in Lance, GeoParquet index, checks, one row.

Order matters for "no half-registered row". The file is fetched, hashed and inspected first;
every input error (not a raster, no CRS, truncated, too small for one tile) is a `RasterError`
raised before anything is written. Then the COG is made in a scratch folder, tiles stream into
the Lance partition of the dataset (one commit: a read error mid-file aborts it and nothing
lands), the index and COG go to the object store, the checks read the outputs back, and only then
is the registry row written, once, `ready` or `failed`. A pixel read error found while tiling is
still an input error (no row); a failure of the stores themselves is recorded as `failed` with
its error, then re-raised. A forced rebuild of a ready dataset first marks its row `failed`
("rebuild in progress"), because the rebuild deletes the old tiles before writing new ones.

Tile rows: `cell` is the S2 token of the tile centre at the partition level, `date` the
acquisition date from the file's tags (see `inspect.ACQUISITION_TAGS`) or else the registration
date (UTC), `acquired` the tagged time or null; uid = chip_id = `<dataset_id>|r<row>c<col>`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import lancedb
import pyarrow as pa
import rasterio
from shapely import wkb

from flywheel_core.errors import FlywheelError
from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.rasters import checks
from flywheel_core.rasters.cog import CogReport, convert_to_cog, validate_cog
from flywheel_core.rasters.inspect import (
    GDAL_ERRORS,
    RasterError,
    RasterInfo,
    inspect_raster,
    read_error,
    sha256_file,
)
from flywheel_core.rasters.registry import (
    FAILED,
    KIND_FILE,
    READY,
    RasterDataset,
    get_dataset,
    make_dataset_id,
    record_dataset,
)
from flywheel_core.rasters.schema import RASTER_TILE_SCHEMA, RASTER_TILES_TABLE
from flywheel_core.rasters.source import canonical_uri, local_file
from flywheel_core.rasters.stream import replace_dataset_tiles
from flywheel_core.rasters.tiling import (
    TileWindow,
    index_record,
    iter_tiles,
    pixel_facts,
    tile_row,
    tile_windows,
    write_tile_index,
)
from flywheel_core.store.lance_tables import partition_filter
from flywheel_core.store.objects import ObjectStore

log = logging.getLogger(__name__)

BATCH_TILES = 64  # tiles per Arrow batch streamed into Lance: bounded memory on any scene
SENSOR_TAGS = ("SENSOR", "PLATFORM", "SATELLITE", "MISSION")


class RasterIngestError(FlywheelError, RuntimeError):
    """A store failed while registering; the dataset was recorded as failed with this error."""


@dataclass(frozen=True)
class TilingOptions:
    tile_size: int = 256
    overlap: int = 0
    s2_level: int = 15
    h3_resolution: int = 11

    def __post_init__(self) -> None:
        if self.tile_size <= 0:
            raise ValueError(f"tile size must be positive, got {self.tile_size}")
        if not 0 <= self.overlap < self.tile_size:
            raise ValueError(
                f"overlap must be in [0, tile size), got {self.overlap} for {self.tile_size}"
            )

    def params(self) -> dict[str, Any]:
        """What the dataset id depends on besides the bytes: changing any of it makes new tiles."""
        return {
            "kind": KIND_FILE,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "s2_level": self.s2_level,
            "h3_resolution": self.h3_resolution,
        }


@dataclass(frozen=True)
class RegisterResult:
    dataset: RasterDataset
    created: bool  # False: it was already registered and ready; nothing was written

    @property
    def message(self) -> str:
        ds = self.dataset
        if not self.created:
            return f"{ds.dataset_id} already registered, {ds.status} ({ds.tile_count} tiles)"
        if ds.ready:
            return f"{ds.dataset_id} registered, ready: {ds.tile_count} tiles in {ds.lance_table}"
        return f"{ds.dataset_id} registered as failed: {ds.error}"


def rasters_key(dataset_id: str, name: str) -> str:
    return f"rasters/{dataset_id}/{name}"


def stored_uids(db: lancedb.DBConnection, table: str, partition: dict[str, str]) -> list[str]:
    """The uids a reader finds now in one partition of a Lance table."""
    if table not in db.table_names():
        return []
    found = (
        db.open_table(table)
        .search()
        .where(partition_filter(partition))
        .select(["uid"])
        .limit(None)
        .to_arrow()
    )
    return found["uid"].to_pylist()


def drop_tiles(db: lancedb.DBConnection, ds: RasterDataset, *, quietly: bool = False) -> None:
    """Delete a failed dataset's tiles from Lance: a `failed` row must not leave tiles behind.

    Readers of `raster_tiles` (search, embeddings, the chips view) do not consult the registry,
    so tiles of a failed dataset would be served as if they were good. `quietly` is for the path
    where a store has already failed: the original error is the one to report.
    """
    if RASTER_TILES_TABLE not in db.table_names():
        return
    try:
        table = db.open_table(RASTER_TILES_TABLE)
        table.delete(partition_filter({"dataset": ds.dataset_id}))
        ds.lance_version, ds.tile_count = table.version, 0
    except Exception:
        if not quietly:
            raise
        log.warning("%s: could not delete the failed dataset's tiles", ds.dataset_id, exc_info=True)


def read_back_index(store: ObjectStore, key: str, workdir: Path) -> gpd.GeoDataFrame:
    return gpd.read_parquet(store.get(key, workdir / "readback" / "tiles.parquet"))


def base_dataset(
    info: RasterInfo, dataset_id: str, name: str, kind: str, checksum: str, size: int
) -> RasterDataset:
    """The registry row's facts about the file itself (status filled in at the end)."""
    xmin, ymin, xmax, ymax = info.footprint.bounds
    return RasterDataset(
        dataset_id=dataset_id,
        name=name,
        kind=kind,
        uri=info.uri,
        checksum_sha256=checksum,
        status=FAILED,
        crs=info.crs,
        band_count=info.count,
        band_names=info.band_names,
        dtype=info.dtype,
        nodata=info.nodata,
        res_x=info.res[0],
        res_y=info.res[1],
        gsd_m=info.gsd_m,
        width=info.width,
        height=info.height,
        footprint=wkb.dumps(info.footprint),
        bbox_xmin=xmin,
        bbox_ymin=ymin,
        bbox_xmax=xmax,
        bbox_ymax=ymax,
        acquired=info.acquired,
        size_bytes=size,
    )


def _sensor(info: RasterInfo) -> str:
    upper = {k.upper(): v for k, v in info.tags.items()}
    return next((upper[t] for t in SENSOR_TAGS if upper.get(t)), "raster")


@dataclass
class _Tiling:
    """What the tile stream saw, for the index and the checks."""

    windows: list[TileWindow]
    uids: list[str] = field(default_factory=list)
    index: list[dict] = field(default_factory=list)
    footprints: list[Any] = field(default_factory=list)
    nodata_fractions: list[float] = field(default_factory=list)
    non_finite: int = 0


def _tile_batches(
    cog: Path, info: RasterInfo, ds: RasterDataset, day: date, opts: TilingOptions, seen: _Tiling
) -> Iterator[pa.RecordBatch]:
    sensor = _sensor(info)
    rows: list[dict] = []
    try:
        with rasterio.open(cog) as src:
            for place, data in iter_tiles(src, seen.windows, label=ds.dataset_id):
                tile_id = f"{ds.dataset_id}|r{place.window.row_off:05d}c{place.window.col_off:05d}"
                row = tile_row(
                    place,
                    data,
                    uid=tile_id,
                    chip_id=tile_id,
                    cell=cell_from_lonlat(place.center.x, place.center.y, opts.s2_level),
                    day=day,
                    band_names=info.band_names,
                    crs=info.crs,
                    gsd_m=info.gsd_m,
                    s2_level=opts.s2_level,
                    h3_resolution=opts.h3_resolution,
                    sensor=sensor,
                    scene_id=ds.dataset_id,
                    scene_href=ds.cog_uri or info.uri,
                    acquired=info.acquired,
                )
                row["dataset"] = ds.dataset_id
                facts = pixel_facts(data, info.nodata)
                seen.uids.append(tile_id)
                seen.footprints.append(place.footprint)
                seen.nodata_fractions.append(facts.nodata_fraction)
                seen.non_finite += facts.non_finite
                seen.index.append(
                    index_record(row, ds.dataset_id, place.window.src_size, facts.nodata_fraction)
                )
                rows.append(row)
                if len(rows) == BATCH_TILES:
                    yield pa.RecordBatch.from_pylist(rows, schema=RASTER_TILE_SCHEMA)
                    rows = []
    except GDAL_ERRORS as exc:
        raise read_error(info.uri, exc) from exc
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=RASTER_TILE_SCHEMA)


def _make_cog(local: Path, info: RasterInfo, workdir: Path) -> tuple[Path, CogReport, bool]:
    report = validate_cog(local)
    if report.valid:
        return local, report, False
    log.info("%s is not a COG (%s): converting", info.uri, "; ".join(report.errors))
    try:
        cog = convert_to_cog(local, workdir / "cog.tif")
    except GDAL_ERRORS as exc:
        raise read_error(info.uri, exc) from exc
    return cog, validate_cog(cog), True


def register_raster(
    con: Any,
    store: ObjectStore,
    db: lancedb.DBConnection,
    uri: str,
    *,
    name: str | None = None,
    options: TilingOptions | None = None,
    s3_client: Any | None = None,
    force: bool = False,
    today: date | None = None,
) -> RegisterResult:
    """Register `uri` (local path or s3://); see the module docstring for the order of steps."""
    opts = options or TilingOptions()
    uri = canonical_uri(uri)
    with tempfile.TemporaryDirectory(prefix="flywheel-raster-") as tmp:
        workdir = Path(tmp)
        local = local_file(uri, workdir, s3_client)
        checksum = sha256_file(local)
        dataset_id = make_dataset_id(checksum, opts.params())
        existing = get_dataset(con, dataset_id)
        if existing is not None and existing.ready and not force:
            # The same bytes passed inspection when they were registered: skip it (and its
            # block-table scan) on the no-op path.
            log.info("%s already registered, ready: nothing to do", dataset_id)
            return RegisterResult(existing, created=False)
        info = inspect_raster(local, uri)
        if info.width < opts.tile_size or info.height < opts.tile_size:
            raise RasterError(
                f"{uri}: {info.width}x{info.height} px is smaller than one "
                f"{opts.tile_size}-px tile; register it with a smaller --tile-size"
            )
        if existing is not None and existing.ready:
            # A rebuild deletes the tiles before writing them again: the row must not say
            # ready meanwhile, whatever happens to this process.
            existing.status, existing.error = FAILED, "rebuild in progress (--force)"
            record_dataset(con, existing, replace_ready=True)
        size = local.stat().st_size
        ds = base_dataset(info, dataset_id, name or Path(uri).stem, KIND_FILE, checksum, size)
        ds.tile_size, ds.tile_overlap, ds.params = opts.tile_size, opts.overlap, opts.params()
        ds.tile_date = (
            info.acquired.date() if info.acquired else (today or datetime.now(UTC).date())
        )
        ds.lance_table = RASTER_TILES_TABLE
        try:
            _build(ds, local, info, opts, store, db, workdir)
        except RasterError:
            raise  # the file's pixels are bad: an input error, no row
        except Exception as exc:
            ds.status, ds.error = FAILED, f"{type(exc).__name__}: {exc}"
            drop_tiles(db, ds, quietly=True)
            record_dataset(con, ds, replace_ready=force)
            raise RasterIngestError(f"{uri}: registration failed and was recorded: {exc}") from exc
        if not ds.ready:
            drop_tiles(db, ds)  # before the row: a crash between leaves no row or a failed one
        record_dataset(con, ds, replace_ready=force)
        log.info("%s: %s", dataset_id, ds.status)
        return RegisterResult(ds, created=True)


def _build(
    ds: RasterDataset,
    local: Path,
    info: RasterInfo,
    opts: TilingOptions,
    store: ObjectStore,
    db: lancedb.DBConnection,
    workdir: Path,
) -> None:
    """COG, tiles, index, read-back checks; sets the row's outputs, status and error."""
    tile_date = ds.tile_date
    if tile_date is None:
        raise ValueError(f"{ds.dataset_id}: no tile date set before tiling")
    cog, report, converted = _make_cog(local, info, workdir)
    cog_key = rasters_key(ds.dataset_id, "cog.tif")
    ds.converted = converted
    ds.cog_uri = store.uri(cog_key) if converted else info.uri
    seen = _Tiling(
        tile_windows(info.width, info.height, opts.tile_size, opts.tile_size, opts.overlap)
    )
    log.info("%s: cutting %d tiles of %d px", ds.dataset_id, len(seen.windows), opts.tile_size)
    partition = {"dataset": ds.dataset_id}
    ds.lance_version = replace_dataset_tiles(
        db,
        RASTER_TILES_TABLE,
        RASTER_TILE_SCHEMA,
        _tile_batches(cog, info, ds, tile_date, opts, seen),
        partition,
    )
    ds.tile_count = len(seen.uids)
    index_key = rasters_key(ds.dataset_id, "tiles.parquet")
    ds.tile_index_uri = store.put(
        write_tile_index(seen.index, workdir / "tiles.parquet"), index_key
    )
    if converted:
        store.put(cog, cog_key)
    results = {
        "cog_valid": checks.cog_valid(report, ds.cog_uri),
        "tiles_cover_raster": checks.tiles_cover_raster(seen.windows, info.width, info.height),
        "tile_ids_unique": checks.tile_ids_unique(seen.uids),
        "lance_rows_match": checks.lance_rows_match(
            seen.uids, stored_uids(db, RASTER_TILES_TABLE, partition), RASTER_TILES_TABLE
        ),
        "index_matches": checks.index_matches(
            read_back_index(store, index_key, workdir), seen.uids
        ),
        "footprints_inside": checks.footprints_inside(seen.footprints, info.footprint),
        "pixels_finite": checks.pixels_finite(seen.non_finite, len(seen.uids)),
        "has_valid_pixels": checks.has_valid_pixels(seen.nodata_fractions),
    }
    ds.checks = checks.as_json(results)
    bad = checks.failed(results)
    ds.status = FAILED if bad else READY
    ds.error = f"checks failed: {', '.join(bad)}" if bad else None
