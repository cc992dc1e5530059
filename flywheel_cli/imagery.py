"""`flywheel imagery list`: the scenes a source finds for a cell and date, and its choice."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from flywheel_core.geo.s2 import InvalidCellError, parse_token
from flywheel_core.partitions import window_end
from flywheel_core.settings import Settings

PREVIEW_MIN_PX = 256


@click.group()
def imagery() -> None:
    """Imagery sources: the scenes a source offers a partition, and a preview of the choice."""


@imagery.command("list")
@click.option("--source", "name", required=True, help="Source name (see `flywheel imagery list`).")
@click.option("--root", default="", help="Where the source's data lives (folder, s3://, URL).")
@click.option("--cell", required=True, help="S2 cell token of the partition.")
@click.option("--date", "day", required=True, help="Partition date, YYYY-MM-DD.")
@click.option("--kind", type=click.Choice(["vhr", "msi"]), default=None, help="Default: first.")
@click.option("--options", "options_json", default="{}", help="The source's options, as JSON.")
@click.option("--preview", type=click.Path(dir_okay=False, path_type=Path), default=None)
def list_scenes(
    name: str,
    root: str,
    cell: str,
    day: str,
    kind: str | None,
    options_json: str,
    preview: Path | None,
) -> None:
    """Print the scenes NAME finds for CELL in the date window starting DATE, and its choice.

    The window is the partition's ([DATE, next DATE) at FLYWHEEL_DATE_GRAIN); the chosen scene
    is marked with `*`, as `vhr_chips` / `msi_chips` would pick it. `--preview out.png` writes
    a true-colour picture of the chosen scene's window over the cell.
    """
    from flywheel_core.imagery.sources.find import find_scene, read_cell, window_rgb
    from flywheel_core.imagery.sources.registry import source_class
    from flywheel_core.imagery.sources.types import SourceError

    settings = Settings.from_env()
    try:
        parse_token(cell)
    except InvalidCellError as exc:
        raise click.BadParameter(str(exc), param_hint="--cell") from None
    try:
        start = date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter(f"{day!r} is not YYYY-MM-DD", param_hint="--date") from None
    try:
        options = json.loads(options_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--options") from None
    end = window_end(start, settings.date_grain)
    try:
        cls = source_class(name)
        source = cls(kind or cls.kinds[0], root, options)  # type: ignore[arg-type]
        found = find_scene(source, cell, start, end)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{source.name} ({source.kind}), cell {cell}, [{start}, {end}): ", nl=False)
    click.echo(f"{len(found.scenes)} scene(s)")
    chosen = found.choice.scene.scene_id if found.choice else None
    for scene in found.scenes:
        row = scene.describe()
        mark = "*" if scene.scene_id == chosen else " "
        parts = f" ({len(scene.parts)} tiles)" if scene.parts else ""
        click.echo(
            f"{mark} {row['scene_id']}{parts}  {row['acquired'][:19]}  {row['sensor']}  "
            f"gsd {row['gsd_m']} m  {row['crs']}  cloud {row['cloud_cover']}  "
            f"covers {row['coverage']:.0%}"
        )
    if found.choice is None:
        click.echo("nothing to choose: the assets would materialize this partition empty")
        return
    click.echo(f"chosen: {chosen} ({found.choice.reason})")
    if preview is not None:
        from PIL import Image

        try:
            window = read_cell(source, found.choice.scene, cell, start)
        except SourceError as exc:
            raise click.ClickException(str(exc)) from None
        preview.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(window_rgb(window))
        scale = max(1, -(-PREVIEW_MIN_PX // min(img.size)))  # 10 m windows are a few dozen px
        img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(preview)
        grid, valid = window.grid, float(window.valid.mean())
        click.echo(f"preview: {preview} ({grid.width}x{grid.height} px, {valid:.0%} valid)")
