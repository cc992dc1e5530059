"""`flywheel labels ...` commands: import label files into DuckLake and summarize them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from flywheel_cli.lake import lake_config
from flywheel_core.settings import Settings

_SHOW_REJECTS = 5
_SHOW_CELLS = 20


@click.group()
def labels() -> None:
    """Seed labels in DuckLake (the system of record)."""


@labels.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--source", help="Dataset name stored with every label (default: file name).")
@click.option("--doi", help="DOI of the dataset, kept with every label.")
@click.option("--id-column", help="Column holding the source's own label id (default: guessed).")
@click.option("--date-column", help="Column holding the install date or year (default: guessed).")
@click.option("--layer", help="Layer to read from a multi-layer file (e.g. a GeoPackage).")
@click.option(
    "--point-buffer-m",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Radius in metres of the prompt polygon made from a point label.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Import even if a file with the same SHA-256 was imported before (under any source).",
)
def import_(
    file: Path,
    source: str | None,
    doi: str | None,
    id_column: str | None,
    date_column: str | None,
    layer: str | None,
    point_buffer_m: float,
    force: bool,
) -> None:
    """Import the labels of FILE (GeoJSON, GeoPackage, Shapefile or zip, GeoParquet; any CRS).

    The file is read, checked and indexed before the lake is opened; the lake is then held only
    for one short write transaction. A file whose SHA-256 matches an earlier import changes
    nothing (use --force to import it anyway).
    """
    from flywheel_core.labels.errors import LabelFileError
    from flywheel_core.labels.ingest import import_label_file_into
    from flywheel_core.lake.connection import LakeAttachError

    settings = Settings.from_env()
    config = lake_config(settings)
    try:
        done = import_label_file_into(
            config,
            file,
            force=force,
            source=source,
            doi=doi,
            id_column=id_column,
            date_column=date_column,
            layer=layer,
            point_buffer_m=point_buffer_m,
            s2_level=settings.s2_level,
            h3_resolution=settings.h3_resolution,
        )
    except (LabelFileError, LakeAttachError) as exc:
        raise click.ClickException(str(exc)) from None
    batch, result = done.batch, done.result
    for warning in batch.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.duplicate_of is not None:
        click.echo(
            f"{file.name}: already imported (same SHA-256) as {result.duplicate_of.describe()}; "
            "nothing imported (use --force to import it again)"
        )
        return
    _report(file, batch, result, settings.s2_level)


def _report(file: Path, batch: Any, result: Any, s2_level: int) -> None:
    click.echo(
        f"{file.name}: read {result.n_read}, inserted {result.n_inserted}, "
        f"duplicates {result.n_duplicate}, rejected {result.n_rejected}"
    )
    for reject in batch.rejects[:_SHOW_REJECTS]:
        click.echo(f"  rejected row {reject.row}: {reject.reason}")
    if len(batch.rejects) > _SHOW_REJECTS:
        click.echo(f"  ... and {len(batch.rejects) - _SHOW_REJECTS} more rejects")
    click.echo(f"DuckLake snapshot {result.snapshot_id} (import {result.import_id})")
    cells = result.new_cells
    click.echo(f"new labels cover {len(cells)} S2 level-{s2_level} cell(s)")
    if cells:
        shown = " ".join(cells[:_SHOW_CELLS])
        more = f" ... and {len(cells) - _SHOW_CELLS} more" if len(cells) > _SHOW_CELLS else ""
        click.echo(f"  {shown}{more}")


@labels.command()
def stats() -> None:
    """Label counts by source and status."""
    from flywheel_core.lake.connection import LakeAttachError, lake_connection
    from flywheel_core.lake.labels import current_snapshot_id, label_counts

    config = lake_config(Settings.from_env())
    try:
        with lake_connection(config) as con:
            counts = label_counts(con)
            snapshot = current_snapshot_id(con)
    except LakeAttachError as exc:
        raise click.ClickException(str(exc)) from None
    if not counts:
        click.echo("no labels yet (import some with `flywheel labels import FILE`)")
    else:
        width = max(len(s) for s in counts)
        click.echo(f"{'source':<{width}}  {'active':>8}  {'retracted':>9}  {'total':>8}")
        for source, by_status in counts.items():
            active, retracted = by_status.get("active", 0), by_status.get("retracted", 0)
            total = sum(by_status.values())
            click.echo(f"{source:<{width}}  {active:>8}  {retracted:>9}  {total:>8}")
    click.echo(f"DuckLake snapshot {snapshot}")
