"""`flywheel rasters ...`: register raster files as datasets and look at what is registered."""

from __future__ import annotations

import json
from typing import Any

import click

from flywheel_cli.lake import lake_config
from flywheel_core.settings import Settings


@click.group()
def rasters() -> None:
    """Raster datasets: COG, tiles in Lance, GeoParquet tile index, checks (DuckLake registry)."""


def _s3_client(uri: str) -> Any:
    """A boto3 client configured like the object store's (endpoint, SSL, region from the env)."""
    from flywheel_core.store.objects import split_s3
    from flywheel_resources.object_store import ObjectStoreResource

    bucket, _ = split_s3(uri)
    return ObjectStoreResource(root=f"s3://{bucket}").store().client  # type: ignore[attr-defined]


@rasters.command("register")
@click.argument("path_or_uri")
@click.option("--name", help="A label for the dataset (default: the file name without suffix).")
@click.option(
    "--tile-size",
    type=click.IntRange(min=1),
    help="Tile size in pixels (default: FLYWHEEL_CHIP_SIZE, 256).",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    help="Pixels shared by neighbouring tiles (default: FLYWHEEL_CHIP_OVERLAP, 0).",
)
@click.option("--force", is_flag=True, help="Rebuild even if the dataset is already ready.")
def register(
    path_or_uri: str, name: str | None, tile_size: int | None, overlap: int | None, force: bool
) -> None:
    """Register a raster file (local path or s3:// URI): COG, tiles, index, checks."""
    from flywheel_core.lake.connection import LakeAttachError, lake_connection
    from flywheel_core.rasters.ingest import RasterIngestError, TilingOptions, register_raster
    from flywheel_core.rasters.inspect import RasterError
    from flywheel_core.store.lance_tables import connect
    from flywheel_resources.object_store import ObjectStoreResource

    settings = Settings.from_env()
    try:
        options = TilingOptions(
            tile_size=tile_size or settings.chips.size_px,
            overlap=settings.chips.overlap_px if overlap is None else overlap,
            s2_level=settings.s2_level,
            h3_resolution=settings.h3_resolution,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    config = lake_config(settings)
    s3 = _s3_client(path_or_uri) if path_or_uri.startswith("s3://") else None
    try:
        with lake_connection(config) as con:
            result = register_raster(
                con,
                ObjectStoreResource().store(),
                connect(settings.lancedb_uri),
                path_or_uri,
                name=name,
                options=options,
                s3_client=s3,
                force=force,
            )
    except (RasterError, RasterIngestError, LakeAttachError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.message)
    ds = result.dataset
    if result.created and ds.ready:
        click.echo(f"  cog:   {ds.cog_uri}{' (converted)' if ds.converted else ''}")
        click.echo(f"  index: {ds.tile_index_uri}")
    if not ds.ready:
        for check, facts in sorted(ds.checks.items()):
            if not facts.get("passed"):
                click.echo(f"  failed check {check}: {_facts(facts)}", err=True)
        raise SystemExit(1)


def _facts(facts: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in facts.items() if k != "passed")


@rasters.command("list")
@click.option("--status", type=click.Choice(["ready", "failed"]), help="Only this status.")
@click.option(
    "--kind",
    type=click.Choice(["raster", "vhr_scene"]),
    help="raster: registered files; vhr_scene: the flywheel's chipped VHR scenes.",
)
def list_(status: str | None, kind: str | None) -> None:
    """Registered raster datasets, oldest first."""
    from flywheel_core.lake.connection import LakeAttachError, lake_connection
    from flywheel_core.rasters.registry import list_datasets

    try:
        with lake_connection(lake_config()) as con:
            found = list_datasets(con, status=status, kind=kind)
    except LakeAttachError as exc:
        raise click.ClickException(str(exc)) from None
    if not found:
        click.echo("no raster datasets registered")
        return
    click.echo(
        f"{'dataset_id':<21}{'status':<8}{'kind':<11}{'size px':>12}{'bands':>6}"
        f"{'tiles':>7}  {'date':<11}{'crs':<12}name"
    )
    for ds in found:
        size = f"{ds.width}x{ds.height}"
        crs = (ds.crs or "")[:11]
        click.echo(
            f"{ds.dataset_id:<21}{ds.status:<8}{ds.kind:<11}{size:>12}{ds.band_count or 0:>6}"
            f"{ds.tile_count or 0:>7}  {ds.tile_date!s:<11}{crs:<12}{ds.name}"
        )


@rasters.command("show")
@click.argument("dataset_id")
def show(dataset_id: str) -> None:
    """Everything recorded about one dataset (a unique id prefix is enough)."""
    from flywheel_core.lake.connection import LakeAttachError, lake_connection
    from flywheel_core.rasters.registry import find_datasets

    try:
        with lake_connection(lake_config()) as con:
            found = find_datasets(con, dataset_id)
    except LakeAttachError as exc:
        raise click.ClickException(str(exc)) from None
    if not found:
        raise click.ClickException(
            f"no raster dataset {dataset_id!r} (see `flywheel rasters list`)"
        )
    if len(found) > 1:
        ids = ", ".join(d.dataset_id for d in found[:5])
        raise click.ClickException(f"{dataset_id!r} matches {len(found)} datasets: {ids}")
    ds = found[0]
    skip = {"footprint", "checks", "params"}
    for key, value in vars(ds).items():
        if key not in skip:
            click.echo(f"{key:<16}{value}")
    click.echo(f"{'params':<16}{json.dumps(ds.params, sort_keys=True)}")
    click.echo("checks:")
    for check, facts in sorted(ds.checks.items()):
        mark = "pass" if facts.get("passed") else "FAIL"
        click.echo(f"  {mark}  {check}: {_facts(facts)}")


@rasters.command("embed")
@click.argument("dataset_id")
@click.option(
    "--model",
    default=None,
    help="'tiny' (random weights, marked untrained), a local folder, or a cached hub id "
    "(default: FLYWHEEL_DINOV3_MODEL, else tiny).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
def embed(dataset_id: str, model: str | None, batch_size: int) -> None:
    """DINOv3 vectors of a ready dataset's tiles: Lance, Parquet export, QA, ANN index."""
    import os

    from flywheel_core.embed.dinov3 import DinoModelNotFoundError, load_dinov3
    from flywheel_core.lake.connection import LakeAttachError, lake_connection
    from flywheel_core.rasters.embed import DatasetNotReadyError, embed_dataset
    from flywheel_core.rasters.registry import find_datasets
    from flywheel_resources.object_store import ObjectStoreResource

    settings = Settings.from_env()
    try:
        with lake_connection(lake_config(settings)) as con:
            found = find_datasets(con, dataset_id)
    except LakeAttachError as exc:
        raise click.ClickException(str(exc)) from None
    if len(found) != 1:
        raise click.ClickException(
            f"{dataset_id!r} matches {len(found)} datasets (see `flywheel rasters list`)"
        )
    source = model or os.environ.get("FLYWHEEL_DINOV3_MODEL", "tiny")
    try:
        dino = load_dinov3(source)
    except DinoModelNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    if not dino.trained:
        click.echo(
            f"warning: {dino.model_id} has RANDOM weights: vectors are stored with "
            "trained=False and are for plumbing only",
            err=True,
        )
    try:
        result = embed_dataset(
            dino,
            found[0],
            lancedb_uri=settings.lancedb_uri,
            store=ObjectStoreResource().store(),
            batch_size=batch_size,
            progress=click.echo,
        )
    except DatasetNotReadyError as exc:
        raise click.ClickException(str(exc)) from None
    for (cell, day), part in result.partitions.items():
        qa = part.qa
        click.echo(
            f"  {cell}|{day}: {part.rows} vectors, coverage {qa['coverage']:.3f}, "
            f"NaN {qa['nan_vectors']}, zero {qa['zero_vectors']}, "
            f"duplicates {qa['duplicate_vectors']} -> {part.export_uri}"
        )
    click.echo(f"{result.dataset_id}: {result.rows} vectors ({dino.model_id}, {dino.dim}-d)")
    if not result.qa_passed:
        raise SystemExit(1)
