"""Bad partition keys say which part is wrong; `flywheel materialize` checks before it runs.

Without the check, Dagster meets an unregistered cell or a date outside the partitions with a
54-line traceback ending in DagsterInvalidSubsetError (the first test shows that is still what
Dagster itself does, so the check is what stands between the user and it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, MultiPartitionKey, materialize
from dagster._core.errors import DagsterInvalidSubsetError, DagsterUnknownPartitionError

from flywheel_assets.ingest.labels import seed_labels
from flywheel_assets.partitions import (
    S2_CELLS_NAME,
    SETTINGS,
    check_date_key,
    check_partition_key,
    date_partitions,
)
from flywheel_assets.resources import build_resources
from flywheel_cli.main import EXIT_ERROR, cli
from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.partitions import PartitionKeyError
from flywheel_core.settings import Settings

CELL = cell_from_lonlat(11.58, 48.14, 15)
OTHER = cell_from_lonlat(12.5, 47.5, 15)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLYWHEEL_DEBUG", raising=False)
    (tmp_path / "dagster_home").mkdir()
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(S2_CELLS_NAME, [CELL])
    return instance


def test_dagster_alone_gives_a_generic_error(home):
    """`dagster asset materialize` says DagsterInvalidSubsetError, `materialize()` this."""
    key = MultiPartitionKey({"cell": OTHER, "date": "2024-06-01"})
    with pytest.raises((DagsterInvalidSubsetError, DagsterUnknownPartitionError)):
        materialize([seed_labels], partition_key=key, instance=home, resources=build_resources())


def test_a_good_key_passes(home):
    part = check_partition_key(home, f"{CELL}|2024-06-01")
    assert (part.cell, part.date.isoformat()) == (CELL, "2024-06-01")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"{OTHER}|2024-06-01", f"register it with `flywheel cells add --token {OTHER}`"),
        (f"{CELL}|2023-06-01", "before the first partition (FLYWHEEL_START_DATE)"),
        (f"{CELL}|2099-01-01", "after the last complete partition"),
        (f"{CELL}|2024-06-15", "the monthly partition holding it is 2024-06-01"),
        (f"{CELL}|2024-6-1", "is not a YYYY-MM-DD date"),
        (f"{CELL}|tomorrow", "is not a YYYY-MM-DD date"),
        ("nonsense|2024-06-01", "not an S2 cell token"),
        (f"{CELL}", "must read '<s2 cell token>|<YYYY-MM-DD>'"),
    ],
)
def test_a_bad_key_says_which_part_is_wrong(home, key, expected):
    with pytest.raises(PartitionKeyError) as caught:
        check_partition_key(home, key)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    if "date" in expected or "partition" in expected:
        last = date_partitions(SETTINGS).get_last_partition_key()
        if "YYYY-MM-DD>'" not in expected and "holding" not in expected:
            assert f"valid monthly dates are {SETTINGS.start_date.isoformat()} .. {last}" in message


def test_both_parts_wrong_are_both_named(home):
    with pytest.raises(PartitionKeyError) as caught:
        check_partition_key(home, f"{OTHER}|2023-06-01")
    assert "is not registered" in str(caught.value)
    assert "before the first partition" in str(caught.value)


def test_the_current_month_is_not_yet_a_partition():
    """With the date dimension open (FLYWHEEL_END_DATE=none) it runs to the last ended window."""
    open_ended = Settings.from_env().with_(end_date=None)
    this_month = datetime.now(UTC).date().replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    assert check_date_key(last_month.isoformat(), open_ended) == last_month
    with pytest.raises(PartitionKeyError, match="after the last complete partition"):
        check_date_key(this_month.isoformat(), open_ended)


def test_the_date_dimension_ends_with_the_imagery(monkeypatch):
    monkeypatch.setenv("FLYWHEEL_START_DATE", "2024-05-01")
    monkeypatch.setenv("FLYWHEEL_END_DATE", "2024-08-01")
    settings = Settings.from_env()
    assert date_partitions(settings).get_partition_keys() == [
        "2024-05-01",
        "2024-06-01",
        "2024-07-01",
    ]
    with pytest.raises(PartitionKeyError, match="on or after FLYWHEEL_END_DATE"):
        check_date_key("2024-08-01", settings)
    monkeypatch.setenv("FLYWHEEL_END_DATE", "2024-04-01")
    with pytest.raises(ValueError, match="must be after FLYWHEEL_START_DATE"):
        Settings.from_env()
    monkeypatch.setenv("FLYWHEEL_END_DATE", "none")
    assert Settings.from_env().end_date is None


def test_partitions_check_cli(home):
    runner = CliRunner()
    good = runner.invoke(cli, ["partitions", "check", f"{CELL}|2024-06-01"])
    assert good.exit_code == 0, good.output
    assert "is registered" in good.output
    bad = runner.invoke(cli, ["partitions", "check", f"{OTHER}|2024-06-01"])
    assert bad.exit_code == EXIT_ERROR
    assert bad.output == (
        f"error: partition key '{OTHER}|2024-06-01': cell {OTHER} is not registered; "
        f"register it with `flywheel cells add --token {OTHER}`\n"
    )
    date_only = runner.invoke(cli, ["partitions", "check", "2023-12-01"])
    assert date_only.exit_code == EXIT_ERROR
    assert "before the first partition" in date_only.output


def test_materialize_refuses_a_bad_key_without_starting_a_run(home):
    result = CliRunner().invoke(
        cli, ["materialize", "--select", "seed_labels", "--partition", f"{OTHER}|2024-06-01"]
    )
    assert result.exit_code == EXIT_ERROR
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output
    assert f"flywheel cells add --token {OTHER}" in result.output
    assert home.get_runs() == []


def test_materialize_refuses_unknown_assets_and_mixed_key_shapes(home):
    runner = CliRunner()
    unknown = runner.invoke(
        cli, ["materialize", "--select", "nope", "--partition", f"{CELL}|2024-06-01"]
    )
    assert unknown.exit_code == EXIT_ERROR
    assert "unknown asset(s) nope; the assets are" in unknown.output
    shape = runner.invoke(
        cli, ["materialize", "--select", "model_checkpoint", "--partition", f"{CELL}|2024-06-01"]
    )
    assert shape.exit_code == EXIT_ERROR
    assert "model_checkpoint need(s) a bare date key" in shape.output
    assert home.get_runs() == []


def test_materialize_runs_a_good_key(home):
    result = CliRunner().invoke(
        cli, ["materialize", "--select", "seed_labels", "--partition", f"{CELL}|2024-06-01"]
    )
    assert result.exit_code == 0, result.output
    assert f"materialized seed_labels for {CELL}|2024-06-01" in result.output
    runs = home.get_runs()
    assert len(runs) == 1
    assert runs[0].status.value == "SUCCESS"
    assert runs[0].tags["dagster/partition"] == f"{CELL}|2024-06-01"


def test_rounds_refuse_a_date_before_the_start(home, tmp_path):
    result = CliRunner().invoke(cli, ["rounds", "--rounds", "1", "--dates", "2023-05-01"])
    assert result.exit_code == EXIT_ERROR
    assert result.output.startswith("error: partition date '2023-05-01': date 2023-05-01 is before")
    assert not (tmp_path / "data" / "world").exists()  # refused before the world was generated
