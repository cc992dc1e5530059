"""`flywheel partitions check KEY`: is this a partition Dagster can run, and if not, why not."""

from __future__ import annotations

import click


@click.group()
def partitions() -> None:
    """Partition keys: `<cell>|<date>` for the cell-date assets, `<date>` for model_checkpoint."""


@partitions.command("check")
@click.argument("key")
def check(key: str) -> None:
    """Say whether KEY names an existing partition; which part is wrong and how to fix it if not.

    Exit status 0 when it does, 1 (with one `error:` line) when it does not.
    """
    from flywheel_assets.partitions import check_date_key, check_partition_key
    from flywheel_cli.instance import get_instance

    if "|" in key:
        part = check_partition_key(get_instance(), key)
        click.echo(f"{part.key}: cell {part.cell} is registered, date {part.date} is a partition")
    else:
        day = check_date_key(key)
        click.echo(f"{day.isoformat()}: a date partition (for the date-partitioned assets)")
