"""`flywheel world ...` commands: the synthetic world the project runs on offline."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import click

from flywheel_core.geo.s2 import InvalidCellError, cells_around, parse_token
from flywheel_core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_DATES = "2024-05-01,2024-06-01,2024-07-01"


def _parse_dates(_ctx: click.Context, _param: click.Parameter, value: str) -> list[date]:
    out = []
    for text in (v.strip() for v in value.split(",")):
        if not text:
            continue
        try:
            out.append(date.fromisoformat(text))
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not an ISO date (YYYY-MM-DD), e.g. {DEFAULT_DATES}"
            ) from None
    if not out:
        raise click.BadParameter("give at least one date, e.g. " + DEFAULT_DATES)
    return out


def _fraction(_ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise click.BadParameter(f"{param.name} must be between 0 and 1, got {value}")
    return value


def _tokens(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    level = Settings.from_env().s2_level
    tokens = []
    for token in value:
        try:
            parse_token(token, level)
        except InvalidCellError as err:
            raise click.BadParameter(str(err)) from None
        tokens.append(token)
    return tokens


@click.group()
def world() -> None:
    """The deterministic synthetic world (VHR + Sentinel-2 scenes, truth, seed labels)."""


@world.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (default: FLYWHEEL_WORLD_DIR, i.e. data/world).",
)
@click.option(
    "--lon", type=float, default=11.58, show_default=True, help="Longitude of the demo area."
)
@click.option(
    "--lat", type=float, default=48.14, show_default=True, help="Latitude of the demo area."
)
@click.option(
    "--cells",
    "n_cells",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Number of adjacent cells around --lon/--lat (at FLYWHEEL_S2_LEVEL).",
)
@click.option(
    "--cell",
    "tokens",
    multiple=True,
    callback=_tokens,
    help="Explicit S2 cell token (repeatable); replaces --lon/--lat/--cells.",
)
@click.option(
    "--dates",
    "dates",
    default=DEFAULT_DATES,
    show_default=True,
    callback=_parse_dates,
    help="Comma-separated ISO acquisition dates.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--seed-fraction",
    type=float,
    default=0.3,
    show_default=True,
    callback=_fraction,
    help="Fraction of installations given to the user as seed labels.",
)
@click.option(
    "--jitter-m",
    type=click.FloatRange(min=0.0),
    default=1.0,
    show_default=True,
    help="Std of the seed labels' positional error in metres.",
)
@click.option(
    "--point-fraction",
    type=float,
    default=0.2,
    show_default=True,
    callback=_fraction,
    help="Fraction of seed labels that are points instead of polygons.",
)
def generate(
    out_dir: Path | None,
    lon: float,
    lat: float,
    n_cells: int,
    tokens: list[str],
    dates: list[date],
    seed: int,
    seed_fraction: float,
    jitter_m: float,
    point_fraction: float,
) -> None:
    """Generate the synthetic world: scenes, truth, seed labels and a STAC catalog."""
    from flywheel_core.imagery.synthetic import generate_world  # heavy imports only when used

    settings = Settings.from_env()
    out = out_dir if out_dir is not None else settings.world_dir
    if tokens:
        cells = tokens
    else:
        try:
            cells = cells_around(lon, lat, settings.s2_level, n_cells)
        except InvalidCellError as err:
            raise click.BadParameter(str(err), param_hint="--lon/--lat") from None
    log.info("generating %d cells x %d dates into %s", len(cells), len(dates), out)
    manifest = generate_world(
        out,
        cells,
        dates,
        seed=seed,
        seed_fraction=seed_fraction,
        jitter_m=jitter_m,
        point_fraction=point_fraction,
    )
    c = manifest.counts
    months = sorted({d.replace(day=1).isoformat() for d in manifest.dates})
    click.echo(
        f"Synthetic world written to {manifest.out_dir}\n"
        f"  cells ({len(manifest.cells)}): {', '.join(manifest.cells)}\n"
        f"  dates ({len(manifest.dates)}): {', '.join(d.isoformat() for d in manifest.dates)}"
        f" ({c['cloudy_scenes']} of {c['scenes']} scenes cloudy)\n"
        f"  PV installations (truth): {c['installations']}"
        f" ({c['rooftop']} rooftop, {c['ground']} ground-mounted) -> {manifest.truth_path}\n"
        f"  seed labels: {c['seed_labels']} ({c['seed_points']} points)"
        f" -> {manifest.seed_labels_path}\n"
        f"  STAC catalog: {manifest.catalog_path}\n"
        f"Note: date partitions are monthly, keyed by the first of the month"
        f" ({', '.join(months)}); import the seed labels with `flywheel labels import"
        f" {manifest.seed_labels_path}`."
    )
