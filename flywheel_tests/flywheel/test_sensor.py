from __future__ import annotations

from datetime import date

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    MultiPartitionKey,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from flywheel_assets.partitions import S2_CELLS_NAME, SETTINGS
from flywheel_assets.sensors import LABEL_SENSOR_TARGET, label_snapshot_sensor
from flywheel_core.flywheel.changes import partition_date_of
from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.lake.connection import lake_connection
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_tests.flywheel.conftest import import_seeds
from flywheel_tests.flywheel.shapes import at, square

LEVEL = SETTINGS.s2_level


def _cell(east_m: float) -> str:
    return cell_from_lonlat(*at(east_m + 5, 5), LEVEL)


def _key(day: date) -> str:
    return partition_date_of(SETTINGS.start_date, SETTINGS.date_grain)(day)


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def resource(lake):
    return DuckLakeResource(catalog=lake.catalog, data_path=lake.data_path)


def _tick(instance, resource, cursor):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"ducklake": resource}
    )
    return label_snapshot_sensor(context)


def _requests(result: SensorResult) -> dict[str, str]:
    return {r.run_key: r.partition_key for r in result.run_requests}


def _apply_new_cells(instance, result: SensorResult) -> list[str]:
    """What the sensor daemon does with the tick's dynamic-partition requests."""
    cells = []
    for req in result.dynamic_partitions_requests:
        assert req.partitions_def_name == S2_CELLS_NAME
        instance.add_dynamic_partitions(S2_CELLS_NAME, list(req.partition_keys))
        cells += list(req.partition_keys)
    return sorted(cells)


def test_sensor_ticks(lake, resource, instance, tmp_path):
    with lake_connection(lake) as con:
        r1 = import_seeds(
            con,
            tmp_path,
            [square(0, 0, 10), square(2000, 0, 10)],
            [date(2024, 3, 1), date(2024, 5, 10)],
            "one",
        )

    # First tick from nothing: both partitions, both cells new.
    first = _tick(instance, resource, None)
    assert isinstance(first, SensorResult)
    assert first.cursor == str(r1.snapshot_id)
    wanted = {(_cell(0), _key(date(2024, 3, 1))), (_cell(2000), _key(date(2024, 5, 10)))}
    assert _key(date(2024, 5, 10)) == "2024-06-01"  # first partition whose seed_labels see it
    assert {
        (k.keys_by_dimension["cell"], k.keys_by_dimension["date"])
        for k in _requests(first).values()
    } == wanted
    for run_key, pk in _requests(first).items():
        assert isinstance(pk, MultiPartitionKey)
        assert run_key == f"labels@{r1.snapshot_id}:{pk}"
    assert _apply_new_cells(instance, first) == sorted({_cell(0), _cell(2000)})

    # The same tick again (same cursor): the same run keys, so Dagster launches nothing twice.
    again = _tick(instance, resource, None)
    assert _requests(again) == _requests(first)
    assert again.dynamic_partitions_requests == []  # the cells are known now

    # Next tick from the returned cursor: nothing new.
    quiet = _tick(instance, resource, first.cursor)
    assert quiet.run_requests == [] and quiet.cursor == first.cursor
    assert quiet.skip_reason is not None

    # More labels (one in a known cell, one in a new cell), then a restart from the stored cursor.
    stored = quiet.cursor
    with lake_connection(lake) as con:
        r2 = import_seeds(
            con,
            tmp_path,
            [square(3, 3, 8), square(4000, 0, 10)],
            [date(2024, 3, 20), date(2024, 8, 1)],
            "two",
        )
        # An unrelated write after it must not change the run keys of a repeated tick.
        con.execute("INSERT INTO backfill_log (log_id) VALUES ('unrelated')")
    third = _tick(instance, resource, stored)
    assert {
        (pk.keys_by_dimension["cell"], pk.keys_by_dimension["date"])
        for pk in _requests(third).values()
    } == {
        (_cell(0), "2024-04-01"),
        (_cell(4000), "2024-08-01"),
    }
    assert all(k.startswith(f"labels@{r2.snapshot_id}:") for k in _requests(third))
    assert not set(_requests(third)) & set(_requests(first))  # nothing repeated
    assert _apply_new_cells(instance, third) == [_cell(4000)]
    assert int(third.cursor) > r2.snapshot_id  # the unrelated snapshot is seen, too
    repeat = _tick(instance, resource, stored)
    assert _requests(repeat) == _requests(third)
    # Every change so far, seen in one tick from nothing, is the union of the ticks' partitions.
    union = {str(pk) for pk in _requests(first).values()} | {
        str(pk) for pk in _requests(third).values()
    }
    assert {str(pk) for pk in _requests(_tick(instance, resource, None)).values()} == union


def test_sensor_skips_when_the_lake_is_locked(lake, resource, instance, monkeypatch):
    import flywheel_assets.sensors as sensors

    with lake_connection(lake):
        monkeypatch.setattr(sensors, "LAKE_LOCK_TIMEOUT_S", 0.0)
        result = _tick(instance, resource, "7")
    assert isinstance(result, SkipReason) and "lake unavailable" in (result.skip_message or "")


def test_sensor_target_resolves_in_definitions():
    # The minimal location around seed_labels (the full one is assembled by definitions.py).
    from dagster import load_assets_from_modules

    from flywheel_assets.ingest import imagery, labels
    from flywheel_assets.masks import assets as masks
    from flywheel_assets.resources import build_resources

    defs = Definitions(
        assets=load_assets_from_modules([labels, imagery, masks]),
        sensors=[label_snapshot_sensor],
        resources=build_resources(),
    )
    Definitions.validate_loadable(defs)
    assert label_snapshot_sensor.minimum_interval_seconds == 60
    selected = LABEL_SENSOR_TARGET.resolve(defs.resolve_asset_graph())
    assert {AssetKey("seed_labels"), AssetKey("sam_masks")} <= selected
    assert AssetKey("vhr_chips") not in selected  # upstream of nothing the labels change
