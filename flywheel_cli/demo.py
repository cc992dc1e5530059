"""`flywheel demo`: the embedded default, end to end, on this machine.

Builds the synthetic world, imports its seed labels, registers its cells and materializes the
ingest assets for every partition in the persistent instance, so `make dev` then shows real runs.
"""

from __future__ import annotations

import time
from datetime import date

import click
from dagster import MultiPartitionKey, materialize

from flywheel_assets.ingest.imagery import msi_chips, vhr_chips
from flywheel_assets.ingest.labels import seed_labels
from flywheel_assets.masks.assets import sam_masks, training_data
from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_assets.resources import build_resources
from flywheel_cli.instance import get_instance
from flywheel_core.geo.s2 import cells_around
from flywheel_core.imagery.synthetic import generate_world
from flywheel_core.labels.ingest import import_label_file
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_core.settings import Settings

DEMO_DATES = "2024-05-01,2024-06-01,2024-07-01"
# The terminal gets one line per partition; every event still lands in the instance for the UI.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _dates(text: str) -> list[date]:
    try:
        days = [date.fromisoformat(d.strip()) for d in text.split(",") if d.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"dates must be YYYY-MM-DD, comma separated: {exc}") from exc
    off = [d for d in days if d.day != 1]
    if off:
        raise click.BadParameter(f"monthly partitions start on the 1st; got {off[0]}")
    return days


@click.command()
@click.option("--lon", default=11.58, show_default=True)
@click.option("--lat", default=48.14, show_default=True)
@click.option("--cells", "n_cells", default=4, show_default=True, help="Adjacent S2 cells.")
@click.option("--dates", default=DEMO_DATES, show_default=True, help="Partition dates.")
@click.option("--seed", default=0, show_default=True)
def demo(lon: float, lat: float, n_cells: int, dates: str, seed: int) -> None:
    """Generate the demo world, import its seeds and materialize every partition."""
    t0 = time.monotonic()
    settings = Settings.from_env()
    days = _dates(dates)
    cells = cells_around(lon, lat, settings.s2_level, n_cells)
    click.echo(f"1/4 world: {len(cells)} cells x {len(days)} dates -> {settings.world_dir}")
    manifest = generate_world(settings.world_dir, cells, days, seed=seed)
    seeds = settings.world_dir / "seed_labels.parquet"
    click.echo(f"2/4 labels: importing {seeds}")
    config = LakeConfig(catalog=settings.lake_catalog, data_path=settings.lake_data_path)
    with lake_connection(config) as con:
        _, result = import_label_file(
            con,
            seeds,
            source="synthetic-seed",
            s2_level=settings.s2_level,
            h3_resolution=settings.h3_resolution,
        )
    click.echo(f"    inserted {result.n_inserted}, already there {result.n_duplicate}")
    instance = get_instance()
    known = set(instance.get_dynamic_partitions(S2_CELLS_NAME))
    instance.add_dynamic_partitions(S2_CELLS_NAME, [c for c in cells if c not in known])
    click.echo(f"3/4 cells registered in {instance.root_directory}")
    resources = build_resources()
    failed = []
    for cell in cells:
        for day in days:
            key = MultiPartitionKey({"cell": cell, "date": day.isoformat()})
            click.echo(f"4/4 materializing {key}")
            res = materialize(
                [seed_labels, vhr_chips, msi_chips, sam_masks, training_data],
                partition_key=key,
                instance=instance,
                resources=resources,
                raise_on_error=False,
                run_config=QUIET_CONSOLE,
            )
            if not res.success:
                failed.append(str(key))
                continue
            summary = []
            for event in res.get_asset_materialization_events():
                mat = event.event_specific_data.materialization
                rows = mat.metadata.get("rows_in_partition")
                summary.append(
                    f"{mat.asset_key.to_user_string()}: {rows.value if rows else 0} rows"
                )
            click.echo("    " + ", ".join(summary))
    click.echo(f"\ndone in {time.monotonic() - t0:.0f} s; world: {manifest.out_dir}")
    click.echo("where to look next:")
    click.echo(
        "  make dev                    Dagster UI at http://127.0.0.1:3000 (runs, previews, checks)"
    )
    click.echo(f"  {settings.lancedb_uri:<27} LanceDB tables (one per asset)")
    click.echo("  flywheel eval masks         mask quality against the world's hidden truth")
    click.echo(f"  {settings.data_dir / 'previews'!s:<27} PNG previews per asset and partition")
    click.echo(f"  {settings.lake_catalog:<27} DuckLake catalog (labels, label_imports)")
    if failed:
        raise click.ClickException(f"{len(failed)} partition(s) failed: {', '.join(failed)}")
