"""The (cell, date) partition key, independent of Dagster.

Dagster sorts multi-partition dimensions by name, so keys read `<cell>|<date>`; keeping the parsing
here lets the CLI, the assets and the stores agree on that spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from flywheel_core.geo.s2 import parse_token


class PartitionKeyError(ValueError):
    """A partition key that is not `<s2 token>|<YYYY-MM-DD>`."""


@dataclass(frozen=True, order=True)
class CellDate:
    cell: str
    date: date

    @property
    def key(self) -> str:
        return f"{self.cell}|{self.date.isoformat()}"

    def as_filter(self) -> dict[str, str]:
        """Column values that identify the partition's rows in every table."""
        return {"cell": self.cell, "date": self.date.isoformat()}

    @classmethod
    def parse(cls, key: str, level: int | None = None) -> CellDate:
        parts = str(key).split("|")
        if len(parts) != 2:
            raise PartitionKeyError(
                f"partition key {key!r} must read '<s2 cell token>|<YYYY-MM-DD>', "
                "e.g. '479e758c4|2024-06-01'"
            )
        cell, day = parts
        parse_token(cell, level)
        try:
            parsed = date.fromisoformat(day)
        except ValueError as exc:
            raise PartitionKeyError(
                f"partition key {key!r}: {day!r} is not a YYYY-MM-DD date"
            ) from exc
        return cls(cell, parsed)


def window_end(start: date, grain: str) -> date:
    """Exclusive end of the date window that starts at `start`."""
    if grain == "daily":
        return start + timedelta(days=1)
    if grain == "weekly":
        return start + timedelta(days=7)
    if grain == "monthly":
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    raise ValueError(f"unknown date grain {grain!r}")


def window_start(day: date, grain: str) -> date:
    """Start of the window containing `day` (weeks start on Sunday, as Dagster's do)."""
    if grain == "daily":
        return day
    if grain == "weekly":
        return day - timedelta(days=(day.weekday() + 1) % 7)
    if grain == "monthly":
        return day.replace(day=1)
    raise ValueError(f"unknown date grain {grain!r}")
