"""The `cell × date` partitions every flywheel asset shares.

Cells are dynamic (S2 tokens registered by `flywheel cells add` or the label sensor), dates a
time-window dimension whose grain and start are settings. Dagster orders dimensions by name, so
keys read `<cell>|<date>`.

`check_partition_key` is what every entry point runs before handing a key to Dagster: Dagster's
own answer to an unregistered cell or an out-of-range date is a long traceback ending in a
generic DagsterInvalidSubsetError, this one is a `PartitionKeyError` saying which part is wrong
and how to fix it (the `flywheel cells add` command, the valid date range).
"""

from __future__ import annotations

import warnings
from datetime import date
from typing import TYPE_CHECKING

from dagster import (
    BetaWarning,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MonthlyPartitionsDefinition,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    TimeWindowPartitionsDefinition,
    WeeklyPartitionsDefinition,
)

from flywheel_core.geo.s2 import InvalidCellError, parse_token
from flywheel_core.partitions import CellDate, PartitionKeyError, date_key_problem, split_key
from flywheel_core.settings import Settings

if TYPE_CHECKING:
    from dagster import DagsterInstance

S2_CELLS_NAME = "s2_cells"

s2_cells = DynamicPartitionsDefinition(name=S2_CELLS_NAME)


def by_date() -> MultiToSingleDimensionPartitionMapping:
    """`cell × date` partitions to their `date` (a date-partitioned asset reads every cell of it).

    Dagster marks this mapping beta and warns at each construction: at every load of the code
    location and again in each run's step process, three times per run. The project pins its
    Dagster version and `flywheel_tests/test_definitions.py` checks that both date-partitioned
    dependencies use this mapping, so the warning is silenced here, for its construction only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        return MultiToSingleDimensionPartitionMapping("date")


def date_partitions(settings: Settings) -> TimeWindowPartitionsDefinition:
    """The date dimension: `date_grain` windows from `start_date` to `end_date` (exclusive; open
    when None, up to the last window that has ended)."""
    start = settings.start_date.isoformat()
    end = settings.end_date.isoformat() if settings.end_date else None
    if settings.date_grain == "daily":
        return DailyPartitionsDefinition(start_date=start, end_date=end)
    if settings.date_grain == "weekly":
        return WeeklyPartitionsDefinition(start_date=start, end_date=end, fmt="%Y-%m-%d")
    return MonthlyPartitionsDefinition(start_date=start, end_date=end, fmt="%Y-%m-%d")


def cell_date_partitions(settings: Settings) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition({"cell": s2_cells, "date": date_partitions(settings)})


SETTINGS = Settings.from_env()
cell_date = cell_date_partitions(SETTINGS)


def _cell_problem(instance: DagsterInstance, cell: str, level: int) -> str | None:
    try:
        parse_token(cell, level)
    except InvalidCellError as exc:
        return f"cell {cell!r}: {exc}"
    if instance.has_dynamic_partition(S2_CELLS_NAME, cell):
        return None
    return f"cell {cell} is not registered; register it with `flywheel cells add --token {cell}`"


def check_date_key(text: str, settings: Settings = SETTINGS) -> date:
    """The date of an existing date partition; a PartitionKeyError naming the valid range."""
    keys = date_partitions(settings).get_partition_keys()
    problem = date_key_problem(text, keys, settings.date_grain, settings.end_date)
    if problem:
        raise PartitionKeyError(f"partition date {text!r}: {problem}")
    return date.fromisoformat(text)


def check_partition_key(
    instance: DagsterInstance, key: str, settings: Settings = SETTINGS
) -> CellDate:
    """The key's (cell, date) when both parts exist; else a PartitionKeyError saying what to fix.

    Both parts are checked, so a key wrong in two ways says so at once.
    """
    cell, day = split_key(key)
    keys = date_partitions(settings).get_partition_keys()
    problems = [
        p
        for p in (
            _cell_problem(instance, cell, settings.s2_level),
            date_key_problem(day, keys, settings.date_grain, settings.end_date),
        )
        if p
    ]
    if problems:
        raise PartitionKeyError(f"partition key {key!r}: " + "; ".join(problems))
    return CellDate(cell, date.fromisoformat(day))
