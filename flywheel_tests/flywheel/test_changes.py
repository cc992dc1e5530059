from __future__ import annotations

from datetime import date, datetime

import pytest

from flywheel_core.flywheel.changes import (
    label_changes,
    labels_changed,
    last_complete_window,
    partition_date_of,
)
from flywheel_core.geo.s2 import cell_from_lonlat, parent_token
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_tests.flywheel.conftest import S2_LEVEL, import_seeds
from flywheel_tests.flywheel.shapes import at, square

DATE_OF = partition_date_of(date(2024, 1, 1), "monthly", date(2025, 12, 1))
A = square(0, 0, 10)
B = square(2000, 0, 10)
CELL_A = cell_from_lonlat(*at(5, 5), S2_LEVEL)
CELL_B = cell_from_lonlat(*at(2005, 5), S2_LEVEL)


def test_partition_date_of():
    assert DATE_OF(date(2024, 6, 1)) == "2024-06-01"  # seed_labels of June sees it
    assert DATE_OF(date(2024, 6, 15)) == "2024-07-01"  # first visible in July
    assert DATE_OF(date(2019, 3, 3)) == "2024-01-01"  # clamped to the first partition
    assert DATE_OF(date(2030, 1, 1)) == "2025-12-01"  # and to the last
    containing = partition_date_of(
        date(2024, 1, 1), "monthly", date(2025, 12, 1), first_visible=False
    )
    assert containing(date(2024, 6, 15)) == "2024-06-01"
    assert partition_date_of(date(2024, 1, 1), last=date(2023, 1, 1))(date(2024, 5, 1)) is None
    assert last_complete_window("monthly", date(2026, 11, 25)) == date(2026, 10, 1)
    assert last_complete_window("daily", date(2026, 11, 25)) == date(2026, 11, 24)


def test_changes_since_a_snapshot(lake, tmp_path):
    with lake_connection(lake) as con:
        start = current_snapshot_id(con)
        assert label_changes(con, start, S2_LEVEL, DATE_OF) == (start, set())
        first = import_seeds(con, tmp_path, [A, B], [date(2024, 3, 1), date(2024, 5, 10)], "one")
        snap, parts = label_changes(con, None, S2_LEVEL, DATE_OF)
        assert snap == first.snapshot_id
        assert parts == {(CELL_A, "2024-03-01"), (CELL_B, "2024-06-01")}
        assert label_changes(con, start, S2_LEVEL, DATE_OF)[1] == parts
        assert label_changes(con, snap, S2_LEVEL, DATE_OF) == (snap, set())
        # Later inserts: only theirs. A label without install date takes its created_at date.
        import_seeds(con, tmp_path, [square(3, 3, 8)], [None], "two")
        snap2, parts2 = label_changes(con, snap, S2_LEVEL, DATE_OF)
        created = con.execute("SELECT max(created_at) FROM labels").fetchone()[0]
        assert isinstance(created, datetime)
        assert parts2 == {(CELL_A, DATE_OF(created.date()))}
        # A retraction is a change too (both images map to the label's partitions).
        con.execute(
            "UPDATE labels SET status = 'retracted' WHERE source = 'one' "
            "AND install_date = DATE '2024-05-10'"
        )
        changes = labels_changed(con, snap2, S2_LEVEL, DATE_OF)
        assert set(changes.partitions) == {(CELL_B, "2024-06-01")}
        assert changes.method == "change_feed" and changes.n_changes == 2
        assert changes.partitions[(CELL_B, "2024-06-01")] == changes.snapshot_id
        # Coarser partitions than the labels' index: parents of the covering.
        coarse = label_changes(con, start, S2_LEVEL - 2, DATE_OF)[1]
        assert (parent_token(CELL_A, S2_LEVEL - 2), "2024-03-01") in coarse
        # A cursor beyond the lake (a recreated lake) means everything.
        assert (
            label_changes(con, 10_000, S2_LEVEL, DATE_OF)[1]
            == label_changes(con, None, S2_LEVEL, DATE_OF)[1]
        )


class _NoChangeFeed:
    """A connection whose DuckLake change feed (and, optionally, time travel) fails."""

    def __init__(self, con, time_travel: bool = True):
        self._con, self._tt = con, time_travel

    def execute(self, sql, *args):
        import duckdb

        if "ducklake_table_changes" in sql or (not self._tt and "AT (VERSION" in sql):
            raise duckdb.CatalogException("simulated: not available")
        return self._con.execute(sql, *args)


@pytest.mark.parametrize(("time_travel", "method"), [(True, "time_travel"), (False, "full_scan")])
def test_fallbacks(lake, tmp_path, time_travel, method):
    with lake_connection(lake) as con:
        first = import_seeds(con, tmp_path, [A], [date(2024, 3, 1)], "one")
        import_seeds(con, tmp_path, [B], [date(2024, 5, 10)], "two")
        expected = labels_changed(con, first.snapshot_id, S2_LEVEL, DATE_OF)
        got = labels_changed(_NoChangeFeed(con, time_travel), first.snapshot_id, S2_LEVEL, DATE_OF)
        assert got.method == method
        if time_travel:
            assert got.partitions == expected.partitions
        else:  # everything, a superset
            assert set(got.partitions) == {(CELL_A, "2024-03-01"), (CELL_B, "2024-06-01")}
