from __future__ import annotations

import pytest
import torch

from flywheel_core.train.datamodule import EmptySplitError, PVDataModule
from flywheel_core.train.dataset import table_uri
from flywheel_core.train.synthetic import synthetic_rows, write_training_table


def test_sizes_steps_and_loaders(pv_table):
    dm = PVDataModule(pv_table.uri, batch_size=4, crop_size=32)
    want = {s: sum(r["split"] == s for r in pv_table.rows) for s in ("train", "val", "test")}
    assert dm.sizes == want and dm.version == pv_table.version
    assert dm.steps_per_epoch == -(-want["train"] // 4)  # default block: one pass's worth
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == dm.steps_per_epoch
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 4, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    # an "epoch" is a block of steps of any length, drawn with replacement
    block = PVDataModule(pv_table.uri, batch_size=4, steps_per_epoch=25).train_dataloader()
    assert len(block) == 25 and len([b for b in block]) == 25
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[-2:] == (64, 64)
    clean = next(iter(dm.eval_dataloader("train")))
    assert clean["image"].shape[-2:] == (64, 64)
    assert clean["uid"] == dm.datasets["train"].uids[:4]


def test_sampling_and_augmentation_are_seeded(pv_table):
    def first_batch(seed, global_seed):
        torch.manual_seed(global_seed)  # plays no part: each sample has its own seed
        dm = PVDataModule(pv_table.uri, batch_size=4, seed=seed, crop_size=32)
        return next(iter(dm.train_dataloader()))

    a, b, c = first_batch(0, 1), first_batch(0, 2), first_batch(1, 1)
    assert a["uid"] == b["uid"] and torch.equal(a["image"], b["image"])
    assert a["uid"] != c["uid"]


def _positive_table(root, n_pos, n_neg):
    rows = synthetic_rows(n_pos, seed=1, panels=2) + synthetic_rows(n_neg, seed=2, panels=0)
    for i, r in enumerate(rows):
        r["uid"] = r["metadata"]["chip_id"] = f"c1|2024-06-01|r{i:05d}"
    db = str(root / "lancedb")
    write_training_table(db, rows)
    return table_uri(db, "training_data")


def test_train_draws_favour_chips_with_panels(tmp_path):
    uri = _positive_table(tmp_path, n_pos=3, n_neg=27)
    dm = PVDataModule(uri, batch_size=10, steps_per_epoch=100, positive_fraction=0.7, seed=3)
    ds = dm.datasets["train"]
    assert ds.positive().sum() == 3 and len(ds) == 30
    positive = {u for u, p in zip(ds.uids, ds.positive(), strict=True) if p}
    uids = [u for batch in dm.train_dataloader() for u in batch["uid"]]
    share = sum(u in positive for u in uids) / len(uids)
    assert abs(share - 0.7) < 0.04, share
    uniform = PVDataModule(uri, batch_size=10, steps_per_epoch=100, positive_fraction=None)
    uids = [u for batch in uniform.train_dataloader() for u in batch["uid"]]
    assert sum(u in positive for u in uids) / len(uids) < 0.2


def test_photometric_changes_train_samples_only_in_their_vhr_channels(pv_table):
    kw = dict(bands="vhr+msi", batch_size=4, seed=2, crop_size=None)
    plain = PVDataModule(pv_table.uri, photometric=False, **kw)
    photo = PVDataModule(pv_table.uri, photometric=True, **kw)
    a, b = next(iter(plain.train_dataloader())), next(iter(photo.train_dataloader()))
    assert a["uid"] == b["uid"] and torch.equal(a["mask"], b["mask"])
    assert torch.equal(a["image"][:, 4:], b["image"][:, 4:])
    assert not torch.allclose(a["image"][:, :4], b["image"][:, :4], atol=1e-3)
    # eval loaders are never augmented
    clean = next(iter(photo.eval_dataloader("train")))["image"]
    raw = torch.stack([s["image"] for s in photo.datasets["train"].load_all()[:4]])
    assert torch.equal(clean, raw)


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


def test_workers_give_the_batches_of_the_main_process(pv_table):
    kw = dict(batch_size=4, crop_size=32, steps_per_epoch=4, seed=7)
    loader = PVDataModule(pv_table.uri, num_workers=2, **kw).train_dataloader()
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    with_workers = list(loader)
    in_process = list(PVDataModule(pv_table.uri, num_workers=0, **kw).train_dataloader())
    assert len(with_workers) == len(in_process) == 4
    for a, b in zip(with_workers, in_process, strict=True):
        assert a["uid"] == b["uid"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
