"""The (cell, date) partition key, independent of Dagster.

Dagster sorts multi-partition dimensions by name, so keys read `<cell>|<date>`; keeping the parsing
here lets the CLI, the assets and the stores agree on that spelling.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from flywheel_core.errors import FlywheelError
from flywheel_core.geo.s2 import parse_token


class PartitionKeyError(FlywheelError, ValueError):
    """A partition key that is not `<s2 token>|<YYYY-MM-DD>`, or names no existing partition."""


def split_key(key: str) -> tuple[str, str]:
    """The (cell, date) strings of a key, unchecked; a PartitionKeyError when it has no `|`."""
    parts = str(key).split("|")
    if len(parts) != 2:
        raise PartitionKeyError(
            f"partition key {key!r} must read '<s2 cell token>|<YYYY-MM-DD>', "
            "e.g. '479e758c4|2024-06-01'"
        )
    return parts[0], parts[1]


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
        cell, day = split_key(key)
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


def date_key_problem(
    text: str, keys: Sequence[str], grain: str, end: date | None = None
) -> str | None:
    """What is wrong with `text` as a date partition key, given the sorted existing `keys`.

    None when it is one of them. Otherwise one sentence that says which way it is off and the
    valid range, so a user can fix the key without reading Dagster's partition definition.
    """
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if not keys:
        return f"no {grain} date partitions exist yet (FLYWHEEL_START_DATE is in the future?)"
    valid = f"valid {grain} dates are {keys[0]} .. {keys[-1]}"
    if day is None or day.isoformat() != text:
        return f"date {text!r} is not a YYYY-MM-DD date; {valid}"
    if text in keys:
        return None
    if text < keys[0]:
        return f"date {text} is before the first partition (FLYWHEEL_START_DATE); {valid}"
    if text > keys[-1] and end is not None and day >= end:
        return f"date {text} is on or after FLYWHEEL_END_DATE ({end}); {valid}"
    if text > keys[-1]:
        window = window_start(day, grain)
        ends = window_end(window, grain)
        return (
            f"date {text} is after the last complete partition (the window starting {window} "
            f"ends {ends}, a partition exists once its window is over); {valid}"
        )
    below = keys[bisect.bisect_right(list(keys), text) - 1]
    return f"date {text} is not a partition key: the {grain} partition holding it is {below}"


def check_world_date(
    day: date, start: date, grain: str, today: date, end: date | None = None
) -> str | None:
    """Why a world date can never be a materialized partition (before the start, or on or after
    the end), or None.

    A date in a window that has not ended yet is fine for a world: it becomes a partition later.
    """
    if window_start(day, grain) < start:
        return (
            f"{day} is before FLYWHEEL_START_DATE ({start}): no {grain} partition holds it, so "
            "its scenes can never be materialized"
        )
    if end is not None and day >= end:
        return (
            f"{day} is on or after FLYWHEEL_END_DATE ({end}): no {grain} partition holds it, so "
            "its scenes can never be materialized"
        )
    if day > today:
        return f"{day} is in the future: its partition exists once its {grain} window is over"
    return None
