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


def _corner_chip(size: int = 64):
    """A chip whose only panel pixels sit in one corner: a uniform crop rarely holds them."""
    img = torch.rand(4, size, size, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, size, size)
    mask[0, :2, :2] = 1
    return {"image": img, "mask": mask, "uid": "corner"}


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 1.0])
def test_positive_aware_crops_hold_panels_at_the_set_rate(p):
    aug = D4Augment(generator=torch.Generator().manual_seed(3), crop_size=16, positive_crop_prob=p)
    s = _corner_chip()
    n = 2000
    hits = sum(bool(aug(s)["mask"].any()) for _ in range(n))
    # uniform 16² windows of a 64² chip hold the 2×2 corner with chance 4/49² (≈0.2 %)
    assert abs(hits / n - p) < 0.04, (p, hits / n)


def test_positive_crops_cover_every_window_holding_the_pixel():
    aug = D4Augment(
        generator=torch.Generator().manual_seed(4), crop_size=8, d4=False, positive_crop_prob=1.0
    )
    img = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 32, 32)
    mask = torch.zeros(1, 32, 32)
    mask[0, 20, 10] = 1
    corners = set()
    for _ in range(1000):
        out = aug({"image": img, "mask": mask})
        assert out["mask"].sum() == 1 and torch.equal(
            out["image"][0] == 20 * 32 + 10, out["mask"][0] > 0
        )
        v = int(out["image"][0, 0, 0])
        corners.add((v // 32, v % 32))
    # the pixel (20, 10) is in windows with top 13..20 and left 3..10: all 64 reached
    assert corners == {(t, left) for t in range(13, 21) for left in range(3, 11)}


def test_a_chip_without_panels_gets_a_uniform_crop():
    aug = D4Augment(generator=torch.Generator().manual_seed(5), crop_size=4, positive_crop_prob=1.0)
    s = _sample()
    s["mask"] = torch.zeros_like(s["mask"])
    assert all(aug(s)["image"].shape == (3, 4, 4) for _ in range(20))


def test_the_per_sample_generator_decides_and_compose_shares_it():
    from flywheel_core.train.augment import Compose
    from flywheel_core.train.photometric import PhotometricAugment

    s = _corner_chip()
    pipe = Compose([D4Augment(crop_size=16, positive_crop_prob=0.5), PhotometricAugment()])
    a = pipe(s, torch.Generator().manual_seed(11))
    torch.manual_seed(0)  # the global RNG plays no part when a generator is passed
    b = pipe(s, torch.Generator().manual_seed(11))
    c = pipe(s, torch.Generator().manual_seed(12))
    assert torch.equal(a["image"], b["image"]) and a["d4"] == b["d4"]
    assert not torch.equal(a["image"], c["image"])


def test_uint8_chips_and_msi_channels_move_with_the_mask():
    """The loader augments uint8 chips (and float MSI on the same grid): the same crop and D4
    transform for all three, the dtypes kept, and the result the float path's."""
    s = _sample(size=16)
    image = s["image"].remainder(251).to(torch.uint8)  # channel 0 still holds mask * 100
    u8 = {"image": image, "mask": s["mask"].to(torch.uint8), "msi": image[:2] * 0.5, "uid": "u"}
    aug = D4Augment(crop_size=8, positive_crop_prob=0.5)
    for seed in range(30):
        a = aug(u8, torch.Generator().manual_seed(seed))
        f = aug({**u8, "image": u8["image"].float()}, torch.Generator().manual_seed(seed))
        assert a["image"].dtype == torch.uint8 and a["mask"].dtype == torch.uint8
        assert a["msi"].shape == (2, 8, 8) and a["msi"].dtype == torch.float32
        assert torch.equal(a["image"].float(), f["image"]) and a["d4"] == f["d4"]
        assert torch.equal(a["msi"], a["image"][:2] * 0.5)
        assert torch.equal(a["image"][0], a["mask"][0] * 100)
