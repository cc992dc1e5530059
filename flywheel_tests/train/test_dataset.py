from __future__ import annotations

import pickle

import lance
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flywheel_core.train.dataset import LanceChipDataset, collate_samples, model_batch, row_filter
from flywheel_core.train.synthetic import MSI_CHANNELS, synthetic_rows, write_training_table
from flywheel_tests.train.conftest import build_table


def _expected(rows, split=None, as_of=None, cells=None):
    return [
        r
        for r in rows
        if (split is None or r["split"] == split)
        and (as_of is None or r["date"] <= as_of)
        and (cells is None or r["cell"] in cells)
    ]


def _table_order(pv_table):
    return lance.dataset(pv_table.uri).to_table(columns=["uid"])["uid"].to_pylist()


def test_filters_select_the_right_rows(pv_table):
    order = _table_order(pv_table)
    for kw in (
        {},
        {"split": "train"},
        {"split": "val", "as_of": "2024-05-31"},
        {"split": "test", "cells": ["c2"]},
        {"as_of": "2024-06-01", "cells": ["c1", "zz"]},
        {"split": "train", "cells": []},
    ):
        ds = LanceChipDataset(pv_table.uri, **kw)
        want = {r["uid"] for r in _expected(pv_table.rows, **kw)}
        assert set(ds.uids) == want, kw
        assert ds.uids == [u for u in order if u in want], "rows keep table order"
        assert ds.version == pv_table.version
    assert row_filter("val", "2024-05-31", ["c'1"]) == (
        "split = 'val' AND date <= '2024-05-31' AND cell IN ('c''1')"
    )


def test_random_access_returns_the_right_rows(pv_table):
    ds = LanceChipDataset(pv_table.uri, split="train")
    by_uid = {r["uid"]: r for r in pv_table.rows}
    order = [5, 0, len(ds) - 1, 3, 3, -1]
    samples = ds.__getitems__(order)
    assert [s["uid"] for s in samples] == [ds.uids[i] for i in order]
    for i in (0, 7, len(ds) - 1):
        s = ds[i]
        row = by_uid[s["uid"]]
        # pixels stay uint8: the stored bytes themselves, the mask as 0/1
        assert s["image"].dtype == torch.uint8 and s["image"].shape == (4, 64, 64)
        assert s["mask"].dtype == torch.uint8 and s["mask"].shape == (1, 64, 64)
        img = np.frombuffer(row["vhr_image_chip"], np.uint8).reshape(4, 64, 64)
        np.testing.assert_array_equal(s["image"].numpy(), img)
        mask = np.frombuffer(row["generated_mask"], np.uint8).reshape(64, 64)
        np.testing.assert_array_equal(s["mask"][0].numpy(), (mask > 0).astype(np.uint8))
        # ... and the model's input is what the float decoding gave: VHR / 255, mask > 0
        x = collate_samples([s])
        assert x["image"].dtype == torch.float32 and x["mask"].dtype == torch.float32
        want = torch.from_numpy(img.astype(np.float32)).div_(255.0)
        assert torch.equal(x["image"][0], want)
        assert torch.equal(x["mask"][0, 0], torch.from_numpy((mask > 0).astype(np.float32)))
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert ds.channels == ["red", "green", "blue", "nir"]


def test_never_reads_the_whole_table(pv_table, monkeypatch):
    """Construction scans key columns only; samples are `take`s of the pixel columns."""
    calls = {"to_table": [], "take": []}
    to_table, take = lance.LanceDataset.to_table, lance.LanceDataset.take

    def spy_to_table(self, columns=None, **kw):
        calls["to_table"].append(columns)
        return to_table(self, columns=columns, **kw)

    def spy_take(self, indices, columns=None):
        calls["take"].append((list(indices), columns))
        return take(self, indices, columns=columns)

    monkeypatch.setattr(lance.LanceDataset, "to_table", spy_to_table)
    monkeypatch.setattr(lance.LanceDataset, "take", spy_take)
    ds = LanceChipDataset(pv_table.uri, split="val", bands="vhr+msi")
    ds.__getitems__([0, 1])
    assert calls["to_table"], "the index is built with one key-column scan"
    for columns in calls["to_table"]:
        assert columns is not None
        assert not {"vhr_image_chip", "generated_mask", "msi_image_chip"} & set(columns)
    for indices, columns in calls["take"]:
        assert columns is not None and len(indices) <= 2


def test_vhr_plus_msi_channels(pv_table):
    ds = LanceChipDataset(pv_table.uri, split="train", bands="vhr+msi")
    assert len(ds.channels) == ds.in_channels == 4 + 18
    assert ds.channels[4:] == [f"msi_{c}" for c in MSI_CHANNELS]
    s = ds[0]
    # VHR stays uint8, MSI (reflectances and indices) is float on the chip grid
    assert s["image"].shape == (4, 64, 64) and s["image"].dtype == torch.uint8
    assert s["msi"].shape == (18, 64, 64) and s["msi"].dtype == torch.float32
    row = next(r for r in pv_table.rows if r["uid"] == s["uid"])
    msi = np.frombuffer(row["msi_image_chip"], np.float32).reshape(18, 2, 2)
    # bilinear resampling keeps the channel mean and range of a 2x2 grid
    assert s["msi"].amin(dim=(1, 2)).numpy() == pytest.approx(msi.min(axis=(1, 2)), abs=1e-5)
    assert s["msi"].amax(dim=(1, 2)).numpy() == pytest.approx(msi.max(axis=(1, 2)), abs=1e-5)
    # the model sees the 22 channels: VHR / 255, then MSI unchanged
    x = collate_samples([s])["image"][0]
    assert x.shape == (22, 64, 64)
    assert torch.equal(x[:4], s["image"].float() / 255) and torch.equal(x[4:], s["msi"])
    with pytest.raises(ValueError, match="bands"):
        LanceChipDataset(pv_table.uri, bands="rgb")


def test_worker_safe_dataloader(pv_table):
    ds = LanceChipDataset(pv_table.uri, split="train")
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._ds is None and clone[0]["uid"] == ds[0]["uid"]
    # forkserver, not fork: Lance is not fork-safe (see flywheel_core.train.dataset)
    loader = DataLoader(
        ds, batch_size=4, num_workers=2, shuffle=True, multiprocessing_context="forkserver"
    )
    seen = []
    for batch in loader:
        assert batch["image"].shape[1:] == (4, 64, 64)
        seen += batch["uid"]
    assert sorted(seen) == sorted(ds.uids)


def test_pinned_version_survives_appends(tmp_path):
    table = build_table(tmp_path)
    old = LanceChipDataset(table.uri, split="train")
    n_old = len(old)
    new_rows = synthetic_rows(10, cell="c3", date="2024-07-01", splits=("train",), seed=9)
    v2 = write_training_table(table.lancedb_uri, new_rows)
    assert v2 > table.version
    latest = LanceChipDataset(table.uri, split="train")
    assert latest.version == v2 and len(latest) == n_old + 10
    again = LanceChipDataset(table.uri, table.version, split="train")
    assert len(again) == n_old and again.uids == old.uids
    # the already-open dataset keeps reading its own version
    assert old[len(old) - 1]["uid"] == old.uids[-1]
    # rewriting a partition (one Update commit: deletions + new fragments) keeps older reads intact
    rewrite = synthetic_rows(15, cell="c1", date="2024-05-01", splits=("val",), seed=4)
    write_training_table(table.lancedb_uri, rewrite)
    assert LanceChipDataset(table.uri, table.version, split="train").uids == old.uids
    now = LanceChipDataset(table.uri, split="train")
    assert not any(u.startswith("c1|2024-05-01") for u in now.uids)
    assert {s["uid"] for s in now.__getitems__(list(range(len(now))))} == set(now.uids)


def test_positive_flags_and_seeded_items(pv_table):
    ds = LanceChipDataset(pv_table.uri, split="train")
    by_uid = {r["uid"]: r for r in pv_table.rows}
    want = [bool(np.frombuffer(by_uid[u]["generated_mask"], np.uint8).any()) for u in ds.uids]
    assert ds.positive().tolist() == want and ds.vhr_channels == 4
    assert LanceChipDataset(pv_table.uri, split="train", bands="vhr+msi").vhr_channels == 4

    calls = []

    def transform(sample, generator=None):
        calls.append(generator)
        noise = torch.rand(1, generator=generator)
        return {**sample, "noise": float(noise)}

    ds.transform = transform
    a = ds.__getitems__([(0, 11), (1, 12), 2])
    b = ds.__getitems__([(0, 11), (1, 12)])
    assert [s["uid"] for s in a] == ds.uids[:3]
    assert a[0]["noise"] == b[0]["noise"] and a[1]["noise"] == b[1]["noise"]
    assert a[0]["noise"] != a[1]["noise"]
    assert isinstance(calls[0], torch.Generator) and calls[2] is None  # plain index: no seed


def test_pixels_are_views_of_the_arrow_buffers(pv_table, monkeypatch):
    """Decoding copies nothing: every chip of a batch is a view of the one data buffer of the
    `take` result (the `to_pylist` + `frombuffer` way makes one bytes object, so one copy, per
    row); the positions are taken sorted and once each, the samples come back in the order
    asked for."""
    taken = []
    take = lance.LanceDataset.take

    def spy_take(self, indices, columns=None):
        table = take(self, indices, columns=columns)
        taken.append((list(indices), table))
        return table

    monkeypatch.setattr(lance.LanceDataset, "take", spy_take)
    ds = LanceChipDataset(pv_table.uri, split="train")
    taken.clear()
    order = [6, 2, 6, 0]
    samples = ds.__getitems__(order)
    assert [s["uid"] for s in samples] == [ds.uids[i] for i in order]
    ((indices, table),) = taken
    assert indices == sorted({int(ds.indices[i]) for i in order})
    column = table.column("vhr_image_chip")
    assert column.num_chunks == 1
    data = np.frombuffer(column.chunk(0).buffers()[-1], np.uint8)
    for s in samples:
        assert np.shares_memory(s["image"].numpy(), data)
    assert samples[0]["image"].data_ptr() == samples[2]["image"].data_ptr()  # one row, read once


def test_model_batch_converts_once_and_only_uint8(pv_table):
    ds = LanceChipDataset(pv_table.uri, split="train", bands="vhr+msi")
    batch = torch.utils.data.default_collate(ds.__getitems__([0, 1]))
    x = model_batch(batch)
    assert set(x) == {"image", "mask", "uid"}  # msi went into the image
    assert x["image"].shape == (2, 22, 64, 64) and x["mask"].dtype == torch.float32
    again = model_batch(x)
    assert torch.equal(again["image"], x["image"]), "a float batch is left as it is"
    assert torch.equal(batch["image"], torch.stack([s["image"] for s in ds.__getitems__([0, 1])]))
    assert model_batch([1, 2]) == [1, 2]


def test_a_batch_of_chips_of_different_sizes(tmp_path):
    """Rows of two grids in one `take`: each is decoded with its own shape (a view per row)."""
    rows = synthetic_rows(3, cell="c1", size=32, splits=("train",), seed=5) + synthetic_rows(
        3, cell="c2", size=48, splits=("train",), seed=6
    )
    db = str(tmp_path / "lancedb")
    write_training_table(db, rows)
    ds = LanceChipDataset(f"{db}/training_data.lance", split="train")
    by_uid = {r["uid"]: r for r in rows}
    samples = ds.__getitems__(list(range(len(ds))))
    assert {tuple(s["image"].shape[-2:]) for s in samples} == {(32, 32), (48, 48)}
    for s in samples:
        row = by_uid[s["uid"]]
        shape = row["metadata"]["vhr_shape"]
        img = np.frombuffer(row["vhr_image_chip"], np.uint8).reshape(shape)
        np.testing.assert_array_equal(s["image"].numpy(), img)
        mask = np.frombuffer(row["generated_mask"], np.uint8).reshape(shape[1:]) > 0
        np.testing.assert_array_equal(s["mask"][0].numpy(), mask.astype(np.uint8))
