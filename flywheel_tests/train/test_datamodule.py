from __future__ import annotations

import pytest
import torch

from flywheel_core.train.datamodule import EmptySplitError, PVDataModule
from flywheel_core.train.dataset import collate_samples, model_batch, table_uri
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
    # uint8 until the batch is on the device (the model's on_after_batch_transfer converts)
    assert batch["image"].dtype == torch.uint8 and batch["mask"].dtype == torch.uint8
    assert batch["photometric"].shape == (4, 5 + 2 * 4) and batch["photometric_seed"].shape == (4,)
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
    assert "photometric" not in a and torch.equal(a["image"], b["image"]), "drawn, not applied"
    a, b = model_batch(a), model_batch(b)  # as on the device, after the transfer
    assert a["uid"] == b["uid"] and torch.equal(a["mask"], b["mask"])
    assert a["image"].shape[1] == 22 and torch.equal(a["image"][:, 4:], b["image"][:, 4:])
    assert not torch.allclose(a["image"][:, :4], b["image"][:, :4], atol=1e-3)
    # eval loaders are never augmented
    clean = next(iter(photo.eval_dataloader("train")))
    assert "photometric" not in clean
    raw = collate_samples(photo.datasets["train"].load_all()[:4])["image"]
    assert torch.equal(model_batch(clean)["image"], raw)


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
        assert a["uid"] == b["uid"] and a["image"].dtype == torch.uint8
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        # the photometric draws travel with the batch: the same with any number of workers
        assert torch.equal(a["photometric"], b["photometric"])
        assert torch.equal(a["photometric_seed"], b["photometric_seed"])
        assert torch.equal(model_batch(a)["image"], model_batch(b)["image"])


def test_the_uint8_path_trains_on_the_float_path_numbers(pv_table):
    """A train batch from the loader, made float on the "device" by the module, gives the network
    the input (and the loss) of the float pipeline: the same samples decoded as float32 / 255
    with the same per-sample seeds, cropped, turned and photometrically changed at once."""
    from flywheel_core.train.module import PVSegmentationModule

    dm = PVDataModule(pv_table.uri, batch_size=4, crop_size=32, steps_per_epoch=1, seed=5)
    ds = dm.datasets["train"]
    items = list(dm.train_sampler())[:4]
    loader_batch = next(iter(dm.train_dataloader()))
    assert loader_batch["uid"] == [ds.uids[i] for i, _ in items]

    clean = {s["uid"]: s for s in ds.load_all()}
    transform = ds.transform
    assert transform is not None
    floats = []
    for i, seed in items:
        s = clean[ds.uids[i]]
        s = {**s, "image": s["image"].float() / 255, "mask": s["mask"].float()}
        floats.append(transform(s, torch.Generator().manual_seed(int(seed))))
    float_batch = torch.utils.data.default_collate(floats)

    torch.manual_seed(0)
    model = PVSegmentationModule(in_channels=4, encoder_depth=2, decoder_channels=(16, 8))
    got = model.on_after_batch_transfer(loader_batch, 0)
    assert got["image"].dtype == torch.float32 and set(got["mask"].unique().tolist()) <= {0, 1}
    torch.testing.assert_close(got["image"], float_batch["image"], rtol=0, atol=1e-6)
    assert torch.equal(got["mask"], float_batch["mask"])
    model.eval()
    with torch.no_grad():
        loss = model.loss(model(got["image"]), got["mask"])
        want = model.loss(model(float_batch["image"]), float_batch["mask"])
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)


def test_without_workers_the_next_batch_is_read_ahead(pv_table, monkeypatch):
    """The in-process train loader reads batch k+1 in a background thread while batch k is
    used; the batches are those of a plain loader over the same sampler."""
    import threading

    import lance
    from torch.utils.data import DataLoader

    dm = PVDataModule(pv_table.uri, batch_size=4, crop_size=32, steps_per_epoch=5, seed=1)
    ds = dm.datasets["train"]
    ds.positive()  # the sampler's mask scan, before counting the batch reads
    threads = []
    take = lance.LanceDataset.take

    def spy_take(self, indices, columns=None, **kw):
        threads.append(threading.current_thread().name)
        return take(self, indices, columns=columns, **kw)

    monkeypatch.setattr(lance.LanceDataset, "take", spy_take)
    batches = list(dm.train_dataloader())
    assert len(batches) == 5 and len(threads) == 5, threads
    # the first batch is read when asked for, every later one ahead of time
    assert sorted(t.startswith("lance-prefetch") for t in threads) == [False] + [True] * 4
    assert "MainThread" in threads
    plain = DataLoader(ds, batch_size=4, sampler=dm.train_sampler())
    for a, b in zip(batches, plain, strict=True):
        assert a["uid"] == b["uid"] and torch.equal(a["image"], b["image"])
        assert torch.equal(a["photometric"], b["photometric"])
