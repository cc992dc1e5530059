"""`sam_masks` and `training_data` materialized by Dagster on the tiny world."""

import lancedb
import numpy as np
import pytest
from dagster import MultiPartitionKey, materialize

from flywheel_assets.ingest.imagery import msi_chips, vhr_chips
from flywheel_assets.ingest.labels import seed_labels
from flywheel_assets.masks.assets import sam_masks, training_data
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

LATE = TINY_DATES[1]
ALL = [seed_labels, vhr_chips, msi_chips, sam_masks, training_data]
KEY = MultiPartitionKey({"cell": TINY_CELL, "date": LATE.isoformat()})

pytestmark = pytest.mark.slow


def _table(env, name):
    db = lancedb.connect(str(env["root"] / "lancedb"))
    where = f"cell = '{TINY_CELL}' AND date = '{LATE.isoformat()}'"
    return db.open_table(name).search().where(where).limit(None).to_arrow()


@pytest.fixture(scope="module")
def first_run(env):
    return materialize(ALL, partition_key=KEY, instance=env["instance"], resources=env["resources"])


def test_classical_masks_for_every_seed_label(env, first_run):
    checks = {e.check_name: e.passed for e in first_run.get_asset_check_evaluations()}
    assert checks["acceptance_rate"] and checks["split_by_block"]
    masks = _table(env, "sam_masks")
    labels = set(_table(env, "seed_labels")["label_id"].to_pylist())
    assert masks.num_rows >= 1
    assert set(masks["label_id"].to_pylist()) <= labels
    assert set(masks["weights"].to_pylist()) == {"none"}
    mat = first_run.asset_materializations_for_node("sam_masks")[0]
    assert mat.metadata["weights"].value == "none"
    assert 0.0 <= mat.metadata["share_outside_model"].value <= 1.0
    assert (env["root"] / "previews" / "sam_masks" / f"{TINY_CELL}_{LATE}.png").exists()


def test_training_data_follows_the_seed_schema(env, first_run):
    samples = _table(env, "training_data")
    for name in (
        "uuid",
        "prompt_geometry",
        "vhr_image_chip",
        "generated_mask",
        "msi_image_chip",
        "metadata",
    ):
        assert name in samples.schema.names
    rows = samples.to_pylist()
    positives = [r for r in rows if not r["metadata"]["negative"]]
    assert positives
    accepted = {m["chip_id"] for m in _table(env, "sam_masks").to_pylist() if m["accepted"]}
    assert {r["metadata"]["chip_id"] for r in positives} <= accepted
    for r in rows:
        _, h, w = r["metadata"]["vhr_shape"]
        mask = np.frombuffer(r["generated_mask"], np.uint8).reshape(h, w)
        assert mask.any() != r["metadata"]["negative"]
        assert r["split"] == r["metadata"]["split"] in ("train", "val", "test")
        assert r["metadata"]["cell"] == TINY_CELL and r["metadata"]["h3_cell"]
        c, mh, mw = r["metadata"]["msi_shape"]
        assert np.frombuffer(r["msi_image_chip"], np.float32).size == c * mh * mw


def test_rerun_is_idempotent(env, first_run):
    before = sorted(_table(env, "training_data")["uid"].to_pylist())
    masks_before = sorted(_table(env, "sam_masks")["uid"].to_pylist())
    again = materialize(
        ALL, partition_key=KEY, instance=env["instance"], resources=env["resources"]
    )
    assert again.success
    assert sorted(_table(env, "training_data")["uid"].to_pylist()) == before
    assert sorted(_table(env, "sam_masks")["uid"].to_pylist()) == masks_before


def test_random_weight_model_says_so(env, first_run):
    result = materialize(
        [seed_labels, vhr_chips, sam_masks],
        selection=[sam_masks],
        partition_key=KEY,
        instance=env["instance"],
        resources=env["resources"],
        run_config={
            "ops": {
                "sam_masks": {"config": {"backend": "transformers", "model": "tiny-random-sam"}}
            }
        },
    )
    assert result.success
    masks = _table(env, "sam_masks")
    assert set(masks["backend"].to_pylist()) == {"transformers"}
    assert set(masks["weights"].to_pylist()) == {"random"}
    mat = result.asset_materializations_for_node("sam_masks")[0]
    assert mat.metadata["weights"].value == "random"
    logs = " ".join(str(r.user_message) for r in env["instance"].all_logs(result.run_id))
    assert "RANDOM weights" in logs
