"""Object store, model registry and prediction storage: the loop's bookkeeping."""

from __future__ import annotations

from datetime import date

import geopandas as gpd
import pytest
from shapely import wkb
from shapely.geometry import Point, box

from flywheel_core.flywheel.truth_eval import label_truth
from flywheel_core.geo.s2 import cell_from_lonlat, cell_polygon
from flywheel_core.lake.connection import LakeConfig, lake_connection
from flywheel_core.lake.models import get_model, latest_model, previous_model, register_model
from flywheel_core.lake.predictions import prediction_row, predictions_for, replace_predictions
from flywheel_core.train.checkpoints import cached_checkpoint, warm_start_parent
from flywheel_resources.object_store import ObjectStoreResource


@pytest.fixture
def lake(tmp_path):
    config = LakeConfig(
        catalog=f"duckdb:{tmp_path / 'c.ducklake'}", data_path=str(tmp_path / "files")
    )
    with lake_connection(config) as con:
        yield con


def test_local_object_store_round_trip(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"checkpoint")
    store = ObjectStoreResource(root=str(tmp_path / "objects")).store()
    uri = store.put(src, "models/m1/model.ckpt")
    assert uri.endswith("models/m1/model.ckpt") and store.exists("models/m1/model.ckpt")
    assert store.get("models/m1/model.ckpt", tmp_path / "b.bin").read_bytes() == b"checkpoint"
    assert not store.exists("models/none")


def test_s3_object_store_through_dagster_aws(tmp_path, s3_server, s3_env):
    src = tmp_path / "a.bin"
    src.write_bytes(b"weights")
    store = ObjectStoreResource(root=s3_env + "objects").store()
    uri = store.put(src, "models/m1/model.ckpt")
    assert uri.startswith(f"s3://{s3_server.bucket}/")
    assert any(k.endswith("models/m1/model.ckpt") for k in s3_server.keys(""))
    assert store.exists("models/m1/model.ckpt") and not store.exists("models/m2/model.ckpt")
    assert store.get("models/m1/model.ckpt", tmp_path / "b.bin").read_bytes() == b"weights"


def test_model_registry_replaces_same_id_and_finds_latest(lake):
    row = {
        "model_id": "pv-seg-2024-06-01-abc",
        "name": "pv-seg-2024-06-01",
        "round": 2,
        "params": {"lance_versions": {"training_data": 7}},
        "metrics": {"test/iou": 0.9},
        "status": "ready",
        "training_snapshot_id": 12,
    }
    register_model(lake, row)
    register_model(lake, {**row, "metrics": {"test/iou": 0.91}})
    assert lake.execute("SELECT count(*) FROM models").fetchone()[0] == 1
    got = latest_model(lake, "pv-seg-2024-06-01")
    assert (
        got["params"]["lance_versions"]["training_data"] == 7 and got["metrics"]["test/iou"] == 0.91
    )
    assert get_model(lake, "nope") is None and latest_model(lake, "pv-seg-2030-01-01") is None


def _round_model(day: str, config: dict, status: str = "ready") -> dict:
    return {
        "model_id": f"pv-seg-{day}-x",
        "name": f"pv-seg-{day}",
        "round": 1,
        "params": {"config": config},
        "metrics": {},
        "status": status,
    }


def test_a_round_fine_tunes_the_latest_earlier_model_of_the_same_shape(lake, tmp_path):
    net = {"arch": "Unet", "encoder_name": "resnet18", "encoder_depth": 3,
           "decoder_channels": [64, 32, 16], "bands": "vhr"}  # fmt: skip
    assert previous_model(lake, "2024-06-01") is None
    assert warm_start_parent(None, net)[0] is None
    register_model(lake, _round_model("2024-05-01", net))
    register_model(lake, _round_model("2024-06-01", net))
    register_model(lake, _round_model("2024-06-15", net, status="failed"))
    register_model(lake, _round_model("2024-07-01", net))  # later: never a parent
    prev = previous_model(lake, "2024-07-01")
    assert prev["model_id"] == "pv-seg-2024-06-01-x"
    assert previous_model(lake, "2024-06-01")["model_id"] == "pv-seg-2024-05-01-x"
    assert warm_start_parent(prev, {**net, "decoder_channels": (64, 32, 16)}) == (
        "pv-seg-2024-06-01-x",
        "fine-tuning pv-seg-2024-06-01-x (the previous round's model)",
    )
    parent, why = warm_start_parent(prev, {**net, "bands": "vhr+msi"})
    assert parent is None and "bands='vhr'" in why and "fresh network" in why
    # the checkpoint is fetched from the store once, then read from the cache
    store = ObjectStoreResource(root=str(tmp_path / "objects")).store()
    src = tmp_path / "w.ckpt"
    src.write_bytes(b"weights")
    store.put(src, "models/pv-seg-2024-06-01-x/model.ckpt")
    got = cached_checkpoint(store, "pv-seg-2024-06-01-x", tmp_path / "cache")
    assert got == tmp_path / "cache" / "pv-seg-2024-06-01-x" / "model.ckpt"
    (tmp_path / "objects" / "models" / "pv-seg-2024-06-01-x" / "model.ckpt").unlink()
    assert cached_checkpoint(store, "pv-seg-2024-06-01-x", tmp_path / "cache").read_bytes() == (
        b"weights"
    )


def test_predictions_are_replaced_per_model_cell_date(lake):
    day = date(2024, 6, 1)
    geom = wkb.dumps(box(11.58, 48.14, 11.5801, 48.1401))
    rows = [
        prediction_row(
            geom,
            model_id="m",
            round_no=1,
            cell="c",
            day=day,
            score=0.9,
            area_m2=80.0,
            h3_resolution=11,
            metrics={"msi_pvi": -0.5},
        )
    ]
    replace_predictions(lake, "m", "c", day, rows)
    replace_predictions(lake, "m", "c", day, rows)
    other = [{**rows[0], "s2_cell": "other"}]
    replace_predictions(lake, "m", "other", day, other)
    with pytest.raises(ValueError, match="another"):
        replace_predictions(lake, "m", "c", day, other)
    got = predictions_for(lake, "m", "c", day)
    assert len(got) == 1 and got[0]["prediction_id"] == rows[0]["prediction_id"]
    replace_predictions(lake, "m", "c", day, [])
    assert (
        predictions_for(lake, "m", "c", day) == []
        and len(predictions_for(lake, "m", "other", day)) == 1
    )


def test_label_truth_counts_one_to_one():
    cell = cell_from_lonlat(11.58, 48.14, 15)
    c = cell_polygon(cell).centroid
    d = 0.00005
    t1 = box(c.x, c.y, c.x + d, c.y + d)
    t2 = box(c.x + 4 * d, c.y, c.x + 5 * d, c.y + d)
    truth = gpd.GeoDataFrame(
        {"install_date": [date(2023, 1, 1), date(2025, 1, 1)]}, geometry=[t1, t2], crs=4326
    )
    labels = [
        {"geometry": wkb.dumps(t1)},  # matches t1
        {"geometry": wkb.dumps(Point(c.x + d / 2, c.y + d / 2))},  # a second label on t1: unmatched
        {"geometry": wkb.dumps(box(c.x + 8 * d, c.y, c.x + 9 * d, c.y + d))},  # nothing there
    ]
    early = label_truth(labels, truth, [cell], date(2024, 1, 1))
    assert (early.installations, early.labels, early.matched) == (1, 3, 1)
    assert early.recall == 1.0 and early.precision == pytest.approx(1 / 3)
    late = label_truth([*labels, {"geometry": wkb.dumps(t2)}], truth, [cell], date(2025, 6, 1))
    assert late.installations == 2 and late.recall == 1.0 and late.precision == 0.5
