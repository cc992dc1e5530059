from __future__ import annotations

import numpy as np
import pytest
from shapely import wkb
from shapely.geometry import box

from flywheel_core.masks.factory import pack
from flywheel_core.train.samples import TRAINING_SCHEMA, SampleSettings, build_samples
from flywheel_core.train.splits import block_of, split_of

H = W = 32


PANEL = np.array([57, 70, 82, 45], np.float32)


def _chip(
    i: int, lon: float, lat: float, pv_like: bool = False, panel=PANEL, day="2024-06-01"
) -> dict:
    rng = np.random.default_rng(i)
    img = np.zeros((4, H, W), np.float32)
    img[:] = np.array([60, 110, 50, 180], np.float32)[:, None, None]
    if pv_like:
        img[:, 4:20, 4:20] = np.asarray(panel, np.float32)[:, None, None]
    if i == 0:  # the labelled chip: panels under its masks
        img[:, 2:6, 2:6] = np.asarray(panel, np.float32)[:, None, None]
    img = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
    return {
        "chip_id": f"c|{day}|r{i:05d}c00000",
        "cell": "c",
        "date": "2024-06-01",
        "image": img.tobytes(),
        "bands": 4,
        "height": H,
        "width": W,
        "dtype": "uint8",
        "band_names": ["red", "green", "blue", "nir"],
        "center_lon": lon,
        "center_lat": lat,
        "s2_token": "x",
        "s2_token_level": 17,
        "h3_cell": "h",
        "sensor": "synthetic-vhr",
        "crs": "EPSG:32632",
        "transform": [0.3125, 0, 0, 0, -0.3125, 0],
        "gsd_m": 0.3125,
        "footprint": wkb.dumps(box(lon, lat, lon + 1e-4, lat + 1e-4)),
    }


def _msi(chip_id: str) -> dict:
    return {
        "chip_id": chip_id,
        "height": 2,
        "width": 2,
        "band_names": ["B02", "B03"],
        "index_names": ["ndvi"],
        "reflectance": np.ones((2, 2, 2), np.float32).tobytes(),
        "indices": np.zeros((1, 2, 2), np.float32).tobytes(),
        "sensor": "synthetic-s2-l2a",
        "gsd_m": 10.0,
        "cloud_fraction": 0.0,
    }


def _mask(chip_id: str, label: str, accepted: bool) -> dict:
    m = np.zeros((H, W), bool)
    m[2:6, 2:6] = True
    return {
        "chip_id": chip_id,
        "label_id": label,
        "accepted": accepted,
        "mask": pack(m),
        "height": H,
        "width": W,
        "prompt_geometry": wkb.dumps(box(0, 0, 1e-5, 1e-5)),
        "backend": "classical",
        "model_id": "m",
        "weights": "none",
        "iou_with_prompt": 0.8,
        "predicted_iou": None,
        "stability_score": 0.9,
        "area_ratio": 1.0,
        "mask_area_m2": 1.5,
    }


def test_positives_negatives_and_ambiguous_chips():
    chips = [_chip(i, 11.58 + i * 1e-3, 48.14) for i in range(6)] + [
        _chip(6, 11.6, 48.1, pv_like=True)
    ]
    msi = [_msi(c["chip_id"]) for c in chips]
    masks = [
        _mask(chips[0]["chip_id"], "a", True),
        _mask(chips[0]["chip_id"], "b", True),
        _mask(chips[1]["chip_id"], "c", False),  # ambiguous: left out
    ]
    rows, counts = build_samples(
        chips, msi, masks, SampleSettings(negative_ratio=2.0), split_level=16
    )
    assert counts["positives"] == 1 and counts["ambiguous"] == 1 and counts["negatives"] == 2
    assert counts["pv_like_unlabeled"] == 1  # the unlabeled chip with panels is not a negative
    pos = next(r for r in rows if not r["metadata"]["negative"])
    mask = np.frombuffer(pos["generated_mask"], np.uint8).reshape(H, W)
    assert mask.sum() == 16 and len(pos["metadata"]["mask_qa"]) == 2
    assert np.frombuffer(pos["msi_image_chip"], np.float32).size == 3 * 2 * 2
    import pyarrow as pa

    table = pa.Table.from_pylist(rows, schema=TRAINING_SCHEMA)
    assert set(TRAINING_SCHEMA.names) >= {
        "uuid",
        "prompt_geometry",
        "vhr_image_chip",
        "generated_mask",
        "msi_image_chip",
        "metadata",
    }
    again, _ = build_samples(chips, msi, masks, SampleSettings(negative_ratio=2.0), split_level=16)
    assert [r["uuid"] for r in again] == table["uuid"].to_pylist()


def test_no_block_in_two_splits_and_fractions_hold():
    rng = np.random.default_rng(0)
    lons, lats = rng.uniform(11.0, 12.0, 4000), rng.uniform(48.0, 48.5, 4000)
    by_block: dict[str, set[str]] = {}
    for lon, lat in zip(lons, lats, strict=True):
        block = block_of(lon, lat, 13)
        by_block.setdefault(block, set()).add(split_of(block))
    assert all(len(s) == 1 for s in by_block.values())
    shares = {
        k: sum(next(iter(s)) == k for s in by_block.values()) / len(by_block)
        for k in ("train", "val", "test")
    }
    assert len(by_block) > 300
    assert shares["train"] == pytest.approx(0.7, abs=0.07) and shares["test"] == pytest.approx(
        0.15, abs=0.05
    )


def test_bad_fractions_fail():
    with pytest.raises(ValueError, match="sum to 1"):
        split_of("abc", (0.5, 0.2, 0.2))


def _candidate(neighbour_uid: str, distance: float, cid: str) -> dict:
    return {
        "candidate_id": cid,
        "reason": "rejected: vhr_spectra",
        "round": 1,
        "neighbour_uid": neighbour_uid,
        "distance": distance,
    }


def test_hard_negatives_are_candidate_places_without_labels_with_provenance():
    chips = [_chip(i, 11.58 + i * 1e-3, 48.14, pv_like=i in (2, 3)) for i in range(6)]
    msi = [_msi(c["chip_id"]) for c in chips]
    masks = [_mask(chips[0]["chip_id"], "a", True), _mask(chips[0]["chip_id"], "b", True)]
    # Recorded by round 1 on May's chips; this partition is June: same places, other date.
    candidates = [
        _candidate("c|2024-05-01|r00002c00000", 0.10, "k1"),
        _candidate("c|2024-05-01|r00003c00000", 0.05, "k2"),
        _candidate("c|2024-05-01|r00003c00000", 0.20, "k3"),
        _candidate("c|2024-05-01|r00000c00000", 0.01, "k4"),  # the labelled chip: never negative
    ]
    rows, counts = build_samples(
        chips, msi, masks, SampleSettings(hard_negative_ratio=1.0), 16, hard_candidates=candidates
    )
    hard = [r for r in rows if r["metadata"]["negative_source"] == "hard"]
    assert counts["hard_negatives"] == 1 and len(hard) == 1  # one per positive
    (h,) = hard
    assert h["uid"] == chips[3]["chip_id"]  # nearest candidate first
    assert h["metadata"]["hard_negative"]["candidate_ids"] == ["k2", "k3"]
    assert h["metadata"]["hard_negative"]["rounds"] == [1]
    assert h["metadata"]["hard_negative"]["min_distance"] == pytest.approx(0.05)
    assert not np.frombuffer(h["generated_mask"], np.uint8).any()
    clean = [r for r in rows if r["metadata"]["negative_source"] == "clean"]
    assert clean and all(r["metadata"]["hard_negative"] is None for r in clean)
    assert chips[2]["chip_id"] not in {r["uid"] for r in clean}  # a candidate place, PV-like


def test_pv_like_follows_the_labelled_panels_whatever_their_colour():
    thin = np.array([52, 54, 53, 50], np.float32)  # thin film: no blue excess, no NIR drop
    chips = [_chip(i, 11.58 + i * 1e-3, 48.14, pv_like=i == 2, panel=thin) for i in range(5)]
    msi = [_msi(c["chip_id"]) for c in chips]
    masks = [_mask(chips[0]["chip_id"], "a", True), _mask(chips[0]["chip_id"], "b", True)]
    rows, counts = build_samples(chips, msi, masks, SampleSettings(), 16)
    assert counts["pv_like"].startswith("mahalanobis")
    assert counts["pv_like_unlabeled"] == 1  # the unlabelled thin-film chip is no negative
    assert chips[2]["chip_id"] not in {r["uid"] for r in rows}
    # Without the calibration (no accepted mask), the default DN score would take it.
    _, default = build_samples(chips, msi, [], SampleSettings(), 16)
    assert default["pv_like"].startswith("default") and default["pv_like_unlabeled"] == 0
