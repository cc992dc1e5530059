"""Loading DINOv3: the tiny offline model, local folders, hub ids offline, statistics."""

import json

import pytest
import torch

from flywheel_core.embed.dinov3 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAT_MEAN,
    SAT_STD,
    TINY_MODEL_ID,
    DinoModelNotFoundError,
    load_dinov3,
    normalisation_for,
    save_tiny,
)


@pytest.fixture(scope="module")
def tiny():
    return load_dinov3("tiny")


def test_tiny_is_the_real_architecture_small_random_and_marked(tiny):
    from transformers import DINOv3ViTModel

    assert isinstance(tiny.model, DINOv3ViTModel)
    assert not tiny.model.training
    assert tiny.trained is False and tiny.model_id == TINY_MODEL_ID
    assert 32 <= tiny.dim <= 64 and tiny.patch_size == 16
    assert tiny.num_register_tokens == 4
    assert (tiny.mean, tiny.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_tiny_weights_are_identical_on_every_load(tiny):
    again = load_dinov3(None)
    for (name, a), (_, b) in zip(
        tiny.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("facebook/dinov3-vitl16-pretrain-sat493m", (SAT_MEAN, SAT_STD)),
        ("/models/DINOv3-ViT7B16-Pretrain-SAT493M", (SAT_MEAN, SAT_STD)),
        ("facebook/dinov3-vits16-pretrain-lvd1689m", (IMAGENET_MEAN, IMAGENET_STD)),
        ("facebook/dinov3-vitb16-pretrain-lvd1689m", (IMAGENET_MEAN, IMAGENET_STD)),
    ],
)
def test_statistics_follow_the_pretraining_data(name, expected):
    assert normalisation_for(name) == expected


def test_statistics_can_be_overridden():
    dino = load_dinov3("tiny", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert dino.mean == (0.5, 0.5, 0.5) and dino.std == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError, match="3 values"):
        load_dinov3("tiny", mean=(0.5,), std=(0.25,))


def test_hub_id_offline_says_so_and_what_to_do(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(DinoModelNotFoundError) as err:
        load_dinov3("facebook/dinov3-vitl16-pretrain-sat493m")
    message = str(err.value)
    assert "facebook/dinov3-vitl16-pretrain-sat493m" in message
    assert "offline" in message and "local folder" in message and "'tiny'" in message


def test_local_folder_loads_and_keeps_the_random_mark(tiny, tmp_path):
    folder = save_tiny(tmp_path / "tiny")
    loaded = load_dinov3(str(folder))
    assert loaded.trained is False and loaded.model_id == TINY_MODEL_ID
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        a = tiny.model(pixel_values=x).last_hidden_state
        b = loaded.model(pixel_values=x).last_hidden_state
    assert torch.allclose(a, b)


def test_folder_named_for_a_satellite_checkpoint_gets_its_statistics(tmp_path):
    folder = save_tiny(tmp_path / "dinov3-vitl16-pretrain-sat493m")
    config = json.loads((folder / "config.json").read_text())
    config.pop("flywheel_random_weights")
    config["_name_or_path"] = "facebook/dinov3-vitl16-pretrain-sat493m"
    (folder / "config.json").write_text(json.dumps(config))
    dino = load_dinov3(str(folder))
    assert dino.trained is True
    assert dino.model_id == str(folder.resolve())
    assert (dino.mean, dino.std) == (SAT_MEAN, SAT_STD)


def test_bad_sources_fail_clearly(tmp_path):
    with pytest.raises(DinoModelNotFoundError, match="does not exist"):
        load_dinov3(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DinoModelNotFoundError, match=r"no config\.json"):
        load_dinov3(str(tmp_path / "empty"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "sam"}')
    with pytest.raises(ValueError, match="dinov3_vit"):
        load_dinov3(str(tmp_path / "other"))
