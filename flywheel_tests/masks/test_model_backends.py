"""Model back ends on tiny random-weight models written to temp folders (no hub, no download)."""

from __future__ import annotations

import json
import shutil
import socket
import uuid

import numpy as np
import pytest
import torch
from shapely.geometry import Point, Polygon, box

from flywheel_core.compute import ModelKey, model_cache
from flywheel_core.masks.backends.prompting import (
    ModelWeightsNotFoundError,
    best_candidate,
    predicted_iou,
    sam_prompt,
    stability_score,
)
from flywheel_core.masks.types import Prompt, RawMask
from flywheel_resources import gpu as gpu_module
from flywheel_resources.gpu import GPUResource

HAS_ACCELERATOR = torch.cuda.is_available() or bool(
    getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
)
NO_POINTS = np.zeros((0, 2))
NO_LABELS = np.zeros(0, dtype=np.int64)


def _chip(size: int = 256) -> np.ndarray:
    """An RGB+NIR chip: dark background, one bright 'panel' rectangle."""
    rng = np.random.default_rng(7)
    img = rng.integers(20, 60, (size, size, 4), dtype=np.uint8)
    img[60:120, 50:150, :3] = 200
    return img


def _box_prompt() -> Prompt:
    return Prompt(
        "box-1", "box", (50, 60, 150, 120), NO_POINTS, NO_LABELS, box(50, 60, 150, 120), "polygon"
    )


def _point_prompt() -> Prompt:
    return Prompt(
        "point-1",
        "point",
        (190, 190, 210, 210),
        np.array([[200.0, 200.0]]),
        np.array([1]),
        Point(200, 200).buffer(10),
        "point",
    )


def _polygon_prompt() -> Prompt:
    region = Polygon([(20, 150), (120, 150), (120, 240), (20, 240)])
    return Prompt(
        "poly-1",
        "polygon",
        (20, 150, 120, 240),
        np.array([[70.0, 195.0], [5.0, 5.0]]),
        np.array([1, 0]),
        region,
        "polygon",
    )


def _check_masks(masks: list[RawMask], n: int, shape: tuple[int, int]) -> None:
    assert len(masks) == n
    for m in masks:
        assert isinstance(m, RawMask)
        assert m.mask.shape == shape and m.mask.dtype == np.bool_
        assert m.predicted_iou is None or 0.0 <= m.predicted_iou <= 1.0
        if m.predicted_iou is not None:
            assert np.isfinite(m.extra["predicted_iou_raw"])
        assert m.stability_score is not None and 0.0 <= m.stability_score <= 1.0


# --- shared prompt helpers ------------------------------------------------------------------


def test_prompts_become_sam_inputs():
    b = sam_prompt(_box_prompt())
    assert b.points is None and b.box.tolist() == [50, 60, 150, 120]
    p = sam_prompt(_point_prompt())
    assert p.box is None and p.points.shape == (1, 2) and p.labels.tolist() == [1]
    g = sam_prompt(_polygon_prompt())
    assert g.box.tolist() == [20, 150, 120, 240]
    assert g.points.shape == (2, 2) and g.labels.tolist() == [1, 0]


def test_stability_score_and_candidate_choice():
    logits = np.array([[-3.0, -0.5, 0.5, 3.0]])
    # > +1: one pixel; > -1: three pixels
    assert stability_score(logits) == pytest.approx(1 / 3)
    assert stability_score(np.full((4, 4), -5.0)) == 0.0
    assert stability_score(np.full((4, 4), 5.0)) == 1.0
    assert best_candidate(np.array([0.1, np.nan, 0.7])) == 2
    assert predicted_iou(1.3) == 1.0 and predicted_iou(-0.2) == 0.0
    assert predicted_iou(float("nan")) is None


# --- the GPU resource -----------------------------------------------------------------------


@pytest.mark.skipif(HAS_ACCELERATOR, reason="this machine has a GPU")
def test_gpu_resource_describes_the_cpu(monkeypatch, caplog):
    monkeypatch.setattr(gpu_module, "_fallback_logged", set())
    resource = GPUResource(precision="fp16", model_dir="/models")
    with caplog.at_level("WARNING", logger=gpu_module.__name__):
        info = resource.describe()
        resource.describe()
    assert info["device_requested"] == "auto" and info["device"] == "cpu"
    assert "no CUDA or MPS device" in str(info["device_reason"])
    assert info["dtype"] == "float32" and "falling back" in str(info["dtype_reason"])
    assert info["batch_size"] == 8
    assert resource.torch_device() == torch.device("cpu")
    assert resource.torch_dtype() == torch.float32
    fallbacks = [r for r in caplog.records if "resolved to the CPU" in r.getMessage()]
    assert len(fallbacks) == 1
    assert resource.model_path("sam").as_posix() == "/models/sam"


def test_gpu_resource_loads_each_model_once():
    resource = GPUResource(device="cpu")
    model_id = f"test-{uuid.uuid4()}"
    calls = []

    def loader(device, dtype):
        calls.append((device, dtype))
        return object()

    first = resource.load("test", model_id, loader)
    assert resource.load("test", model_id, loader) is first
    assert calls == [(torch.device("cpu"), torch.float32)]
    key = ModelKey("test", model_id, "cpu", "torch.float32")
    assert model_cache().load_count(key) == 1
    model_cache().evict(key)


# --- transformers ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sam", "sam2"])
def tiny_hf_model(request, tmp_path_factory):
    from flywheel_core.masks.backends.hf_sam import write_tiny_sam

    folder = tmp_path_factory.mktemp(f"tiny-{request.param}") / "model"
    return request.param, write_tiny_sam(folder, kind=request.param)


def test_transformers_backend_segments_every_prompt(tiny_hf_model):
    from flywheel_core.masks.backends.hf_sam import TransformersSamBackend

    kind, folder = tiny_hf_model
    backend = TransformersSamBackend(folder, device="cpu", dtype="fp32")
    assert backend.name == "transformers" and backend.model_type == kind
    assert backend.trained is False
    assert str(folder.resolve()) == backend.model_id

    encodings = []
    encode = backend._model.get_image_embeddings

    def counting_encode(*args, **kwargs):
        encodings.append(1)
        return encode(*args, **kwargs)

    backend._model.get_image_embeddings = counting_encode
    prompts = [_box_prompt(), _point_prompt(), _polygon_prompt()]
    masks = backend.segment(_chip(), prompts)
    _check_masks(masks, 3, (256, 256))
    assert len(encodings) == 1  # one image embedding for the chip, three decodes
    assert backend.segment(_chip(), []) == []


def test_transformers_backend_trusts_unmarked_weights(tiny_hf_model, tmp_path):
    from flywheel_core.masks.backends.hf_sam import TransformersSamBackend

    _, folder = tiny_hf_model
    copy = shutil.copytree(folder, tmp_path / "trained")
    config = json.loads((copy / "config.json").read_text())
    del config["flywheel_random_weights"]
    (copy / "config.json").write_text(json.dumps(config))
    assert TransformersSamBackend(copy).trained is True


def test_transformers_backend_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    from flywheel_core.masks.backends.hf_sam import TransformersSamBackend

    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelWeightsNotFoundError, match="no-such-model") as err:
        TransformersSamBackend(missing)
    assert "save_pretrained" in str(err.value) and "write_tiny_sam" in str(err.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelWeightsNotFoundError, match=r"no config\.json"):
        TransformersSamBackend(tmp_path / "empty")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelWeightsNotFoundError, match="facebook/sam-vit-base"):
        TransformersSamBackend("facebook/sam-vit-base")


# --- samgeo ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_vit_b(tmp_path_factory):
    from flywheel_core.masks.backends.samgeo_sam import write_random_sam_checkpoint

    return write_random_sam_checkpoint(tmp_path_factory.mktemp("sam") / "sam_vit_b.pth")


@pytest.mark.slow
def test_samgeo_backend_segments_box_and_point_prompts(random_vit_b):
    from flywheel_core.masks.backends.samgeo_sam import SamGeoBackend

    assert json.loads(random_vit_b.with_name("sam_vit_b.pth.flywheel.json").read_text())[
        "random_weights"
    ]
    backend = SamGeoBackend(random_vit_b, model_type="vit_b", device="cpu")
    assert backend.name == "samgeo" and backend.model_id == "samgeo:vit_b:sam_vit_b.pth"
    assert backend.trained is False
    masks = backend.segment(_chip(), [_box_prompt(), _point_prompt()])
    _check_masks(masks, 2, (256, 256))


def test_samgeo_missing_checkpoint_is_a_clear_error_before_samgeo(tmp_path):
    from flywheel_core.masks.backends.samgeo_sam import SamGeoBackend

    missing = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(ModelWeightsNotFoundError, match="SAM checkpoint not found") as err:
        SamGeoBackend(missing)
    assert str(missing) in str(err.value) and "write_random_sam_checkpoint" in str(err.value)
    assert not missing.exists()


@pytest.mark.slow
def test_samgeo_missing_checkpoint_never_downloads(tmp_path, monkeypatch):
    import samgeo.common
    import samgeo.samgeo

    from flywheel_core.masks.backends.samgeo_sam import SamGeoBackend

    def no_download(*args, **kwargs):
        raise AssertionError(f"samgeo tried to download a checkpoint: {args} {kwargs}")

    def no_network(*args, **kwargs):
        raise AssertionError(f"network call: {args}")

    monkeypatch.setattr(samgeo.common, "download_checkpoint", no_download)
    monkeypatch.setattr(samgeo.samgeo, "download_checkpoint", no_download)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    missing = tmp_path / "models" / "sam_vit_b_01ec64.pth"
    with pytest.raises(ModelWeightsNotFoundError, match="Nothing is downloaded at run time"):
        SamGeoBackend(missing, model_type="vit_b")
    with pytest.raises(ValueError, match="unknown SAM model type"):
        SamGeoBackend(missing, model_type="vit_x")
