"""`flywheel materialize --select ASSETS --partition KEY`: Dagster's materialize, key checked first.

Dagster meets an unregistered cell or an out-of-range date with a long traceback ending in a
generic DagsterInvalidSubsetError; this wrapper checks the key (`check_partition_key`) and the
asset names before it starts anything, so a wrong input is one line that says what to fix. The
run itself goes to the persistent instance, as `dagster asset materialize` would send it.
"""

from __future__ import annotations

from typing import Any

import click

from flywheel_core.errors import FlywheelError


class MaterializeError(FlywheelError, RuntimeError):
    """Unknown asset names, or a run that failed (the run id says where to look)."""


def _selected(assets: list[Any], select: tuple[str, ...]) -> list[Any]:
    names = [n.strip() for text in select for n in text.split(",") if n.strip()]
    by_name = {key.to_user_string(): a for a in assets for key in a.keys}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise MaterializeError(
            f"unknown asset(s) {', '.join(unknown)}; the assets are {', '.join(sorted(by_name))}"
        )
    if not names:
        raise click.UsageError("give --select ASSET[,ASSET...]")
    return [by_name[n] for n in dict.fromkeys(names)]


def _check_shape(selection: list[Any], key: str) -> None:
    """A `<cell>|<date>` key for the cell-date assets, a bare date for the date-only ones."""
    from dagster import MultiPartitionsDefinition

    multi = "|" in key
    wrong = [
        k.to_user_string()
        for a in selection
        for k in a.keys
        if isinstance(a.partitions_def, MultiPartitionsDefinition) != multi
    ]
    if wrong:
        want = "a bare date key, e.g. 2024-06-01" if multi else "a '<cell>|<date>' key"
        raise MaterializeError(
            f"{', '.join(wrong)} need(s) {want}; materialize assets of one partitioning at a time"
        )


def _partition_key(key: str) -> Any:
    """The checked key, as Dagster wants it: a MultiPartitionKey for `<cell>|<date>`."""
    from dagster import MultiPartitionKey

    from flywheel_assets.partitions import check_date_key, check_partition_key
    from flywheel_cli.instance import get_instance

    if "|" in key:
        part = check_partition_key(get_instance(), key)
        return MultiPartitionKey({"cell": part.cell, "date": part.date.isoformat()})
    return check_date_key(key).isoformat()


@click.command("materialize")
@click.option(
    "--select",
    "select",
    multiple=True,
    required=True,
    help="Asset name(s), comma separated or repeated, e.g. seed_labels,vhr_chips.",
)
@click.option(
    "--partition",
    "key",
    required=True,
    help="'<cell>|<date>' (e.g. '479e758c4|2024-06-01'), or '<date>' for model_checkpoint.",
)
def materialize(select: tuple[str, ...], key: str) -> None:
    """Materialize ASSETS for one partition after checking that the partition exists."""
    from dagster import AssetsDefinition
    from dagster import materialize as dagster_materialize

    partition_key = _partition_key(key)  # before loading the code location: fails fast
    from flywheel_assets.definitions import defs
    from flywheel_cli.instance import get_instance

    assets = [a for a in defs.assets or [] if isinstance(a, AssetsDefinition)]
    selection = _selected(assets, select)
    _check_shape(selection, key)
    result = dagster_materialize(
        assets,
        selection=selection,
        partition_key=partition_key,
        instance=get_instance(),
        resources=defs.resources,
        raise_on_error=False,
    )
    names = ", ".join(k.to_user_string() for a in selection for k in a.keys)
    if not result.success:
        raise MaterializeError(
            f"materializing {names} for {key} failed in run {result.run_id}: see its logs in "
            "the Dagster UI (make dev)"
        )
    click.echo(f"materialized {names} for {key} (run {result.run_id})")
