from __future__ import annotations

import pickle

import lance
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flywheel_core.train.dataset import LanceChipDataset, row_filter
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
        assert s["image"].dtype == torch.float32 and s["image"].shape == (4, 64, 64)
        assert s["mask"].dtype == torch.float32 and s["mask"].shape == (1, 64, 64)
        img = np.frombuffer(row["vhr_image_chip"], np.uint8).reshape(4, 64, 64)
        np.testing.assert_allclose(s["image"].numpy(), img / 255.0, atol=1e-6)
        mask = np.frombuffer(row["generated_mask"], np.uint8).reshape(64, 64)
        np.testing.assert_array_equal(s["mask"][0].numpy(), mask.astype(np.float32))
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
    assert s["image"].shape == (22, 64, 64)
    row = next(r for r in pv_table.rows if r["uid"] == s["uid"])
    msi = np.frombuffer(row["msi_image_chip"], np.float32).reshape(18, 2, 2)
    # bilinear resampling keeps the channel mean and range of a 2x2 grid
    assert s["image"][4:].amin(dim=(1, 2)).numpy() == pytest.approx(msi.min(axis=(1, 2)), abs=1e-5)
    assert s["image"][4:].amax(dim=(1, 2)).numpy() == pytest.approx(msi.max(axis=(1, 2)), abs=1e-5)
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
