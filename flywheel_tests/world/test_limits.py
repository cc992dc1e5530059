"""A world above the documented size is refused at once; a date no partition can hold is warned."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from click.testing import CliRunner

from flywheel_cli.main import EXIT_ERROR, cli
from flywheel_core.geo.s2 import cells_around
from flywheel_core.world.limits import (
    MAX_WORLD_CELLS,
    MAX_WORLD_DATES,
    WorldTooLargeError,
    check_world_size,
)
from flywheel_core.world.synthetic import generate_world
from flywheel_tests.fixtures.world import TINY_CELL


def test_a_million_cells_is_refused_in_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_DEBUG", raising=False)
    started = time.monotonic()
    result = CliRunner().invoke(
        cli, ["world", "generate", "--cells", "1000000", "--out", str(tmp_path / "w")]
    )
    assert result.exit_code == EXIT_ERROR, result.output
    assert time.monotonic() - started < 10
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: 1000000 cells is more than")
    assert str(MAX_WORLD_CELLS) in result.output
    assert not (tmp_path / "w").exists()  # nothing was laid out or written


def test_the_limits_themselves():
    check_world_size(MAX_WORLD_CELLS, MAX_WORLD_DATES)
    with pytest.raises(WorldTooLargeError, match="at most 400"):
        check_world_size(MAX_WORLD_CELLS + 1)
    with pytest.raises(WorldTooLargeError, match="dates"):
        check_world_size(1, MAX_WORLD_DATES + 1)


def test_generate_world_refuses_too_many_cells_too(tmp_path):
    cells = cells_around(11.58, 48.14, 15, MAX_WORLD_CELLS + 1)
    assert len(set(cells)) == MAX_WORLD_CELLS + 1
    started = time.monotonic()
    with pytest.raises(WorldTooLargeError):
        generate_world(tmp_path / "w", cells, [date(2024, 6, 1)])
    assert time.monotonic() - started < 5
    many_days = [date(2024, 1, 1) + timedelta(days=i) for i in range(MAX_WORLD_DATES + 1)]
    with pytest.raises(WorldTooLargeError):
        generate_world(tmp_path / "w", [TINY_CELL], many_days)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("setting", "value", "day", "why"),
    [
        ("FLYWHEEL_START_DATE", "2024-01-01", "2023-06-01", "is before FLYWHEEL_START_DATE"),
        ("FLYWHEEL_END_DATE", "2024-08-01", "2024-09-01", "is on or after FLYWHEEL_END_DATE"),
    ],
)
def test_a_date_outside_the_partitions_is_warned_at_generate(
    tmp_path, monkeypatch, setting, value, day, why
):
    monkeypatch.setenv(setting, value)
    out = tmp_path / "w"
    result = CliRunner().invoke(
        cli, ["world", "generate", "--cell", TINY_CELL, "--dates", day, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {day} {why} ({value}): no monthly partition holds it, so its scenes can "
        "never be materialized"
    ]
    assert (out / "world.json").exists()  # a warning, not a refusal: the world is still made


def test_dates_inside_the_partitions_are_not_warned(tmp_path):
    out = tmp_path / "w"
    result = CliRunner().invoke(
        cli,
        ["world", "generate", "--cell", TINY_CELL, "--dates", "2024-06-01", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.output
