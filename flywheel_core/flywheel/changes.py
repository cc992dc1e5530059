"""Which (cell, date) partitions new or changed labels touch, from DuckLake's change feed.

`label_changes(con, since, ...)` reads every `labels` row change in snapshots (since, current]
with `ducklake_table_changes(<catalog>, <schema>, 'labels', since + 1, current)` (both bounds
inclusive): inserts, both images of updates (a retraction or a moved geometry leaves its old
partitions as well as touching new ones) and deletes.

A changed label maps to:
- cells: its S2 covering (`s2_cells`) at the partitions' level (parents when the label was indexed
  finer; recomputed from `prompt_geometry` when it was indexed coarser);
- a date: `date_of(day)`, where day is the label's `install_date`, or the date of its
  `created_at` when it has none. `partition_date_of` builds the usual `date_of`.

If the change feed cannot be read (e.g. the snapshots were expired), the fallback compares the
table at `since` (DuckLake time travel, `AT (VERSION => since)`) with the current table; if that
fails too, every label counts as changed. `since_snapshot=None` (or a cursor beyond the lake's
latest snapshot, i.e. a recreated lake) means everything.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import shapely

from flywheel_core.geo.s2 import covering, parse_token
from flywheel_core.lake import changes as lake_changes
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.partitions import window_end, window_start

__all__ = ["ChangeSet", "label_changes", "labels_changed", "partition_date_of"]

log = logging.getLogger(__name__)

DateOf = Callable[[dt.date], str | None]


@dataclass(frozen=True)
class ChangeSet:
    snapshot_id: int  # the lake's latest snapshot: the next cursor
    # (cell, date key) -> latest snapshot id that touched it (fallbacks: snapshot_id)
    partitions: dict[tuple[str, str], int]
    n_changes: int  # changed rows read (an update counts twice: pre- and post-image)
    method: str  # "change_feed", "time_travel", "full_scan" or "none"


def last_complete_window(grain: str, today: dt.date | None = None) -> dt.date:
    """Start of the last window that has ended: Dagster's last time partition (end_offset=0)."""
    today = today or dt.datetime.now(dt.UTC).date()
    return window_start(window_start(today, grain) - dt.timedelta(days=1), grain)


def partition_date_of(
    start: dt.date,
    grain: str = "monthly",
    last: dt.date | None = None,
    *,
    first_visible: bool = True,
) -> DateOf:
    """Day -> the date partition key ('YYYY-MM-DD') a label of that day belongs to.

    With `first_visible` (the default), the first partition whose start is on or after the day:
    `seed_labels` of partition d reads labels with install_date <= d, so a label installed on
    2024-06-15 first appears in the 2024-07-01 partition (one installed on 2024-06-01 in the
    2024-06-01 one). Without it, the partition containing the day.
    Keys are clamped to [start, last]; `last` defaults to the last complete window (the newest
    partition Dagster has). Returns None when there is no partition at all (start > last).
    """
    first = window_start(start, grain)
    if first < start:
        first = window_end(first, grain)

    def date_of(day: dt.date) -> str | None:
        end = last if last is not None else last_complete_window(grain)
        key = window_start(day, grain)
        if first_visible and key < day:
            key = window_end(key, grain)
        key = min(max(key, first), end)
        return key.isoformat() if key >= first else None

    return date_of


def _cells(row: tuple[Any, ...], s2_level: int) -> list[str]:
    level, cells, _, _, prompt = row
    cells = [c for c in (cells or []) if c]
    if level == s2_level and cells:
        return cells
    if level is not None and level > s2_level and cells:
        return sorted({parse_token(c).parent(s2_level).to_token() for c in cells})
    if prompt is None:
        return []
    return covering(shapely.from_wkb(prompt), s2_level)


def _day(row: tuple[Any, ...]) -> dt.date:
    _, _, install_date, created_at, _ = row
    if install_date is not None:
        return install_date
    if created_at is not None:
        return created_at.date() if isinstance(created_at, dt.datetime) else created_at
    return dt.datetime.now(dt.UTC).date()


def _partitions(
    rows: Iterable[tuple[int, tuple[Any, ...]]], s2_level: int, date_of: DateOf
) -> tuple[dict[tuple[str, str], int], int]:
    out: dict[tuple[str, str], int] = {}
    n = 0
    for snapshot, row in rows:
        n += 1
        key = date_of(_day(row))
        if key is None:
            continue
        for cell in _cells(row, s2_level):
            part = (cell, key)
            out[part] = max(out.get(part, -1), int(snapshot))
    return out, n


def labels_changed(
    con: duckdb.DuckDBPyConnection,
    since_snapshot: int | None,
    s2_level: int,
    date_of: DateOf,
) -> ChangeSet:
    """The partitions touched by label changes after `since_snapshot`, with their snapshots."""
    current = current_snapshot_id(con)
    if since_snapshot is not None and since_snapshot > current:
        log.warning(
            "cursor snapshot %d is beyond the lake's latest snapshot %d (was the lake "
            "recreated?): treating every label as changed",
            since_snapshot,
            current,
        )
        since_snapshot = None
    if since_snapshot is not None and since_snapshot >= current:
        return ChangeSet(current, {}, 0, "none")
    start = 0 if since_snapshot is None else since_snapshot + 1
    try:
        rows = lake_changes.feed(con, start, current)
        parts, n = _partitions(((r[0], r[1:]) for r in rows), s2_level, date_of)
        return ChangeSet(current, parts, n, "change_feed")
    except duckdb.Error as exc:
        log.warning("DuckLake change feed unavailable (%s); falling back", exc)
    if since_snapshot is not None:
        try:
            rows = lake_changes.time_travel_diff(con, since_snapshot)
            parts, n = _partitions(((current, r) for r in rows), s2_level, date_of)
            return ChangeSet(current, parts, n, "time_travel")
        except duckdb.Error as exc:
            log.warning(
                "DuckLake time travel to %d failed (%s); scanning all labels", since_snapshot, exc
            )
    rows = lake_changes.all_label_rows(con)
    parts, n = _partitions(((current, r) for r in rows), s2_level, date_of)
    return ChangeSet(current, parts, n, "full_scan")


def label_changes(
    con: duckdb.DuckDBPyConnection,
    since_snapshot: int | None,
    s2_level: int,
    date_of: DateOf,
) -> tuple[int, set[tuple[str, str]]]:
    """(current snapshot id, {(cell, date key)}) of labels inserted/updated/deleted since."""
    changes = labels_changed(con, since_snapshot, s2_level, date_of)
    return changes.snapshot_id, set(changes.partitions)
