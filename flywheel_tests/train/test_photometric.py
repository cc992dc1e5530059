from __future__ import annotations

import pytest
import torch

from flywheel_core.train.photometric import PARAMS, PhotometricAugment, apply_photometric


def _sample(channels: int = 22, size: int = 32):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(channels, size, size, generator=g) * 0.8 + 0.1
    mask = (torch.rand(1, size, size, generator=g) > 0.7).float()
    return {"image": image, "mask": mask, "uid": "u"}


def test_only_vhr_channels_change_and_the_mask_is_kept():
    aug = PhotometricAugment(vhr_channels=4, p=1.0)
    s = _sample()
    before = s["image"].clone()
    changed = 0
    for seed in range(50):
        out = aug(s, torch.Generator().manual_seed(seed))
        assert out["image"].shape == s["image"].shape
        assert torch.equal(out["image"][4:], s["image"][4:]), "MSI channels untouched"
        assert torch.equal(out["mask"], s["mask"]) and out["uid"] == "u"
        assert float(out["image"][:4].min()) >= 0 and float(out["image"][:4].max()) <= 1
        changed += not torch.allclose(out["image"][:4], s["image"][:4], atol=1e-3)
    assert changed == 50
    assert torch.equal(s["image"], before), "the input is not modified in place"


def test_seeded_draws_are_reproducible():
    aug = PhotometricAugment()
    s = _sample(channels=4)
    a = aug(s, torch.Generator().manual_seed(7))["image"]
    torch.manual_seed(123)
    b = aug(s, torch.Generator().manual_seed(7))["image"]
    c = aug(s, torch.Generator().manual_seed(8))["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the constructor's generator is used when none comes with the sample
    x = PhotometricAugment(generator=torch.Generator().manual_seed(7))(s)["image"]
    assert torch.equal(x, a)


def test_brightness_varies_across_samples_within_the_ranges():
    aug = PhotometricAugment(vhr_channels=4, p=1.0, noise_std=(0.0, 0.0), haze=(0.0, 0.0))
    s = {"image": torch.full((4, 16, 16), 0.5), "mask": torch.zeros(1, 16, 16)}
    means = torch.tensor(
        [float(aug(s, torch.Generator().manual_seed(i))["image"].mean()) for i in range(300)]
    )
    # gamma 0.7..1.4 and gain 0.7..1.4 of a mid-grey: from about 0.26 to 0.86
    assert 0.2 < float(means.min()) < 0.4 and 0.7 < float(means.max()) <= 1.0
    assert float(means.std()) > 0.08


def test_p_zero_is_the_identity():
    s = _sample(channels=4)
    out = PhotometricAugment(p=0.0)(s, torch.Generator().manual_seed(1))
    assert torch.allclose(out["image"], s["image"], atol=1e-6)


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError):
        PhotometricAugment(gamma=(0.0, 1.0))
    with pytest.raises(ValueError):
        PhotometricAugment(vhr_channels=0)


def _uint8_sample(size: int = 32):
    g = torch.Generator().manual_seed(3)
    image = torch.randint(20, 230, (4, size, size), generator=g, dtype=torch.uint8)
    return {"image": image, "mask": torch.zeros(1, size, size, dtype=torch.uint8), "uid": "u"}


def test_a_uint8_chip_carries_its_draw_and_gets_the_float_change_later():
    """The loader's path: drawn per sample on the CPU, applied to the float batch after the
    transfer. Same generator, same numbers as changing the float sample at once."""
    aug = PhotometricAugment(p=1.0)
    s = _uint8_sample()
    deferred = aug(s, torch.Generator().manual_seed(5))
    assert torch.equal(deferred["image"], s["image"]), "the uint8 pixels are not touched"
    params, seed = deferred["photometric"], deferred["photometric_seed"]
    assert params.shape == (len(PARAMS) + 2 * 4,) and isinstance(seed, int)
    x = s["image"].float() / 255
    now = aug({**s, "image": x}, torch.Generator().manual_seed(5))["image"]
    later = apply_photometric(x[None], params[None], torch.tensor([seed]))[0]
    assert torch.equal(now, later) and not torch.allclose(later, x, atol=1e-3)


def test_a_batch_applies_each_sample_its_own_draw():
    aug = PhotometricAugment(vhr_channels=4, p=1.0)
    samples = [aug(_uint8_sample(), torch.Generator().manual_seed(i)) for i in range(3)]
    x = torch.stack([s["image"] for s in samples]).float() / 255
    msi = torch.rand(3, 2, 32, 32)
    params = torch.stack([s["photometric"] for s in samples])
    seeds = torch.tensor([s["photometric_seed"] for s in samples])
    out = apply_photometric(torch.cat([x, msi], dim=1), params, seeds)
    assert torch.equal(out[:, 4:], msi), "channels after the VHR ones are kept"
    for b in range(3):
        one = apply_photometric(x[b : b + 1], params[b : b + 1], seeds[b : b + 1])[0]
        torch.testing.assert_close(out[b, :4], one, rtol=0, atol=1e-6)
    assert not torch.allclose(out[0, :4], out[1, :4], atol=1e-2)
    # identity parameters (p = 0) change nothing
    still = PhotometricAugment(p=0.0)(_uint8_sample(), torch.Generator().manual_seed(1))
    same = apply_photometric(x[:1], still["photometric"][None], seeds[:1])
    assert torch.equal(same, x[:1])
    with pytest.raises(ValueError, match="photometric parameters"):
        apply_photometric(x, params[:, :6], seeds)
