from __future__ import annotations

from datetime import date

import pytest

from flywheel_core.geo.s2 import InvalidCellError
from flywheel_core.partitions import CellDate, PartitionKeyError, window_end, window_start


def test_key_round_trip():
    part = CellDate.parse("479e758c4|2024-06-01", 15)
    assert part.cell == "479e758c4" and part.date == date(2024, 6, 1)
    assert part.key == "479e758c4|2024-06-01"
    assert part.as_filter() == {"cell": "479e758c4", "date": "2024-06-01"}


@pytest.mark.parametrize("key", ["479e758c4", "2024-06-01|479e758c4", "479e758c4|June"])
def test_bad_keys(key):
    with pytest.raises((PartitionKeyError, InvalidCellError)):
        CellDate.parse(key, 15)


def test_windows():
    assert window_end(date(2024, 12, 1), "monthly") == date(2025, 1, 1)
    assert window_start(date(2024, 6, 17), "monthly") == date(2024, 6, 1)
    assert window_end(date(2024, 6, 2), "weekly") == date(2024, 6, 9)
    assert window_start(date(2024, 6, 5), "weekly") == date(2024, 6, 2)  # a Sunday
