from __future__ import annotations

import pytest
import torch

from flywheel_core.train.augment import D4_SIZE, D4Augment, d4, d4_inverse


def _sample(size: int = 8):
    # an asymmetric pattern: every D4 transform of it is distinct
    img = torch.arange(3 * size * size, dtype=torch.float32).reshape(3, size, size)
    mask = torch.zeros(1, size, size)
    mask[0, 0, 1:3] = 1
    mask[0, 1, 1] = 1
    img[0] = mask[0] * 100  # channel 0 carries the mask, so alignment is checkable
    return {"image": img, "mask": mask, "uid": "u"}


def test_the_eight_transforms_are_distinct_and_invertible():
    s = _sample()
    outs = [d4(s["image"], i) for i in range(D4_SIZE)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    for i, o in enumerate(outs):
        assert torch.equal(d4_inverse(o, i), s["image"])
    assert torch.equal(outs[1], torch.rot90(s["image"], 1, (-2, -1)))
    assert torch.equal(outs[4], torch.flip(s["image"], (-1,)))
    with pytest.raises(ValueError):
        d4(s["image"], 8)


def test_image_and_mask_move_together_and_all_eight_are_reached():
    aug = D4Augment(generator=torch.Generator().manual_seed(0))
    s = _sample()
    seen = set()
    for _ in range(200):
        out = aug(s)
        assert torch.equal(out["image"][0], out["mask"][0] * 100)
        assert torch.equal(out["image"], d4(s["image"], out["d4"]))
        assert torch.equal(out["mask"], d4(s["mask"], out["d4"]))
        assert out["uid"] == "u"
        seen.add(out["d4"])
    assert seen == set(range(D4_SIZE))
    # the input is never modified in place
    assert torch.equal(s["image"], _sample()["image"])


def test_same_seed_same_draws():
    a = D4Augment(generator=torch.Generator().manual_seed(7), crop_size=5)
    b = D4Augment(generator=torch.Generator().manual_seed(7), crop_size=5)
    s = _sample()
    for _ in range(20):
        x, y = a(s), b(s)
        assert x["d4"] == y["d4"] and torch.equal(x["image"], y["image"])


def test_random_crop_cuts_the_same_window():
    aug = D4Augment(generator=torch.Generator().manual_seed(1), crop_size=4, d4=False)
    s = _sample()
    corners = set()
    for _ in range(100):
        out = aug(s)
        assert out["image"].shape == (3, 4, 4) and out["mask"].shape == (1, 4, 4)
        assert torch.equal(out["image"][0], out["mask"][0] * 100)
        # locate the window through the unique values of channel 1
        v = int(out["image"][1, 0, 0].item()) - 64
        corners.add((v // 8, v % 8))
    assert len(corners) > 10 and all(0 <= r <= 4 and 0 <= c <= 4 for r, c in corners)
    assert D4Augment(crop_size=16)(s)["image"].shape == (3, 8, 8)  # larger than the chip: no-op
