"""`flywheel world ...` commands: the synthetic world the project runs on offline.

`world_options` / `world_settings_from_options` turn every `WorldSettings` field into a command
line option (validated with the field's own message) for any command that builds a world.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from flywheel_core.geo.s2 import InvalidCellError, cells_around, parse_token
from flywheel_core.settings import Settings
from flywheel_core.world.limits import check_world_size, dates_outside

if TYPE_CHECKING:
    from flywheel_core.world.world_settings import WorldSettings

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

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


# --- the world's settings as options (shared with `flywheel rounds`) ---------------------------


def _setting(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback validating one WorldSettings field, with the field's own message."""
    from flywheel_core.world.world_settings import check_field

    def callback(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            if name == "panel_mix":
                return check_field(name, parse_panel_mix(value))
            check_field(name, value)
        except ValueError as err:
            raise click.BadParameter(str(err)) from None
        return value

    return callback


def parse_panel_mix(text: str | Mapping[str, float]) -> dict[str, float]:
    """`poly=0.4,mono=0.45,thin_film=0.15` -> weights (types left out get 0)."""
    if isinstance(text, Mapping):
        return dict(text)
    out: dict[str, float] = {}
    for item in (p.strip() for p in str(text).split(",")):
        if not item:
            continue
        name, sep, weight = item.partition("=")
        if not sep:
            raise ValueError(
                f"panel_mix: {item!r} is not TYPE=WEIGHT, e.g. poly=0.4,mono=0.45,thin_film=0.15"
            )
        try:
            out[name.strip()] = float(weight)
        except ValueError:
            raise ValueError(
                f"panel_mix: the weight of {name.strip()} is not a number: {weight!r}"
            ) from None
    if not out:
        raise ValueError("panel_mix: give at least one TYPE=WEIGHT, e.g. poly=1")
    return out


def _default_mix() -> str:
    from flywheel_core.world.world_settings import DEFAULT_PANEL_MIX

    return ",".join(f"{t}={w:g}" for t, w in DEFAULT_PANEL_MIX)


_WORLD_OPTIONS = (
    click.option(
        "--seed",
        "seed",
        type=int,
        default=0,
        show_default=True,
        callback=_setting("seed"),
        help="Seed of every random choice (same settings, same bytes).",
    ),
    click.option(
        "--seed-fraction",
        "seed_fraction",
        type=float,
        default=0.3,
        show_default=True,
        callback=_setting("seed_fraction"),
        help="Fraction of installations given to the user as seed labels (0-1).",
    ),
    click.option(
        "--jitter-m",
        "jitter_m",
        type=float,
        default=1.0,
        show_default=True,
        callback=_setting("jitter_m"),
        help="Std of the seed labels' positional error in metres (0-50).",
    ),
    click.option(
        "--point-fraction",
        "point_fraction",
        type=float,
        default=0.2,
        show_default=True,
        callback=_setting("point_fraction"),
        help="Fraction of seed labels that are points instead of polygons (0-1).",
    ),
    click.option(
        "--cloudy-fraction",
        "cloudy_dates_fraction",
        type=float,
        default=0.34,
        show_default=True,
        callback=_setting("cloudy_dates_fraction"),
        help="Fraction of cell-dates with clouds (0-1).",
    ),
    click.option(
        "--gsd",
        "gsd_m",
        type=float,
        default=0.3125,
        show_default=True,
        callback=_setting("gsd_m"),
        help="VHR pixel size in metres (0.3-1.0), area-averaged from the 0.3125 m rendering.",
    ),
    click.option(
        "--panel-mix",
        "panel_mix",
        default=_default_mix(),
        show_default=True,
        callback=_setting("panel_mix"),
        help="Weights of the panel types an installation is drawn from (poly, mono, thin_film).",
    ),
    click.option(
        "--install-density",
        "install_density",
        type=float,
        default=1.0,
        show_default=True,
        callback=_setting("install_density"),
        help="Multiplier of PV systems per cell area (0-4).",
    ),
    click.option(
        "--distractor-density",
        "distractor_density",
        type=float,
        default=1.0,
        show_default=True,
        callback=_setting("distractor_density"),
        help="Multiplier of PV look-alikes per cell area (0-4; 0 = none).",
    ),
    click.option(
        "--scene-variation",
        "scene_variation",
        type=float,
        default=1.0,
        show_default=True,
        callback=_setting("scene_variation"),
        help="Scale of per-scene illumination, haze, colour and noise draws (0-2; 0 = all alike).",
    ),
)


def world_options(fn: F | None = None, /, **defaults: Any) -> Any:
    """Add an option for every WorldSettings field; turn them into settings with
    `world_settings_from_options(**kwargs)`. `@world_options(install_density=1.6)` changes the
    defaults a command shows and uses."""

    def apply(f: F) -> F:
        for option in reversed(_WORLD_OPTIONS):
            f = option(f)
        for param in getattr(f, "__click_params__", []):
            if param.name in defaults:
                param.default = defaults[param.name]
        return f

    return apply(fn) if fn is not None else apply


def world_settings_from_options(**kwargs: Any) -> WorldSettings:
    """The WorldSettings of `world_options`' values (other keyword arguments are ignored)."""
    from flywheel_core.world.world_settings import FIELD_NAMES, WorldSettings

    values = {k: v for k, v in kwargs.items() if k in FIELD_NAMES and v is not None}
    try:
        if isinstance(values.get("panel_mix"), str):
            values["panel_mix"] = parse_panel_mix(values["panel_mix"])
        return WorldSettings(**values)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


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
    help="Number of adjacent cells around --lon/--lat (at FLYWHEEL_S2_LEVEL; at most 400).",
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
@world_options
def generate(
    out_dir: Path | None,
    lon: float,
    lat: float,
    n_cells: int,
    tokens: list[str],
    dates: list[date],
    **world_kwargs: Any,
) -> None:
    """Generate the synthetic world: scenes, truth, look-alikes, seed labels, STAC, preview."""
    from flywheel_core.world.synthetic import generate_world  # heavy imports only when used

    world_settings = world_settings_from_options(**world_kwargs)
    settings = Settings.from_env()
    out = out_dir if out_dir is not None else settings.world_dir
    check_world_size(len(tokens) or n_cells, len(dates))  # before laying out a single cell
    today = datetime.now(UTC).date()
    for warning in dates_outside(
        dates, settings.start_date, settings.date_grain, today, settings.end_date
    ):
        click.echo(f"warning: {warning}", err=True)
    if tokens:
        cells = tokens
    else:
        try:
            cells = cells_around(lon, lat, settings.s2_level, n_cells)
        except InvalidCellError as err:
            raise click.BadParameter(str(err), param_hint="--lon/--lat") from None
    log.info("generating %d cells x %d dates into %s", len(cells), len(dates), out)
    manifest = generate_world(out, cells, dates, world_settings)
    click.echo(summary(manifest))


def summary(manifest: Any) -> str:
    """What `flywheel world generate` prints about the world it wrote."""
    from flywheel_core.world.layout import DISTRACTOR_KINDS
    from flywheel_core.world.world_settings import PANEL_TYPES

    c, ws = manifest.counts, manifest.settings
    months = sorted({d.replace(day=1).isoformat() for d in manifest.dates})
    by_type = ", ".join(f"{t} {c[f'panel_{t}']}" for t in PANEL_TYPES)
    by_kind = ", ".join(f"{k} {c[f'distractor_{k}']}" for k in DISTRACTOR_KINDS)
    seconds = manifest.scene_seconds
    mix = ",".join(f"{t}={w:g}" for t, w in ws.panel_mix)
    return (
        f"Synthetic world written to {manifest.out_dir}\n"
        f"  cells ({len(manifest.cells)}): {', '.join(manifest.cells)}\n"
        f"  dates ({len(manifest.dates)}): {', '.join(d.isoformat() for d in manifest.dates)}"
        f" ({c['cloudy_scenes']} of {c['scenes']} scenes cloudy)\n"
        f"  settings: seed {ws.seed}, VHR GSD {ws.gsd_m:g} m, panel mix {mix}, install density"
        f" {ws.install_density:g}, distractor density {ws.distractor_density:g}, scene variation"
        f" {ws.scene_variation:g}\n"
        f"  PV installations (truth): {c['installations']}"
        f" ({c['rooftop']} rooftop, {c['ground']} ground-mounted) -> {manifest.truth_path}\n"
        f"    by panel type: {by_type}\n"
        f"  PV look-alikes (hidden): {c['distractors']} -> {manifest.distractors_path}\n"
        f"    by kind: {by_kind}\n"
        f"  seed labels: {c['seed_labels']} ({c['seed_points']} points)"
        f" -> {manifest.seed_labels_path}\n"
        f"  STAC catalog: {manifest.catalog_path}\n"
        f"  preview: {manifest.preview_path}\n"
        + (
            f"  {len(seconds)} scenes in {sum(seconds):.1f} s"
            f" ({sum(seconds) / len(seconds):.2f} s per scene)\n"
            if seconds
            else ""
        )
        + f"Note: date partitions are monthly, keyed by the first of the month"
        f" ({', '.join(months)}); import the seed labels with `flywheel labels import"
        f" {manifest.seed_labels_path}`."
    )
