from __future__ import annotations

import lance
import pytest
import torch

from flywheel_core.train.synthetic import synthetic_rows, write_training_table
from flywheel_core.train.trainer import TrainConfig, load_model, train_model
from flywheel_tests.train.conftest import build_table


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
    assert result.config["epochs"] == cfg.epochs and result.seconds > 0
    assert result.channels == ["red", "green", "blue", "nir"]
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
    cfg = TrainConfig.tiny(epochs=1, max_train_batches=1)
    result = train_model(db, "training_data", tmp_path / "out", cfg, "train-only")
    m = result.metrics
    assert m["train/samples"] == 8 and isinstance(m["train/iou"], float)
    assert m["val/samples"] == 0 and m["test/samples"] == 0
    assert all(m[f"{s}/{k}"] is None for s in ("val", "test") for k in ("iou", "f1", "loss"))
    assert result.checkpoint_path.is_file()


def test_no_training_rows_is_a_clear_error(pv_table, tmp_path):
    from flywheel_core.train.datamodule import EmptySplitError

    cfg = TrainConfig.tiny(as_of_date="2020-01-01")
    with pytest.raises(EmptySplitError, match="no training samples"):
        train_model(pv_table.lancedb_uri, pv_table.table, tmp_path, cfg, "empty")


@pytest.mark.slow
def test_a_round_is_reproducible_from_its_recorded_version(tmp_path):
    table = build_table(tmp_path / "data")
    cfg = TrainConfig.tiny(epochs=2)
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
        cfg.__class__.tiny(epochs=1, max_train_batches=1),
        "c",
    )
    assert latest.lance_version > first.lance_version
    assert latest.metrics["train/samples"] > first.metrics["train/samples"]
