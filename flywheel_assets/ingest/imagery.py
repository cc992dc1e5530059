"""`vhr_chips` and `msi_chips`: the imagery of a (cell, date), chipped and aligned."""

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Output,
    asset,
)
from PIL import Image

from flywheel_assets.metadata import preview_metadata
from flywheel_assets.partitions import SETTINGS, cell_date
from flywheel_assets.resources import ImageryResource
from flywheel_assets.scenes import partition_scene
from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery import qa
from flywheel_core.imagery.msi_chips import MSI_CHIP_SCHEMA, S2Scene, iter_msi_chips
from flywheel_core.partitions import CellDate
from flywheel_core.preview import contact_sheet, placeholder
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.lancedb_io import LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource


def _check(
    name: str, result: tuple[bool, dict], severity: AssetCheckSeverity = AssetCheckSeverity.ERROR
) -> AssetCheckResult:
    passed, facts = result
    return AssetCheckResult(check_name=name, passed=passed, metadata=facts, severity=severity)


@asset(
    partitions_def=cell_date,
    io_manager_key="lance_io",
    group_name="ingest",
    kinds={"lancedb", "raster"},
    check_specs=[
        AssetCheckSpec(
            "chips_inside_cell",
            asset="vhr_chips",
            description="Every chip centre lies in its cell.",
        ),
        AssetCheckSpec(
            "crs_consistent",
            asset="vhr_chips",
            description="One projected metric CRS per partition.",
        ),
        AssetCheckSpec(
            "no_nan_in_bands", asset="vhr_chips", description="No NaN or inf in stored bands."
        ),
    ],
)
def vhr_chips(
    context: AssetExecutionContext,
    imagery: ImageryResource,
    ducklake: DuckLakeResource,
    objects: ObjectStoreResource,
    lancedb: LanceDBResource,
) -> Iterator[Output | AssetCheckResult]:
    """The cell's VHR scene for the date window, cut into chips (size, overlap, GSD: settings).

    The chipped scene is also recorded as a raster dataset (`raster_datasets`, lance_table
    `vhr_chips`). That happens after the `Output` is yielded: Dagster stores a yielded output
    through the IO manager before the asset body resumes, so the dataset checks read the chips
    back from Lance as committed and `ready` never precedes the write. The lake is attached
    before that yield, so a locked or unreachable lake fails the step before any chip is stored.
    """
    # lancedb and geopandas load here, in the step, so that loading the code location stays fast
    from flywheel_core.imagery.mosaic import chips_mosaic
    from flywheel_core.imagery.vhr_chips import VhrScene, iter_vhr_chips

    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    area = cell_polygon(part.cell)
    found = partition_scene(context, imagery, "vhr", part)
    rows: list[dict] = []
    if found is None:
        img: Image.Image = placeholder(f"{imagery.vhr_source}: no VHR scene for {part.key}")
    else:
        scene = VhrScene(
            found.files["image"], found.scene_id, found.scene.sensor, found.scene.acquired
        )
        for row in iter_vhr_chips(
            scene,
            part.cell,
            part.date,
            area,
            SETTINGS.chips,
            SETTINGS.s2_level,
            SETTINGS.h3_resolution,
        ):
            rows.append(row)
            if len(rows) % 25 == 0:
                context.log.info(f"{len(rows)} chips read")
        img = (
            Image.fromarray(chips_mosaic(rows))
            if rows
            else placeholder(f"{found.scene_id}: no chip centre inside the cell")
        )
    # Attach the lake BEFORE the chips are stored: a lake that is locked or unreachable must
    # fail the step with nothing written, not after the Lance commit (a failed step that left
    # committed chips behind). The lake stays open through the Lance write, a few seconds.
    with ducklake.connect() if found is not None and rows else nullcontext() as con:
        yield from _store_and_record(
            context, imagery, lancedb, objects, con, found, part, rows, img
        )


def _store_and_record(
    context: AssetExecutionContext,
    imagery: ImageryResource,
    lancedb: LanceDBResource,
    objects: ObjectStoreResource,
    con: duckdb.DuckDBPyConnection | None,
    found: Any,
    part: CellDate,
    rows: list[dict],
    img: Image.Image,
) -> Iterator[Output | AssetCheckResult]:
    """Yield the chips (the IO manager commits them to Lance), the checks, then record the scene
    as a raster dataset on the already open lake `con` (None: nothing to record)."""
    from flywheel_core.imagery.vhr_chips import VHR_CHIP_SCHEMA, rows_to_table
    from flywheel_core.rasters.scenes import record_vhr_scene

    area = cell_polygon(part.cell)
    table = rows_to_table(rows, VHR_CHIP_SCHEMA)
    yield Output(
        table,
        metadata={
            "chips": len(rows),
            "source": imagery.vhr_source,
            "scene": found.scene_id if found else "none",
            "cell_coverage": round(found.scene.coverage, 4) if found else 0.0,
            "chip_size_px": SETTINGS.chips.size_px,
            "gsd_m": float(rows[0]["gsd_m"]) if rows else 0.0,
            **preview_metadata(img, imagery.previews_dir, "vhr_chips", part),
        },
    )
    chip_checks = {
        "chips_inside_cell": qa.chips_inside_cell(rows, area),
        "crs_consistent": qa.crs_consistent(rows),
        "no_nan_in_bands": qa.nan_count(rows, "image"),
    }
    for name, result in chip_checks.items():
        yield _check(name, result)
    if con is None:
        return
    recorded = record_vhr_scene(
        con,
        objects.store(),
        lancedb.connect(),
        href=found.files["image"],
        scene_id=found.scene_id,
        cell=part.cell,
        day=part.date,
        acquired=found.scene.acquired,
        chips=SETTINGS.chips,
        s2_level=SETTINGS.s2_level,
        h3_resolution=SETTINGS.h3_resolution,
        rows=rows,
        chip_checks=chip_checks,
    )
    log = context.log.info if recorded.dataset.ready else context.log.warning
    log(f"raster dataset: {recorded.message}")


def _msi_preview(rows: list[dict]) -> Image.Image:
    from flywheel_core.imagery.mosaic import msi_mosaics  # lancedb: imported by the step only

    rgb, pvi = msi_mosaics(rows)
    clouds = float(np.mean([r["cloud_fraction"] for r in rows]))
    return contact_sheet(
        [rgb, pvi],
        [f"S2 true colour, cloud {clouds:.0%}", "PVI (-1 blue .. 0 red)"],
        tile=320,
        cols=2,
    )


@asset(
    partitions_def=cell_date,
    io_manager_key="lance_io",
    group_name="ingest",
    kinds={"lancedb", "raster"},
    check_specs=[
        AssetCheckSpec(
            "no_nan_in_bands",
            asset="msi_chips",
            description="No NaN or inf in reflectance or indices.",
        ),
        AssetCheckSpec(
            "cloud_fraction_reported",
            asset="msi_chips",
            description="Cloud fraction from SCL on every chip.",
        ),
        AssetCheckSpec(
            "aligned_to_vhr",
            asset="msi_chips",
            description="One MSI chip per VHR chip, same footprint.",
        ),
        AssetCheckSpec(
            "crs_consistent",
            asset="msi_chips",
            description="One projected metric CRS per partition.",
        ),
    ],
)
def msi_chips(
    context: AssetExecutionContext, imagery: ImageryResource, vhr_chips: pa.Table
) -> Iterator[Output | AssetCheckResult]:
    """Sentinel-2 L2A reflectance, SCL and indices warped onto each VHR chip's footprint."""
    part = CellDate.parse(context.partition_key, SETTINGS.s2_level)
    vhr_rows = vhr_chips.drop_columns(["image"]).to_pylist()
    rows: list[dict] = []
    found = None
    if not vhr_rows:
        message = f"no VHR chips for {part.key}: nothing to align Sentinel-2 to"
        context.log.warning(message + "; the partition materializes empty")
        img = placeholder(message)
    else:
        found = partition_scene(context, imagery, "msi", part)
        if found is None:
            img = placeholder(f"{imagery.msi_source}: no Sentinel-2 scene for {part.key}")
        else:
            scene = S2Scene(found.files, found.scene_id, found.scene.sensor, found.scene.acquired)
            rows = list(iter_msi_chips(scene, vhr_rows))
            context.log.info(f"{len(rows)} MSI chips from {found.scene_id}")
            img = _msi_preview(rows)
    table = (
        pa.Table.from_pylist(rows, schema=MSI_CHIP_SCHEMA)
        if rows
        else MSI_CHIP_SCHEMA.empty_table()
    )
    clouds = [r["cloud_fraction"] for r in rows]
    yield Output(
        table,
        metadata={
            "chips": len(rows),
            "source": imagery.msi_source,
            "scene": found.scene_id if found else "none",
            "mean_cloud_fraction": float(np.mean(clouds)) if clouds else 0.0,
            **preview_metadata(img, imagery.previews_dir, "msi_chips", part),
        },
    )
    nan_refl = qa.nan_count(rows, "reflectance", "float32")
    nan_idx = qa.nan_count(rows, "indices", "float32")
    yield _check(
        "no_nan_in_bands",
        (
            nan_refl[0] and nan_idx[0],
            {
                "reflectance_non_finite": nan_refl[1]["non_finite_values"],
                "indices_non_finite": nan_idx[1]["non_finite_values"],
            },
        ),
    )
    yield _check("cloud_fraction_reported", qa.cloud_fraction_reported(rows))
    yield _check("aligned_to_vhr", qa.aligned(vhr_rows, rows))
    yield _check("crs_consistent", qa.crs_consistent(rows))
