"""The `cell × date` partitions every flywheel asset shares.

Cells are dynamic (S2 tokens registered by `flywheel cells add` or the label sensor), dates a
time-window dimension whose grain and start are settings. Dagster orders dimensions by name, so
keys read `<cell>|<date>`.
"""

from __future__ import annotations

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MonthlyPartitionsDefinition,
    MultiPartitionsDefinition,
    TimeWindowPartitionsDefinition,
    WeeklyPartitionsDefinition,
)

from flywheel_core.settings import Settings

S2_CELLS_NAME = "s2_cells"

s2_cells = DynamicPartitionsDefinition(name=S2_CELLS_NAME)


def date_partitions(settings: Settings) -> TimeWindowPartitionsDefinition:
    start = settings.start_date.isoformat()
    if settings.date_grain == "daily":
        return DailyPartitionsDefinition(start_date=start)
    if settings.date_grain == "weekly":
        return WeeklyPartitionsDefinition(start_date=start, fmt="%Y-%m-%d")
    return MonthlyPartitionsDefinition(start_date=start, fmt="%Y-%m-%d")


def cell_date_partitions(settings: Settings) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition({"cell": s2_cells, "date": date_partitions(settings)})


SETTINGS = Settings.from_env()
cell_date = cell_date_partitions(SETTINGS)
