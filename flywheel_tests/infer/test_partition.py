"""A partition's prediction run without Dagster: VHR and VHR + MSI models, features, failures."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from shapely import wkb
from shapely.geometry import box

from flywheel_core.geo.projection import reproject
from flywheel_core.imagery.msi_chips import S2Scene, iter_msi_chips
from flywheel_core.infer.msi_channels import MSI_CHANNELS, MissingChannelsError, read_msi_stack
from flywheel_core.infer.partition import (
    PredictionSettings,
    model_bands,
    predict_partition,
)
from flywheel_core.infer.preview import LEGEND_HEIGHT
from flywheel_core.infer.tiled import predict_raster, torch_predictor
from flywheel_core.train.module import PVSegmentationModule
from flywheel_core.train.synthetic import (
    VHR_BANDS,
    synthetic_chip,
    synthetic_rows,
    write_training_table,
)
from flywheel_core.train.trainer import TrainConfig, load_model, train_model
from flywheel_tests.infer.scenes import CRS, ORIGIN, TRANSFORM, write_s2_scene, write_scene

H, W, CHIP = 256, 320, 64  # a 4 x 5 mosaic of synthetic training chips at 0.5 m
S2_ORIGIN = (ORIGIN[0] - 50.0, ORIGIN[1] + 50.0)
SETTINGS = PredictionSettings(tile=128, overlap=32, threshold=0.5, min_area_m2=2.0)
FEATURES = {"max_score", "n_parts", "msi_pvi", "vhr_pv_score"}


def _chip_rows(vhr) -> list[dict]:
    """Chip rows of the scene as `vhr_chips` stores them (what `iter_msi_chips` aligns to)."""
    rows = []
    for r0 in range(0, H, CHIP):
        for c0 in range(0, W, CHIP):
            t = TRANSFORM * Affine.translation(c0, r0)
            left, top = t * (0, 0)
            right, bottom = t * (CHIP, CHIP)
            rows.append(
                {
                    "uid": f"r{r0}c{c0}",
                    "chip_id": f"r{r0}c{c0}",
                    "cell": "c1",
                    "date": "2024-06-01",
                    "crs": CRS,
                    "transform": list(t)[:6],
                    "width": CHIP,
                    "height": CHIP,
                    "footprint": wkb.dumps(reproject(box(left, bottom, right, top), CRS, 4326)),
                }
            )
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A VHR scene of synthetic chips (panels on grass), its S2 scene and stored MSI chips, and
    tiny models trained on synthetic training rows with bands 'vhr' and 'vhr+msi'."""
    tmp = tmp_path_factory.mktemp("partition")
    rng = np.random.default_rng(7)
    data = np.zeros((4, H, W), np.uint8)
    for r0 in range(0, H, CHIP):
        for c0 in range(0, W, CHIP):
            image, _, _ = synthetic_chip(rng, CHIP, panels=2)
            data[:, r0 : r0 + CHIP, c0 : c0 + CHIP] = image
    vhr = write_scene(tmp / "vhr.tif", data)
    assets = write_s2_scene(tmp / "s2", origin=S2_ORIGIN, seed=5)
    s2 = S2Scene(assets, "s2-test", "synthetic", datetime(2024, 6, 1, tzinfo=UTC))
    msi_rows = list(iter_msi_chips(s2, _chip_rows(vhr)))
    with rasterio.open(vhr) as src:
        left, bottom, right, top = src.bounds
    area = reproject(box(left, bottom, right, top), CRS, 4326)
    db = str(tmp / "lancedb")
    write_training_table(db, synthetic_rows(16, splits=("train",), seed=1))
    models = {}
    for bands in ("vhr", "vhr+msi"):
        result = train_model(
            db, "training_data", tmp / bands, TrainConfig.tiny(bands=bands), run_name=bands
        )
        models["model_msi" if bands == "vhr+msi" else "model_vhr"] = load_model(
            result.checkpoint_path
        )
    return {"vhr": vhr, "assets": assets, "msi_rows": msi_rows, "area": area, **models}


def _run(world, model, out, **kw):
    kw.setdefault("s2_assets", world["assets"])
    return predict_partition(
        world["vhr"],
        kw.pop("s2_assets"),
        model,
        area=world["area"],
        msi_rows=world["msi_rows"],
        out_dir=out,
        settings=kw.pop("settings", SETTINGS),
        **kw,
    )


def _prob(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_vhr_model_returns_detections_with_all_features(world, tmp_path):
    result = _run(world, world["model_vhr"], tmp_path, bands="vhr")
    assert result.bands == "vhr" and result.channels == VHR_BANDS
    assert result.probability_path == tmp_path / "probability.tif"
    assert result.tiles == 12  # ceil(256 / 96) x ceil(320 / 96) tiles of 128 px
    assert len(result.detections) >= 5  # ~40 panels in the mosaic; rows within 8.5 m merge
    for d in result.detections:
        assert set(d.features) == FEATURES
        assert d.features["msi_pvi"] is not None and -1.0 <= d.features["msi_pvi"] <= 1.0
        assert isinstance(d.features["vhr_pv_score"], float)
        # The panels are bluish and dark in NIR: a positive spectral PV score.
        assert d.features["vhr_pv_score"] > 0
        assert d.features["n_parts"] >= 1 and d.features["max_score"] >= d.score >= 0.5
        assert world["area"].covers(d.geometry.centroid)
        assert d.geometry_local.bounds[0] > 600_000  # UTM metres, not degrees
        assert d.area_m2 == pytest.approx(d.n_pixels * 0.25)
    assert result.total_area_m2 == pytest.approx(sum(d.area_m2 for d in result.detections))
    assert {"inference", "model", "vectorize", "features", "preview", "total"} <= set(
        result.timings
    )
    with rasterio.open(result.probability_path) as src:
        assert src.tags()["bands"] == "vhr" and src.tags()["channels"] == ",".join(VHR_BANDS)
    # The preview: the map (downsampled to <= 512 px) over a legend strip with the colour bar.
    img = result.preview
    assert img.size == (W, H + LEGEND_HEIGHT)
    bar = np.asarray(img)[H + 15]
    assert tuple(bar[48]) < (60, 60, 60)  # P = 0: dark
    r, g, b = bar[W - 135]
    assert r > 200 and g > 180 and b < 80  # P = 1: yellow


def test_vhr_output_is_predict_raster_unchanged(world, tmp_path):
    result = _run(world, world["model_vhr"], tmp_path / "part", bands="vhr")
    direct = predict_raster(
        world["vhr"],
        tmp_path / "direct.tif",
        torch_predictor(world["model_vhr"]),
        tile=SETTINGS.tile,
        overlap=SETTINGS.overlap,
        batch_size=8,
    )
    assert direct.tiles == result.tiles
    np.testing.assert_array_equal(_prob(result.probability_path), _prob(direct.path))


def test_msi_model_gets_its_channels_in_its_order(world, tmp_path):
    """A model whose MSI channels are in an unusual order: each tile's input has exactly its
    channels, VHR bands first, each MSI channel the value computed from the band files."""
    torch.manual_seed(0)
    order = ["ndvi", "B08", "pvi", "B02", "ndwi", "B11"]
    channels = VHR_BANDS + [f"msi_{c}" for c in order]
    model = PVSegmentationModule(
        in_channels=len(channels), encoder_depth=2, decoder_channels=(16, 8), channels=channels
    ).eval()
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    result = _run(world, model, tmp_path, batch_size=1, settings=PredictionSettings(64, 16))
    assert result.bands == "vhr+msi" and result.channels == channels
    assert result.msi_valid_fraction == 1.0
    assert len(seen) == result.tiles == 6 * 7  # one tile per forward pass, row by row
    assert all(x.shape == (1, len(channels), 64, 64) for x in seen)
    # Tile (row 1, col 2) covers scene rows [40, 104) x cols [88, 152) (origins -8 + 48 k).
    x = seen[1 * 7 + 2][0].double().numpy()
    r0, c0 = 40, 88
    with rasterio.open(world["vhr"]) as src:
        vhr = src.read(window=((r0, r0 + 64), (c0, c0 + 64))).astype(np.float64) / 255.0
    np.testing.assert_allclose(x[:4], vhr, atol=1e-6)

    def refl(band):  # 10 m bands share the scene's 10 m grid, 5 S2 px in from their corner
        with rasterio.open(world["assets"][band]) as src:
            return (src.read(1).astype(np.float64)[5:, 5:] - 1000.0) / 10000.0

    b02, b03, b04, b08 = (refl(b) for b in ("B02", "B03", "B04", "B08"))
    by_hand = {
        "B02": b02,
        "B08": b08,
        "ndvi": (b08 - b04) / (b08 + b04),
        "ndwi": (b03 - b08) / (b03 + b08),
    }
    for r, c in [(70, 100), (41, 147), (103, 88), (55, 120)]:
        # Pixel centre -> fractional 10 m index (interpolate's align_corners=False convention).
        u, v = (c + 0.5) / 20 - 0.5, (r + 0.5) / 20 - 0.5
        j0, i0 = int(np.floor(u)), int(np.floor(v))
        wx, wy = u - j0, v - i0
        for name, grid in by_hand.items():
            expected = (1 - wy) * ((1 - wx) * grid[i0, j0] + wx * grid[i0, j0 + 1]) + wy * (
                (1 - wx) * grid[i0 + 1, j0] + wx * grid[i0 + 1, j0 + 1]
            )
            k = channels.index(f"msi_{name}")
            assert x[k, r - r0, c - c0] == pytest.approx(expected, abs=1e-5), (name, r, c)
    # Every MSI channel, including the 20 m band and pvi, is the stack's resampling.
    stack = read_msi_stack(world["assets"], world["vhr"], order)
    window = rasterio.windows.Window(c0, r0, 64, 64)
    np.testing.assert_allclose(x[4:], stack.extra(TRANSFORM, W, H)(window, None), atol=1e-6)


def test_a_trained_msi_model_runs_with_all_its_channels(world, tmp_path):
    model = world["model_msi"]
    assert model.channels == VHR_BANDS + [f"msi_{c}" for c in MSI_CHANNELS]
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    try:
        result = _run(world, model, tmp_path, bands="vhr+msi", s2_scene_id="s2-test")
    finally:
        handle.remove()
    assert set(seen) == {22}
    assert result.msi_scene == "s2-test"
    assert all(set(d.features) == FEATURES for d in result.detections)
    with rasterio.open(result.probability_path) as src:
        assert src.tags()["bands"] == "vhr+msi" and src.tags()["msi_scene"] == "s2-test"


def test_msi_model_without_s2_fails_before_any_tile(world, tmp_path):
    model = world["model_msi"]
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: seen.append(1))
    try:
        with pytest.raises(MissingChannelsError, match=r"no Sentinel-2 L2A scene.*msi_pvi"):
            _run(world, model, tmp_path / "none", s2_assets=None, bands="vhr+msi")
        partial = {k: v for k, v in world["assets"].items() if k != "B8A"}
        with pytest.raises(MissingChannelsError, match=r"lacks bands \['B8A'\]"):
            _run(world, model, tmp_path / "partial", s2_assets=partial)
    finally:
        handle.remove()
    assert seen == []
    assert not (tmp_path / "none" / "probability.tif").exists()


def test_registered_bands_must_match_the_model(world):
    assert model_bands(world["model_vhr"], "vhr") == ("vhr", VHR_BANDS)
    with pytest.raises(ValueError, match="registered with bands='vhr\\+msi'"):
        model_bands(world["model_vhr"], "vhr+msi")
    with pytest.raises(ValueError, match="registered with bands='vhr'"):
        model_bands(world["model_msi"], "vhr")
