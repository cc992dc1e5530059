"""The loop through real Dagster runs on the tiny world: train, predict, validate, backfill."""

import json
from pathlib import Path

import pytest
import rasterio
from dagster import MultiPartitionKey, materialize

from flywheel_assets.ingest.imagery import msi_chips, vhr_chips
from flywheel_assets.ingest.labels import seed_labels
from flywheel_assets.loop.backfill import validated_backfill
from flywheel_assets.loop.model import model_checkpoint
from flywheel_assets.loop.predictions import predictions
from flywheel_assets.masks.assets import sam_masks, training_data
from flywheel_core.infer.msi_channels import MSI_CHANNELS
from flywheel_core.lake.connection import LakeConfig, lake_connection
from flywheel_core.lake.models import get_model, latest_model, register_model, registry_name
from flywheel_core.train.checkpoints import checkpoint_key
from flywheel_core.train.trainer import TrainConfig, train_model
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

LATE = TINY_DATES[1].isoformat()
KEY = MultiPartitionKey({"cell": TINY_CELL, "date": LATE})
ALL = [
    seed_labels,
    vhr_chips,
    msi_chips,
    sam_masks,
    training_data,
    model_checkpoint,
    predictions,
    validated_backfill,
]
INGEST = [seed_labels, vhr_chips, msi_chips, sam_masks, training_data]
# A default-length round (TrainConfig's steps, ~30 s on 2 cores): 40 steps of 4 chips leave the
# tiny world's model without a single detection.
ROUND = {"steps": 150, "batch_size": 8}
FAST = {"ops": {"model_checkpoint": {"config": ROUND}}}
MSI = {"ops": {"model_checkpoint": {"config": {**ROUND, "bands": "vhr+msi"}}}}

pytestmark = pytest.mark.slow


def _lake(env) -> LakeConfig:
    res = env["resources"]["ducklake"]
    return LakeConfig(catalog=res.catalog, data_path=res.data_path)


@pytest.fixture(scope="module")
def chain(env):
    r = env["resources"]
    inst = env["instance"]
    materialize(ALL, selection=INGEST, partition_key=KEY, instance=inst, resources=r)
    return _train_and_loop(env, FAST)


def _train_and_loop(env, run_config):
    """model_checkpoint for LATE with `run_config`, then predictions and backfill for KEY."""
    r, inst = env["resources"], env["instance"]
    trained = materialize(
        ALL,
        selection=[model_checkpoint],
        partition_key=LATE,
        instance=inst,
        resources=r,
        run_config=run_config,
    )
    loop = materialize(
        ALL,
        selection=[predictions, validated_backfill],
        partition_key=KEY,
        instance=inst,
        resources=r,
    )
    return trained, loop


def test_model_is_registered_with_what_it_read(env, chain):
    trained, _ = chain
    with lake_connection(_lake(env)) as con:
        model = latest_model(con, registry_name(LATE))
    assert model is not None and model["round"] == 1 and model["status"] == "ready"
    params = model["params"]
    assert params["lance_versions"]["training_data"] >= 1
    assert params["ducklake_snapshot_id"] == model["training_snapshot_id"] > 0
    assert params["wandb_run_id"] and Path(params["wandb_dir"]).exists()
    assert Path(model["checkpoint_uri"]).exists()
    mat = trained.asset_materializations_for_node("model_checkpoint")[0]
    assert mat.metadata["model_id"].value == model["model_id"]
    # The round's acceptance bounds were calibrated on its own data and stored with the model.
    thresholds = params["calibration"]["thresholds"]
    assert set(thresholds) == {"min_score", "min_area_m2", "min_vhr_pv_score", "max_water_pvi"}
    assert all(t["method"] for t in thresholds.values())
    assert params["calibration"]["lance_version"] == params["lance_versions"]["training_data"]
    assert mat.metadata["calibration"].value["digest"]
    assert Path(mat.metadata["preview_path"].value).is_file()  # the learning curve
    assert params["encoder_init"].startswith("random")  # offline: no imagenet weights here


def test_training_round_reproduces_from_the_recorded_ids(env, chain, tmp_path):
    with lake_connection(_lake(env)) as con:
        model = latest_model(con, registry_name(LATE))
    params = model["params"]
    config = TrainConfig(
        **{**params["config"], "decoder_channels": tuple(params["config"]["decoder_channels"])}
    )
    again = train_model(
        params["lance_uri"],
        "training_data",
        tmp_path,
        config,
        run_name="repro",
        version=params["lance_versions"]["training_data"],
    )
    compared = 0
    for key, value in model["metrics"].items():
        if isinstance(value, float) and "second" not in key:  # wall time is not reproducible
            compared += 1
            assert again.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert compared >= 2


def test_predictions_and_backfill_are_stored_once(env, chain):
    _, loop = chain
    pred = loop.asset_materializations_for_node("predictions")[0]
    assert pred.metadata["tiles"].value > 0
    assert Path(pred.metadata["probability_cog"].value).exists()
    with lake_connection(_lake(env)) as con:
        n_pred = con.execute(
            "SELECT count(*) FROM predictions WHERE s2_cell = ?", [TINY_CELL]
        ).fetchone()[0]
        n_log = con.execute("SELECT count(*) FROM backfill_log").fetchone()[0]
        n_labels = con.execute("SELECT count(*) FROM labels").fetchone()[0]
    assert n_pred == pred.metadata["detections"].value
    assert n_pred > 0  # else the re-run below compares empty tables and proves nothing
    assert n_log == n_pred  # every detection's decision is logged
    with lake_connection(_lake(env)) as con:
        model = latest_model(con, registry_name(LATE))
        logged = [
            json.loads(m) for (m,) in con.execute("SELECT metrics FROM backfill_log").fetchall()
        ]
    # every decision records the calibrated bounds it was made with, so the round replays
    calibrated = model["params"]["calibration"]["thresholds"]
    for m in logged:
        assert m["thresholds"]["min_score"] == calibrated["min_score"]["value"]
        assert m["thresholds"]["calibration"]
    again = materialize(
        ALL,
        selection=[predictions, validated_backfill],
        partition_key=KEY,
        instance=env["instance"],
        resources=env["resources"],
    )
    assert again.success
    with lake_connection(_lake(env)) as con:
        assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == n_labels
        assert con.execute("SELECT count(*) FROM backfill_log").fetchone()[0] == n_log
        assert (
            con.execute(
                "SELECT count(*) FROM predictions WHERE s2_cell = ?", [TINY_CELL]
            ).fetchone()[0]
            == n_pred
        )
    bf = again.asset_materializations_for_node("validated_backfill")[0]
    assert bf.metadata["labels_inserted"].value == 0


# Last in the module on purpose: the round below registers a second model for LATE, which then is
# the latest one that `predictions` and `validated_backfill` pick for the date.
@pytest.fixture(scope="module")
def msi_round(env, chain):
    """The same date retrained with `bands: vhr+msi` (a new model id), then predicted and
    backfilled: the Sentinel-2 channels come from the world's S2 scene of the window."""
    return _train_and_loop(env, MSI)


def test_a_vhr_msi_round_predicts_and_backfills(env, msi_round):
    trained, loop = msi_round
    assert trained.success and loop.success
    with lake_connection(_lake(env)) as con:
        model = latest_model(con, registry_name(LATE))
        model_id = model["model_id"]
        metrics = [
            json.loads(m)
            for (m,) in con.execute(
                "SELECT metrics FROM predictions WHERE model_id = ? AND s2_cell = ?",
                [model_id, TINY_CELL],
            ).fetchall()
        ]
        n_log = con.execute(
            "SELECT count(*) FROM backfill_log WHERE model_id = ?", [model_id]
        ).fetchone()[0]
    assert model["params"]["config"]["bands"] == "vhr+msi"
    assert (
        trained.asset_materializations_for_node("model_checkpoint")[0].metadata["model_id"].value
        == model_id
    )
    pred = loop.asset_materializations_for_node("predictions")[0].metadata
    assert pred["model_id"].value == model_id
    assert pred["bands"].value == "vhr+msi"
    assert pred["channels"].value == 4 + len(MSI_CHANNELS)
    assert pred["msi_scene"].value != "none"
    with rasterio.open(pred["probability_cog"].value) as cog:
        assert cog.tags()["bands"] == "vhr+msi"
        assert cog.tags()["channels"].split(",")[4:] == [f"msi_{c}" for c in MSI_CHANNELS]
    assert len(metrics) == pred["detections"].value > 0
    for m in metrics:  # what validated_backfill reads, as for a VHR model
        assert m["bands"] == "vhr+msi"
        assert {"msi_pvi", "vhr_pv_score", "max_score", "n_parts", "cog_uri"} <= set(m)
    assert n_log == len(metrics)  # every detection of this model got a backfill decision
    bf = loop.asset_materializations_for_node("validated_backfill")[0].metadata
    assert bf["model_id"].value == model_id


def test_a_round_fine_tunes_the_previous_rounds_model(env, chain, tmp_path):
    """A model registered for an earlier date (the chain's own weights, re-registered there) is
    the next round's starting point; `warm_start: false` trains a fresh network."""
    trained, _ = chain
    vhr_id = trained.asset_materializations_for_node("model_checkpoint")[0].metadata["model_id"]
    store = env["resources"]["objects"].store()
    parent_id = "pv-seg-2021-01-01-parent"
    with lake_connection(_lake(env)) as con:
        parent = get_model(con, vhr_id.value)
        register_model(con, {**parent, "model_id": parent_id, "name": "pv-seg-2021-01-01"})
    weights = store.get(checkpoint_key(vhr_id.value), tmp_path / "parent.ckpt")
    store.put(weights, checkpoint_key(parent_id))
    short = {"steps": 5, "batch_size": 4, "val_every": 5}
    for warm in (True, False):
        run = materialize(
            ALL,
            selection=[model_checkpoint],
            partition_key=LATE,
            instance=env["instance"],
            resources=env["resources"],
            run_config={"ops": {"model_checkpoint": {"config": {**short, "warm_start": warm}}}},
        )
        meta = run.asset_materializations_for_node("model_checkpoint")[0].metadata
        with lake_connection(_lake(env)) as con:
            row = get_model(con, meta["model_id"].value)
        if warm:
            assert meta["encoder_init"].value == f"warm start from {parent_id}"
            assert row["parent_model_id"] == parent_id
            assert row["params"]["config"]["init_model_id"] == parent_id
        else:
            assert not meta["encoder_init"].value.startswith("warm start")
            assert row["parent_model_id"] is None
