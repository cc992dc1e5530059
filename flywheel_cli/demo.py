"""`flywheel demo`: the embedded default, end to end, on this machine.

`prepare` builds the synthetic world, imports its seed labels and registers its cells in the
persistent instance (so `make dev` shows the runs); the demo then turns the flywheel three rounds.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import click

from flywheel_core.settings import Settings

if TYPE_CHECKING:
    from dagster import DagsterInstance

DEMO_DATES = "2024-05-01,2024-06-01,2024-07-01"
# The terminal gets a few lines per round; every event still lands in the instance for the UI.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def parse_dates(text: str) -> list[date]:
    try:
        days = [date.fromisoformat(d.strip()) for d in text.split(",") if d.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"dates must be YYYY-MM-DD, comma separated: {exc}") from exc
    off = [d for d in days if d.day != 1]
    if off:
        raise click.BadParameter(f"monthly partitions start on the 1st; got {off[0]}")
    return days


def prepare(
    settings: Settings, lon: float, lat: float, n_cells: int, days: list[date], world: Any
) -> tuple[list[str], DagsterInstance]:
    """World (`world`: WorldSettings), seed labels in DuckLake, cells in the instance; all
    idempotent."""
    from flywheel_assets.partitions import S2_CELLS_NAME
    from flywheel_cli.instance import get_instance
    from flywheel_core.geo.s2 import cells_around
    from flywheel_core.labels.ingest import import_label_file
    from flywheel_core.lake.config import LakeConfig
    from flywheel_core.lake.connection import lake_connection
    from flywheel_core.world.limits import check_world_size
    from flywheel_core.world.synthetic import generate_world

    check_world_size(n_cells, len(days))
    cells = cells_around(lon, lat, settings.s2_level, n_cells)
    click.echo(f"world: {len(cells)} cells x {len(days)} dates -> {settings.world_dir}")
    manifest = generate_world(settings.world_dir, cells, days, world)
    counts = manifest.counts
    click.echo(
        f"world: {counts['installations']} installations, {counts.get('distractors', 0)} "
        f"look-alikes, VHR at {world.gsd_m:g} m"
    )
    seeds = settings.world_dir / "seed_labels.parquet"
    config = LakeConfig.from_settings(settings)
    with lake_connection(config) as con:
        _, result = import_label_file(
            con,
            seeds,
            source="synthetic-seed",
            s2_level=settings.s2_level,
            h3_resolution=settings.h3_resolution,
        )
    click.echo(f"seed labels: inserted {result.n_inserted}, already there {result.n_duplicate}")
    instance = get_instance()
    known = set(instance.get_dynamic_partitions(S2_CELLS_NAME))
    instance.add_dynamic_partitions(S2_CELLS_NAME, [c for c in cells if c not in known])
    click.echo(f"cells registered in {instance.root_directory}")
    return cells, instance


@click.command()
@click.option("--rounds", "n_rounds", default=3, show_default=True)
def demo(n_rounds: int) -> None:
    """The demo world, three flywheel rounds, and where to look next."""
    from flywheel_cli.rounds import rounds

    click.get_current_context().invoke(rounds, n_rounds=n_rounds)
