"""`flywheel cells ...`: register S2 cells as dynamic partitions in the Dagster instance."""

from __future__ import annotations

import click

from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_cli.instance import get_instance
from flywheel_core.geo.s2 import InvalidCellError, cell_from_lonlat, cell_polygon, parse_token
from flywheel_core.settings import Settings


def _cells_from_labels(settings: Settings) -> list[str]:
    from flywheel_core.lake.connection import LakeConfig, lake_connection
    from flywheel_core.lake.report import active_label_cells

    config = LakeConfig.from_settings(settings)
    with lake_connection(config) as con:
        return active_label_cells(con, settings.s2_level)


@click.group()
def cells() -> None:
    """S2 cells: the spatial partitions of every asset."""


@cells.command(
    "add",
    context_settings={"ignore_unknown_options": True},  # so "-122.4" is a longitude, not an option
)
@click.argument("coords", nargs=-1)
@click.option("--token", "tokens", multiple=True, help="Add a cell by its S2 token (repeatable).")
@click.option(
    "--from-labels", is_flag=True, help="Add every cell covered by active DuckLake labels."
)
def add(coords: tuple[str, ...], tokens: tuple[str, ...], from_labels: bool) -> None:
    """Register the cells containing LON LAT [LON LAT ...] (and/or --token, --from-labels)."""
    settings = Settings.from_env()
    if len(coords) % 2:
        raise click.UsageError(f"coordinates come in LON LAT pairs; got {len(coords)} numbers")
    found: list[str] = []
    try:
        values = [float(c) for c in coords]
    except ValueError as exc:
        raise click.UsageError(f"coordinates must be numbers: {exc}") from exc
    try:
        for lon, lat in zip(values[::2], values[1::2], strict=True):
            found.append(cell_from_lonlat(lon, lat, settings.s2_level))
        for token in tokens:
            parse_token(token, settings.s2_level)
            found.append(token)
    except InvalidCellError as exc:
        raise click.BadParameter(str(exc)) from exc
    if from_labels:
        found.extend(_cells_from_labels(settings))
    if not found:
        raise click.UsageError("nothing to add: give LON LAT pairs, --token or --from-labels")
    instance = get_instance()
    existing = set(instance.get_dynamic_partitions(S2_CELLS_NAME))
    new = sorted(set(found) - existing)
    if new:
        instance.add_dynamic_partitions(S2_CELLS_NAME, new)
    for token in sorted(set(found)):
        lon, lat = cell_polygon(token).centroid.coords[0]
        state = "added" if token in new else "already registered"
        click.echo(f"{token}  level {settings.s2_level}  centre {lon:.5f},{lat:.5f}  {state}")
    click.echo(
        f"{len(new)} new cell(s); {len(existing) + len(new)} registered "
        f"in {instance.root_directory}"
    )


@cells.command("list")
def list_cells() -> None:
    """Print the registered cells."""
    for token in get_instance().get_dynamic_partitions(S2_CELLS_NAME):
        click.echo(token)
