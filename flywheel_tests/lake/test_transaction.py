"""The one transaction helper (flywheel_core.lake.transaction), on a real DuckLake."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
import shapely

from flywheel_core.lake import migrations
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.lake.models import get_model, register_model
from flywheel_core.lake.predictions import prediction_row, predictions_for, replace_predictions
from flywheel_core.lake.transaction import rollback_quietly, transaction

DAY = date(2024, 6, 1)


def _model(model_id: str = "m1", status: str = "ready") -> dict:
    return {"model_id": model_id, "name": "pv-seg-2024-06-01", "round": 1, "status": status}


def _count(con, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_commit_makes_one_snapshot(lake):
    with lake_connection(lake) as con:
        before = current_snapshot_id(con)
        with transaction(con):
            con.execute("INSERT INTO models (model_id, name, status) VALUES ('a', 'n', 'ready')")
            con.execute("INSERT INTO models (model_id, name, status) VALUES ('b', 'n', 'ready')")
        assert _count(con, "models") == 2
        assert current_snapshot_id(con) == before + 1  # both rows, one snapshot


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_exception_leaves_the_table_unchanged(lake, error):
    with lake_connection(lake) as con:
        register_model(con, _model("keep"))
        before = current_snapshot_id(con)
        with pytest.raises(type(error)), transaction(con):
            con.execute("DELETE FROM models")
            con.execute("INSERT INTO models (model_id, name, status) VALUES ('x', 'n', 'ready')")
            assert _count(con, "models") == 1  # inside: the delete and insert are visible
            raise error
        assert [r[0] for r in con.execute("SELECT model_id FROM models").fetchall()] == ["keep"]
        assert current_snapshot_id(con) == before
        with transaction(con):  # the connection is usable: no transaction was left open
            con.execute("DELETE FROM models WHERE model_id = 'keep'")
        assert _count(con, "models") == 0


def test_a_failing_statement_rolls_back_and_reraises(lake):
    with lake_connection(lake) as con:
        register_model(con, _model("keep"))
        with pytest.raises(duckdb.Error), transaction(con):
            con.execute("DELETE FROM models")
            con.execute("INSERT INTO no_such_table VALUES (1)")
        assert get_model(con, "keep") is not None


def test_writers_roll_back_on_failure(lake, monkeypatch):
    """register_model and replace_predictions, now on the helper, leave the lake as it was when
    their insert fails after the delete."""
    with lake_connection(lake) as con:
        register_model(con, _model("m1", "ready"))
        with pytest.raises(duckdb.Error):
            register_model(con, {**_model("m1"), "round": "not a number"})
        assert get_model(con, "m1")["round"] == 1
        good = prediction_row(
            shapely.to_wkb(shapely.box(11.0, 48.0, 11.001, 48.001)),
            model_id="m1",
            round_no=1,
            cell="c",
            day=DAY,
            score=0.9,
            area_m2=80.0,
            h3_resolution=9,
            metrics={},
        )
        assert replace_predictions(con, "m1", "c", DAY, [good]) == 1
        with pytest.raises(duckdb.Error):
            replace_predictions(con, "m1", "c", DAY, [{**good, "round": "x"}])
        kept = predictions_for(con, "m1", "c", DAY)
        assert [p["prediction_id"] for p in kept] == [good["prediction_id"]]


def test_rollback_quietly_without_a_transaction_and_the_reexport(lake):
    with lake_connection(lake) as con:
        rollback_quietly(con)  # nothing open: no error
        assert _count(con, "models") == 0
    assert migrations.rollback_quietly is rollback_quietly
