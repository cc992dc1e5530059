from __future__ import annotations

import logging

import pytest
import torch
import torchvision

from flywheel_core.train import encoder_weights as ew
from flywheel_core.train.module import PVSegmentationModule

TORCHVISION_FILE = "resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1 resnet18


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches, and no home cache to fall back on."""
    for var in ("TORCH_HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def _module(**kw):
    return PVSegmentationModule(
        encoder_name="resnet18", encoder_depth=3, decoder_channels=(16, 8, 4), **kw
    )


def test_candidates_name_the_torchvision_timm_and_smp_files():
    cand = ew.candidates("resnet18", "imagenet")
    assert TORCHVISION_FILE in cand.torch_hub_files
    assert "resnet18_a1_0-d63eafa0.pth" in cand.torch_hub_files  # timm's default resnet18
    assert (
        cand.hf_repos[0] == "smp-hub/resnet18.imagenet" and "timm/resnet18.a1_in1k" in cand.hf_repos
    )
    assert "ssl" in ew.known_names("resnet18")


def test_imagenet_from_the_torch_hub_cache(caches):
    torch.manual_seed(3)
    tv = torchvision.models.resnet18()  # random: only the file layout matters here
    folder = caches / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(tv.state_dict(), folder / TORCHVISION_FILE)
    m = _module(in_channels=4, encoder_weights="imagenet")
    assert m.encoder_init == f"imagenet ({folder / TORCHVISION_FILE})"
    enc, want = m.model.encoder, tv.state_dict()
    for key in ("layer1.0.conv1.weight", "layer2.1.bn2.running_var", "bn1.weight"):
        assert torch.equal(enc.state_dict()[key], want[key]), key
    w = want["conv1.weight"]
    torch.testing.assert_close(enc.conv1.weight[:, :3], w * 0.75)
    torch.testing.assert_close(enc.conv1.weight[:, 3], w.mean(1) * 0.75)
    # 4 VHR + 18 MSI channels: every extra channel starts from the RGB mean
    wide = _module(in_channels=22, encoder_weights="imagenet").model.encoder.conv1.weight
    torch.testing.assert_close(
        wide[:, 3:], (w.mean(1, keepdim=True) * 3 / 22).expand(-1, 19, -1, -1)
    )


def test_imagenet_from_the_hugging_face_cache(caches):
    from safetensors.torch import save_file

    torch.manual_seed(4)
    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items() if "fc" not in k}
    snap = caches / "hf" / "hub" / "models--smp-hub--resnet18.imagenet" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    save_file(state, str(snap / "model.safetensors"))
    m = _module(in_channels=3, encoder_weights="imagenet")
    assert m.encoder_init == f"imagenet ({snap / 'model.safetensors'})"
    assert torch.equal(m.model.encoder.conv1.weight, state["conv1.weight"])


def test_absent_weights_warn_and_stay_random(caches, caplog):
    with caplog.at_level(logging.WARNING, logger="flywheel_core.train.encoder_weights"):
        torch.manual_seed(0)
        m = _module(in_channels=4, encoder_weights="imagenet")
    assert m.encoder_init.startswith("random (imagenet weights not found in ")
    assert m.encoder_init.endswith(": offline)") and str(caches / "torch") in m.encoder_init
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert TORCHVISION_FILE in warning and "models--smp-hub--resnet18.imagenet" in warning
    torch.manual_seed(0)
    assert torch.equal(
        m.model.encoder.conv1.weight, _module(in_channels=4).model.encoder.conv1.weight
    )
    assert _module(in_channels=4).encoder_init == "random"


def test_unknown_names_are_an_error(caches):
    with pytest.raises(FileNotFoundError, match="imagenet"):
        _module(encoder_weights="instagram")
