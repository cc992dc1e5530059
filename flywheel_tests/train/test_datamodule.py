from __future__ import annotations

import pytest
import torch

from flywheel_core.train.datamodule import EmptySplitError, PVDataModule


def test_sizes_steps_and_loaders(pv_table):
    dm = PVDataModule(pv_table.uri, batch_size=4, crop_size=32)
    want = {s: sum(r["split"] == s for r in pv_table.rows) for s in ("train", "val", "test")}
    assert dm.sizes == want and dm.version == pv_table.version
    assert dm.steps_per_epoch == -(-want["train"] // 4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 4, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[-2:] == (64, 64)
    clean = next(iter(dm.eval_dataloader("train")))
    assert clean["image"].shape[-2:] == (64, 64)
    assert clean["uid"] == dm.datasets["train"].uids[:4]


def test_shuffle_and_augmentation_are_seeded(pv_table):
    def first_batch(seed):
        torch.manual_seed(123)  # the augmentation's RNG (seed_everything in training)
        dm = PVDataModule(pv_table.uri, batch_size=4, seed=seed)
        return next(iter(dm.train_dataloader()))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert a["uid"] == b["uid"] and torch.equal(a["image"], b["image"])
    assert a["uid"] != c["uid"]


def test_filters_and_version_pinning(pv_table):
    dm = PVDataModule(pv_table.uri, pv_table.version, as_of="2024-05-31", cells=["c1"])
    assert sum(dm.sizes.values()) == 15
    assert {u.split("|")[1] for ds in dm.datasets.values() for u in ds.uids} == {"2024-05-01"}
    msi = PVDataModule(pv_table.uri, bands="vhr+msi")
    assert msi.in_channels == 22 and len(msi.channels) == 22


def test_empty_train_split_is_a_clear_error(pv_table):
    dm = PVDataModule(pv_table.uri, as_of="2023-01-01")
    assert dm.sizes == {"train": 0, "val": 0, "test": 0}
    with pytest.raises(EmptySplitError, match="no training samples"):
        dm.setup("fit")
    with pytest.raises(EmptySplitError):
        dm.train_dataloader()


def test_workers(pv_table):
    dm = PVDataModule(pv_table.uri, batch_size=4, num_workers=2)
    loader = dm.train_dataloader()
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    uids = [u for batch in loader for u in batch["uid"]]
    assert sorted(uids) == sorted(dm.datasets["train"].uids)
