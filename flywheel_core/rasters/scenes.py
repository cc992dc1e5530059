"""The flywheel's VHR scenes as raster datasets.

`vhr_chips` cuts a scene with the same tiling code as a registered file; this records the result
in the same `raster_datasets` table: one dataset per (scene file, cell, date, chip settings),
because the partition's chips are the scene's tiles whose centres lie in the cell. Its tiles are
the `vhr_chips` rows of that partition (read back from Lance after the IO manager's commit), its
index is a GeoParquet like any dataset's, and it is ready when the chip checks the asset already
runs pass together with the dataset checks. An unchanged scene re-chipped with the same settings
finds its ready row and writes nothing to DuckLake.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import lancedb

from flywheel_core.imagery.vhr_chips import chip_image
from flywheel_core.rasters import checks
from flywheel_core.rasters.checks import CheckResult
from flywheel_core.rasters.cog import validate_cog
from flywheel_core.rasters.ingest import (
    RasterIngestError,
    RegisterResult,
    base_dataset,
    rasters_key,
    read_back_index,
    stored_uids,
)
from flywheel_core.rasters.inspect import inspect_raster, sha256_file
from flywheel_core.rasters.registry import (
    FAILED,
    KIND_VHR_SCENE,
    READY,
    RasterDataset,
    get_dataset,
    make_dataset_id,
    record_dataset,
)
from flywheel_core.rasters.source import local_file
from flywheel_core.rasters.tiling import index_record, pixel_facts, source_pixels, write_tile_index
from flywheel_core.settings import ChipSettings
from flywheel_core.store.objects import ObjectStore

log = logging.getLogger(__name__)


def scene_params(
    cell: str, day: date, chips: ChipSettings, s2_level: int, h3_resolution: int
) -> dict[str, Any]:
    return {
        "kind": KIND_VHR_SCENE,
        "cell": cell,
        "date": day.isoformat(),
        "tile_size": chips.size_px,
        "overlap": chips.overlap_px,
        "gsd_m": chips.gsd_m,
        "s2_level": s2_level,
        "h3_resolution": h3_resolution,
    }


def record_vhr_scene(
    con: Any,
    store: ObjectStore,
    db: lancedb.DBConnection,
    *,
    href: str,
    scene_id: str,
    cell: str,
    day: date,
    acquired: datetime | None,
    chips: ChipSettings,
    s2_level: int,
    h3_resolution: int,
    rows: list[dict],
    chip_checks: dict[str, CheckResult],
    lance_table: str = "vhr_chips",
    s3_client: Any | None = None,
) -> RegisterResult:
    """Record a partition's chipped scene in `raster_datasets` (after its chips are in Lance)."""
    params = scene_params(cell, day, chips, s2_level, h3_resolution)
    with tempfile.TemporaryDirectory(prefix="flywheel-scene-") as tmp:
        workdir = Path(tmp)
        local = local_file(href, workdir, s3_client)
        checksum = sha256_file(local)
        dataset_id = make_dataset_id(checksum, params)
        existing = get_dataset(con, dataset_id)
        if existing is not None and existing.ready:
            log.info("%s (%s) already registered, ready", dataset_id, scene_id)
            return RegisterResult(existing, created=False)
        info = inspect_raster(local, href)
        name = f"{scene_id} {cell} {day.isoformat()}"
        ds = base_dataset(info, dataset_id, name, KIND_VHR_SCENE, checksum, local.stat().st_size)
        if acquired is not None:
            ds.acquired = acquired
        report = validate_cog(local)
        ds.cog_uri, ds.converted = (href if report.valid else None), False
        ds.params = {**params, "cog_layout_errors": report.errors}
        ds.tile_size, ds.tile_overlap, ds.tile_date = chips.size_px, chips.overlap_px, day
        ds.lance_table, ds.tile_count = lance_table, len(rows)
        try:
            _index_and_check(
                ds, lance_table, info.res[0], info.nodata, rows, chip_checks, store, db, workdir
            )
        except Exception as exc:
            ds.status, ds.error = FAILED, f"{type(exc).__name__}: {exc}"
            record_dataset(con, ds, replace_ready=True)
            raise RasterIngestError(f"{name}: recording failed and was recorded: {exc}") from exc
        record_dataset(con, ds, replace_ready=True)
        log.info("%s (%s): %s, %d chips", dataset_id, name, ds.status, len(rows))
        return RegisterResult(ds, created=True)


def _index_and_check(
    ds: RasterDataset,
    lance_table: str,
    native_gsd: float,
    nodata: float | None,
    rows: list[dict],
    chip_checks: dict[str, CheckResult],
    store: ObjectStore,
    db: lancedb.DBConnection,
    workdir: Path,
) -> None:
    records = []
    for row in rows:
        src_size = source_pixels(row["width"], row["gsd_m"], native_gsd)
        facts = pixel_facts(chip_image(row), nodata)
        records.append(index_record(row, ds.dataset_id, src_size, facts.nodata_fraction))
    key = rasters_key(ds.dataset_id, "tiles.parquet")
    ds.tile_index_uri = store.put(write_tile_index(records, workdir / "tiles.parquet"), key)
    uids = [r["uid"] for r in rows]
    partition = {"cell": rows[0]["cell"], "date": rows[0]["date"]} if rows else {}
    results = {
        **chip_checks,
        "tile_ids_unique": checks.tile_ids_unique(uids),
        "lance_rows_match": checks.lance_rows_match(
            uids, stored_uids(db, lance_table, partition) if rows else [], lance_table
        ),
        "index_matches": checks.index_matches(read_back_index(store, key, workdir), uids),
    }
    if lance_table in db.table_names():
        ds.lance_version = db.open_table(lance_table).version
    ds.checks = checks.as_json(results)
    bad = checks.failed(results)
    ds.status = FAILED if bad else READY
    ds.error = f"checks failed: {', '.join(bad)}" if bad else None
