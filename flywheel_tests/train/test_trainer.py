from __future__ import annotations

from dataclasses import replace

import lance
import pytest
import torch
from torchmetrics.classification import BinaryJaccardIndex

from flywheel_core.train.dataset import LanceChipDataset, collate_samples
from flywheel_core.train.synthetic import synthetic_rows, write_training_table
from flywheel_core.train.trainer import BestWeights, TrainConfig, load_model, train_model
from flywheel_tests.train.conftest import build_table, few_label_rows


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_tiny_run_learns_and_checkpoints(pv_table, tmp_path):
    cfg = TrainConfig.tiny()
    result = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path, cfg, "tiny")
    m = result.metrics
    assert m["train/samples"] == sum(r["split"] == "train" for r in pv_table.rows)
    assert m["train/iou"] > 0.5, m
    for split in ("train", "val", "test"):
        for k in ("iou", "f1", "loss"):
            assert isinstance(m[f"{split}/{k}"], float), (split, k)
    assert result.lance_version == pv_table.version
    assert result.config["steps"] == cfg.steps and result.seconds > 0
    assert m["steps_run"] == cfg.steps and m["stopped_step"] is None
    assert result.channels == ["red", "green", "blue", "nir"]
    assert result.encoder_init == "random"
    # the val curve: one point per val_every steps, the kept weights the best of them
    assert [h["step"] for h in result.history] == [10, 20, 30, 40]
    best = max(result.history, key=lambda h: h["iou"])
    assert m["best_step"] == best["step"] and m["val/iou"] == pytest.approx(best["iou"], abs=1e-6)
    assert result.weights.startswith("best val IoU")
    # the checkpoint restores the same model
    model = load_model(result.checkpoint_path)
    assert not model.training and model.device.type == "cpu"
    assert model.hparams.data_info["lance_version"] == pv_table.version
    x = torch.rand(2, 4, 64, 64)
    again = load_model(result.checkpoint_path)
    assert torch.equal(model.predict_proba(x), again.predict_proba(x))
    # the offline W&B run is on disk under out_dir, named by its id, with the sample panels
    assert result.wandb_run_id and result.wandb_dir.is_dir()
    assert result.wandb_run_id in result.wandb_dir.name
    assert result.wandb_dir.is_relative_to(tmp_path)
    assert list(result.wandb_dir.glob(f"run-{result.wandb_run_id}.wandb"))
    assert list(result.wandb_dir.rglob("samples_*.png"))


def test_empty_val_and_test_are_skipped(tmp_path):
    db = str(tmp_path / "lancedb")
    write_training_table(db, synthetic_rows(8, splits=("train",), seed=5))
    cfg = TrainConfig.tiny(steps=7, val_every=3, patience=1)
    result = train_model(db, "training_data", tmp_path / "out", cfg, "train-only")
    m = result.metrics
    assert m["train/samples"] == 8 and isinstance(m["train/iou"], float)
    assert m["val/samples"] == 0 and m["test/samples"] == 0
    assert all(m[f"{s}/{k}"] is None for s in ("val", "test") for k in ("iou", "f1", "loss"))
    assert result.checkpoint_path.is_file()
    # no val: all steps, the final weights, and the result says so
    assert m["steps_run"] == 7 and m["best_step"] is None and m["stopped_step"] is None
    assert result.history == [] and "no val split" in result.weights


def test_a_split_without_panels_has_no_iou(tmp_path):
    # A test split of panel-free chips: any stray pixel makes IoU 0, which says nothing of what
    # the model learnt, so IoU and F1 are None and the count of positive chips is recorded.
    db = str(tmp_path / "lancedb")
    rows = synthetic_rows(6, splits=("train", "val"), seed=5)
    rows += synthetic_rows(3, splits=("test",), seed=6, panels=0)
    for i, r in enumerate(rows):
        r["uid"] = r["metadata"]["chip_id"] = f"c1|2024-06-01|r{i:05d}"
    write_training_table(db, rows)
    result = train_model(db, "training_data", tmp_path / "out", TrainConfig.tiny(steps=4), "neg")
    m = result.metrics
    assert m["test/samples"] == 3 and m["test/positive_samples"] == 0
    assert m["test/iou"] is None and m["test/f1"] is None and isinstance(m["test/loss"], float)
    assert m["val/positive_samples"] == 3 and isinstance(m["val/iou"], float)


def test_no_training_rows_is_a_clear_error(pv_table, tmp_path):
    from flywheel_core.train.datamodule import EmptySplitError

    cfg = TrainConfig.tiny(as_of_date="2020-01-01")
    with pytest.raises(EmptySplitError, match="no training samples"):
        train_model(pv_table.lancedb_uri, pv_table.table, tmp_path, cfg, "empty")


@pytest.mark.slow
def test_a_round_is_reproducible_from_its_recorded_version(tmp_path):
    table = build_table(tmp_path / "data")
    cfg = TrainConfig.tiny(steps=12)
    first = train_model(table.lancedb_uri, table.table, tmp_path / "a", cfg, "a")
    # the table grows after the round...
    write_training_table(
        table.lancedb_uri, synthetic_rows(12, cell="c9", date="2024-07-01", seed=11)
    )
    assert lance.dataset(table.uri).count_rows() == len(table.rows) + 12
    # ...and the recorded version still gives the same data, so the same model
    second = train_model(
        table.lancedb_uri, table.table, tmp_path / "b", cfg, "b", version=first.lance_version
    )
    assert second.lance_version == first.lance_version
    assert second.metrics.keys() == first.metrics.keys()
    for k, v in first.metrics.items():
        if k != "seconds":
            assert second.metrics[k] == pytest.approx(v, abs=1e-6), k
    a = load_model(first.checkpoint_path).state_dict()
    b = load_model(second.checkpoint_path).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    # the latest version is a different dataset
    latest = train_model(
        table.lancedb_uri,
        table.table,
        tmp_path / "c",
        cfg.__class__.tiny(steps=1),
        "c",
    )
    assert latest.lance_version > first.lance_version
    assert latest.metrics["train/samples"] > first.metrics["train/samples"]


def test_same_version_and_config_give_identical_weights(pv_table, tmp_path):
    cfg = TrainConfig.tiny(steps=12, val_every=4, crop_size=32, positive_fraction=0.7)
    a = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path / "a", cfg, "a")
    b = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path / "b", cfg, "b")
    assert a.metrics == b.metrics and a.history == b.history
    sa = load_model(a.checkpoint_path).state_dict()
    sb = load_model(b.checkpoint_path).state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # and the seed matters
    other = replace(cfg, seed=1)
    c = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path / "c", other, "c")
    assert c.metrics["train/loss"] != a.metrics["train/loss"]


class _FakeTrainer:
    def __init__(self):
        self.global_step, self.should_stop, self.sanity_checking = 0, False, False
        self.callback_metrics = {}


def test_best_weights_keep_the_best_iou_break_ties_on_loss_and_stop_on_patience():
    net = torch.nn.Linear(1, 1, bias=False)
    best = BestWeights(steps=100, patience=2)
    trainer = _FakeTrainer()
    curve = [
        (10, 0.0, 0.9),
        (20, 0.0, 0.7),
        (30, 0.5, 0.6),
        (40, 0.5 + 1e-6, 0.5),
        (50, 0.4, 0.4),
        (60, 0.45, 0.3),
    ]
    for step, iou, loss in curve:
        trainer.global_step = step
        trainer.callback_metrics = {
            "val/iou": torch.tensor(iou),
            "val/loss": torch.tensor(loss),
            "val/f1": torch.tensor(iou),
        }
        net.weight.data.fill_(step)  # the weights "at" this step
        best.on_validation_end(trainer, net)
        assert trainer.should_stop == (step == 60), step
    # 20 beats 10 on loss at equal IoU; 40 beats 30 on loss within the IoU tolerance
    # 50 and 60 are worse (IoU), patience 2: stop at 60
    assert best.best_step == 40 and best.stopped_step == 60
    assert [h["step"] for h in best.history] == [10, 20, 30, 40, 50, 60]
    assert best.restore(net) and float(net.weight.detach()) == 40.0
    assert not BestWeights(steps=10, patience=1).restore(net)


def test_too_few_val_panels_keep_the_final_weights(pv_table, tmp_path):
    # The settings that stop early above, but val holds fewer chips with panels than asked for:
    # the curve is still recorded, nothing stops early and the final weights are kept.
    cfg = TrainConfig.tiny(steps=24, val_every=4, patience=1, lr=5e-2, min_val_positives=10_000)
    result = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path, cfg, "few-val")
    m = result.metrics
    assert m["steps_run"] == 24 and m["stopped_step"] is None and m["best_step"] is None
    assert [h["step"] for h in result.history] == [4, 8, 12, 16, 20, 24]
    assert result.weights.startswith("final weights after 24 steps (val has ")
    assert "fewer than min_val_positives=10000" in result.weights
    # the scores are the last evaluation's, whichever evaluation was best
    assert m["val/iou"] == pytest.approx(result.history[-1]["iou"], abs=1e-6)
    with pytest.raises(ValueError, match="min_val_positives"):
        TrainConfig(min_val_positives=-1)


def test_val_based_stop_restores_the_best_weights(pv_table, tmp_path):
    # a high learning rate and a small patience: val IoU soon stops improving
    cfg = TrainConfig.tiny(steps=400, val_every=4, patience=2, lr=5e-2)
    result = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path, cfg, "stop")
    m = result.metrics
    assert m["stopped_step"] is not None and m["steps_run"] == m["stopped_step"] < cfg.steps
    assert m["best_step"] < m["stopped_step"]
    steps = [h["step"] for h in result.history]
    assert steps == list(range(4, m["stopped_step"] + 1, 4))
    best = next(h for h in result.history if h["step"] == m["best_step"])
    last = result.history[-1]
    assert best["iou"] == max(h["iou"] for h in result.history) and last["iou"] < best["iou"]
    # the scores and the saved checkpoint are the best step's, not the last one's
    assert m["val/iou"] == pytest.approx(best["iou"], abs=1e-6)
    assert m["val/loss"] == pytest.approx(best["loss"], abs=1e-5)
    model = load_model(result.checkpoint_path)
    val = collate_samples(LanceChipDataset(pv_table.uri, split="val").load_all())
    iou = BinaryJaccardIndex()(model.predict_proba(val["image"]), val["mask"].int())
    assert float(iou) == pytest.approx(best["iou"], abs=1e-5)
    assert "stopped early" in result.weights


def _few_label_table(root):
    """8 train chips of 256² (6 with panels, 2 without), 3 val, 3 test: a seed-only round."""
    db = str(root / "lancedb")
    write_training_table(db, few_label_rows())
    return db


@pytest.mark.slow
def test_a_round_with_few_labels_learns(tmp_path):
    db = _few_label_table(tmp_path)
    # the defaults (steps, batch 8, 96² crops, positive-aware sampling, photometric), with a
    # random encoder so the result does not depend on this machine's weight caches
    cfg = TrainConfig(encoder_weights=None, seed=1)
    result = train_model(db, "training_data", tmp_path / "out", cfg, "few")
    m = result.metrics
    assert m["train/samples"] == 8 and m["steps_run"] <= cfg.steps
    assert m["train/iou"] >= 0.5, (m, result.history)


def test_a_warm_start_begins_from_the_previous_models_weights(pv_table, tmp_path):
    cfg = TrainConfig.tiny(steps=8, val_every=4)
    first = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path / "a", cfg, "a")
    # lr 0: the optimiser moves nothing, so the network keeps the weights it started from
    frozen = replace(cfg, lr=0.0, seed=7, init_model_id="pv-seg-a")
    warm = train_model(
        pv_table.lancedb_uri,
        pv_table.table,
        tmp_path / "b",
        frozen,
        "b",
        init_checkpoint=first.checkpoint_path,
    )
    assert warm.encoder_init == "warm start from pv-seg-a"
    assert warm.config["init_model_id"] == "pv-seg-a"
    pa = dict(load_model(first.checkpoint_path).named_parameters())
    pb = dict(load_model(warm.checkpoint_path).named_parameters())
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    fresh = replace(cfg, lr=0.0, seed=7)
    cold = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path / "c", fresh, "c")
    pc = dict(load_model(cold.checkpoint_path).named_parameters())
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)


def test_a_warm_start_refuses_a_checkpoint_of_another_network(pv_table, tmp_path):
    cfg = TrainConfig.tiny(steps=4, val_every=4)
    first = train_model(pv_table.lancedb_uri, pv_table.table, tmp_path / "a", cfg, "a")
    deeper = replace(cfg, encoder_depth=3, decoder_channels=(16, 8, 8), init_model_id="a")
    with pytest.raises(ValueError, match="does not fit this network"):
        train_model(
            pv_table.lancedb_uri,
            pv_table.table,
            tmp_path / "b",
            deeper,
            "b",
            init_checkpoint=first.checkpoint_path,
        )
    with pytest.raises(ValueError, match="go together"):
        train_model(pv_table.lancedb_uri, pv_table.table, tmp_path / "c", deeper, "c")
