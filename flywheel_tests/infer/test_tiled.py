"""Tiled inference: no seams, exact tile placement, memory bounded independently of scene height,
a valid COG."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import transform as window_transform

from flywheel_core.infer.tiled import (
    PROBABILITY_SCALE,
    blend_weights,
    predict_raster,
    reflect_index,
    torch_predictor,
)
from flywheel_tests.infer.scenes import CRS, TRANSFORM, write_scene

QUANTUM = 1.0 / 255.0


def _conv_model() -> torch.nn.Module:
    """Fully convolutional, receptive field 5x5 (radius 2 px): far smaller than the overlap."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 1, 3, padding=1),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(6.0)  # spread the logits so the probabilities are not all ~0.5
    return model.eval()


def _read_prob(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1).astype(np.float64) * QUANTUM


@pytest.fixture(scope="module")
def conv_scene(tmp_path_factory):
    """A 300 x 200 random 3-band scene, the model, and its whole-image probabilities."""
    tmp = tmp_path_factory.mktemp("conv")
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(3, 200, 300), dtype=np.uint8)
    src = write_scene(tmp / "scene.tif", data)
    model = _conv_model()
    with torch.no_grad():
        x = torch.from_numpy(data.astype(np.float32) / 255.0)[None]
        whole = torch.sigmoid(model(x))[0, 0].double().numpy()
    return tmp, src, model, whole


def test_blend_window_is_positive_and_a_partition_of_unity():
    assert blend_weights(64, 16).max() == 1.0  # flat centre
    w = blend_weights(64, 32)
    assert w.min() > 0
    # Two tiles overlapping by 32 px: their ramps sum to 1 (up to the floor) across the overlap.
    assert np.allclose(w[32:] + w[:32], 1.0, atol=2e-3)


def test_reflect_index_matches_numpy_reflect():
    for n in (1, 2, 5, 17):
        idx = np.arange(-40, n + 40)
        expected = np.pad(np.arange(n), 40, mode="reflect") if n > 1 else np.zeros(n + 80, int)
        assert np.array_equal(reflect_index(idx, n), expected)


def test_no_seams_vs_whole_image(conv_scene):
    tmp, src, model, whole = conv_scene
    assert whole.std() > 0.1  # the comparison means something
    res = predict_raster(
        src, tmp / "tiled.tif", torch_predictor(model, "cpu"), tile=64, overlap=32, batch_size=5
    )
    assert res.tiles == 7 * 10  # ceil(200/32) x ceil(300/32)
    diff = np.abs(_read_prob(res.path) - whole)
    # Inside the scene the tiled result must equal the whole-image run up to the uint8 rounding
    # (<= 0.5/255) plus the px next to tile edges, where each tile's own zero padding corrupts its
    # output: the blend window gives those px weights ~1e-3, so they move the result by < 1e-3.
    # The 2-px scene border is excluded: there the tiled run sees reflected pixels while the
    # whole-image run sees the convs' zero padding (two 3x3 convs = 2 px), so they legitimately
    # differ there.
    inner = diff[2:-2, 2:-2]
    assert inner.max() <= QUANTUM + 1e-6, inner.max()
    assert inner.mean() < 0.3 * QUANTUM


def test_seams_are_detected_without_overlap(conv_scene):
    """Control: butting tiles without overlap do show seams, so the test above can fail."""
    tmp, src, model, whole = conv_scene
    res = predict_raster(src, tmp / "butt.tif", torch_predictor(model), tile=64, overlap=0)
    diff = np.abs(_read_prob(res.path) - whole)
    assert diff[2:-2, 2:-2].max() > 5 * QUANTUM


def test_output_is_a_cog_with_the_source_grid_and_tags(conv_scene):
    tmp, src, model, _ = conv_scene
    res = predict_raster(src, tmp / "cog.tif", torch_predictor(model), tile=64, overlap=32)
    with rasterio.open(res.path) as cog:
        assert cog.driver == "GTiff"
        assert cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert cog.profile.get("tiled") is True
        assert cog.count == 1 and cog.dtypes[0] == "uint8"
        assert (cog.width, cog.height) == (300, 200)
        assert cog.crs.to_string() == CRS
        assert cog.transform == TRANSFORM
        assert cog.overviews(1) == [] and max(cog.width, cog.height) <= 512  # small: none needed
        tags = cog.tags()
        assert tags["model"] == "Sequential"
        assert float(tags["probability_scale"]) == pytest.approx(PROBABILITY_SCALE)
        assert "value / 255" in tags["probability_encoding"]
        assert cog.scales[0] == pytest.approx(PROBABILITY_SCALE)
        assert cog.descriptions[0] == "pv_probability"


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [((333, 517), 64, 24), ((200, 130), 64, 23), ((40, 50), 64, 16), ((256, 256), 128, 0)],
)
def test_identity_model_reproduces_the_band(tmp_path, shape, tile, overlap):
    """A model returning its first input band must give that band back exactly, everywhere
    (edges, odd overlaps, scenes smaller than one tile): every tile lands where it belongs."""
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, size=(2, *shape), dtype=np.uint8)
    src = write_scene(tmp_path / "s.tif", data)
    calls = []
    res = predict_raster(
        src,
        tmp_path / "p.tif",
        lambda b: b[:, :1],
        tile=tile,
        overlap=overlap,
        batch_size=3,
        progress=lambda d, t: calls.append((d, t)),
    )
    with rasterio.open(res.path) as cog:
        assert np.array_equal(cog.read(1), data[0])
    assert calls[-1] == (res.tiles, res.tiles)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_bands_scale_and_extra_channels(tmp_path):
    """`extra` gets each tile's window and transform, and its channels follow the image bands."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(3, 150, 170), dtype=np.uint8)
    src = write_scene(tmp_path / "s.tif", data)
    seen = []

    def extra(window, transform):
        assert transform == window_transform(window, TRANSFORM)
        rows = window.row_off + np.arange(window.height)
        seen.append(window)
        return np.broadcast_to(((rows % 200) / 255.0)[:, None], (64, 64))[None]

    def predict(batch):
        assert batch.shape[1] == 2  # band 3 + one extra channel
        assert batch[:, 0].max() <= 1.0  # scaled by 1/255
        return batch[:, 1:2]

    res = predict_raster(
        src, tmp_path / "p.tif", predict, tile=64, overlap=16, bands=[3], extra=extra
    )
    assert len(seen) == res.tiles
    with rasterio.open(res.path) as cog:
        out = cog.read(1)
    assert np.array_equal(out, np.broadcast_to((np.arange(150) % 200)[:, None], out.shape))


def test_nodata_pixels_get_probability_zero(tmp_path):
    data = np.full((1, 80, 90), 200, np.uint8)
    data[:, 10:20, 30:50] = 0
    src = write_scene(tmp_path / "s.tif", data, nodata=0)
    res = predict_raster(src, tmp_path / "p.tif", lambda b: b * 0 + 0.8, tile=32, overlap=8)
    with rasterio.open(res.path) as cog:
        out = cog.read(1)
    assert (out[10:20, 30:50] == 0).all()
    assert (out[:10] == 204).all() and (out[20:] == 204).all()


def _numpy_predict(batch: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(batch.mean(axis=1, keepdims=True) - 0.5) * 4.0))


def test_memory_does_not_grow_with_scene_height(tmp_path):
    """Same width (2048), 1024 vs 2048 rows. The blend accumulators are exactly tile x width
    float32 (+ one row of column weights) whatever the height, and the whole Python/numpy peak
    (tracemalloc sees every numpy buffer: input strips, batches, the model's temporaries) does not
    grow with the height either: doubling it here would add 2 MB for a full-height uint8 output,
    8 MB for a float32 one. (GDAL's block cache is outside tracemalloc; GDAL bounds it itself.)"""
    width, tile = 2048, 256
    peaks, results = {}, {}
    for height in (1024, 2048):
        src = write_scene(tmp_path / f"s{height}.tif", shape=(3, height, width), seed=height)
        tracemalloc.start()
        try:
            results[height] = predict_raster(
                src, tmp_path / f"p{height}.tif", _numpy_predict, tile=tile, overlap=64
            )
            peaks[height] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    small, big = results[1024], results[2048]
    assert big.tiles == 11 * 11 and small.tiles == 6 * 11
    assert small.peak_accumulator_bytes == big.peak_accumulator_bytes
    assert big.peak_accumulator_bytes == tile * width * 4 + width * 4
    assert small.peak_buffer_bytes == big.peak_buffer_bytes
    assert peaks[2048] <= peaks[1024] + 256 * 1024, peaks
    with rasterio.open(big.path) as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert cog.overviews(1)  # a 2048 px COG has overviews
        assert cog.block_shapes[0] == (512, 512)
        assert cog.crs.to_string() == CRS and cog.transform == TRANSFORM
        sample = cog.read(1, window=((1000, 1100), (0, 2048)))
        assert 0 < sample.mean() < 255
