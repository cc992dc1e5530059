"""MSI channels for scene inference: the training data's stack, resampled like training does."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.windows import Window
from shapely import wkb
from shapely.geometry import box

from flywheel_core.geo.projection import reproject
from flywheel_core.imagery.indices import INDEX_NAMES
from flywheel_core.imagery.l2a import BANDS
from flywheel_core.imagery.msi_chips import S2Scene, iter_msi_chips
from flywheel_core.infer.msi_channels import (
    MSI_CHANNELS,
    MissingChannelsError,
    read_msi_stack,
    split_channels,
)
from flywheel_core.infer.tiled import reflect_index
from flywheel_tests.infer.scenes import CRS, ORIGIN, TRANSFORM, write_s2_scene, write_scene

H, W = 120, 160  # 60 m x 80 m at 0.5 m: a 6 x 8 grid of 10 m pixels
S2_ORIGIN = (ORIGIN[0] - 50.0, ORIGIN[1] + 50.0)  # 5 S2 px left of and above the scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("msi_channels")
    vhr = write_scene(tmp / "vhr.tif", shape=(4, H, W), seed=3)
    assets = write_s2_scene(
        tmp / "s2", origin=S2_ORIGIN, seed=4, nodata_px={"B05": (4, 6), "B03": (7, 9)}
    )
    stack = read_msi_stack(assets, vhr, list(MSI_CHANNELS), scene_id="s2-test")
    return vhr, assets, stack


def _interp(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Training's resampling of a 10 m stack to a chip's pixels (dataset._decode)."""
    t = torch.nan_to_num(torch.from_numpy(np.ascontiguousarray(data)), nan=0.0)
    return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False)[0].numpy()


def _dn(assets: dict, band: str) -> np.ndarray:
    with rasterio.open(assets[band]) as src:
        return src.read(1).astype(np.float64)


def test_grid_is_10m_in_the_scene_crs_anchored_at_its_corner(scene):
    _, _, stack = scene
    assert stack.crs == CRS
    assert stack.transform == Affine(10.0, 0, ORIGIN[0], 0, -10.0, ORIGIN[1])
    assert stack.data.shape == (len(MSI_CHANNELS), 6, 8) and stack.data.dtype == np.float32
    assert np.isfinite(stack.data).all()
    assert stack.boa_add_offset == -1000.0


def test_values_are_the_l2a_reflectance_and_index_formulas(scene):
    _, assets, stack = scene
    # 10 m bands share the grid (S2 origin 5 px up-left): reflectance = (DN + offset) / 10000.
    b04 = (_dn(assets, "B04")[5:11, 5:13] - 1000.0) / 10000.0
    b08 = (_dn(assets, "B08")[5:11, 5:13] - 1000.0) / 10000.0
    got = dict(zip(MSI_CHANNELS, stack.data, strict=True))
    valid = stack.valid
    assert not valid[2, 4] and valid.sum() >= 40  # B03 nodata at S2 (7, 9) = grid (2, 4)
    np.testing.assert_allclose(got["B04"][valid], b04[valid], atol=1e-6)
    np.testing.assert_allclose(got["B08"][valid], b08[valid], atol=1e-6)
    np.testing.assert_allclose(got["ndvi"][valid], ((b08 - b04) / (b08 + b04))[valid], atol=1e-5)
    # No data in one band: every channel is 0 there, as in the stored chips.
    assert (stack.data[:, ~valid] == 0).all()


def test_channel_order_follows_the_requested_list(scene):
    vhr, assets, full = scene
    order = ["pvi", "B08", "ndvi", "B02", "B12"]
    stack = read_msi_stack(assets, vhr, order)
    assert stack.channels == tuple(order)
    for k, name in enumerate(order):
        np.testing.assert_array_equal(stack.data[k], full.data[MSI_CHANNELS.index(name)])
    extra = stack.extra(TRANSFORM, W, H)
    assert extra.channels == tuple(f"msi_{c}" for c in order)
    out = extra(Window(0, 0, 32, 32), TRANSFORM)
    assert out.shape == (len(order), 32, 32)
    full_out = full.extra(TRANSFORM, W, H)(Window(0, 0, 32, 32), TRANSFORM)
    np.testing.assert_array_equal(out[1], full_out[MSI_CHANNELS.index("B08")])


def test_a_tile_gets_the_bilinear_resampling_of_the_stack_at_its_pixel_centres(scene):
    _, _, stack = scene
    extra = stack.extra(TRANSFORM, W, H)
    whole = extra(Window(0, 0, W, H), TRANSFORM)
    # The scene is exactly 6 x 8 MSI px: torch's interpolate over the whole scene is the reference.
    np.testing.assert_allclose(whole, _interp(stack.data, (H, W)), atol=1e-6)
    # By hand, at a few pixel centres: pixel (r, c) sits at MSI index ((c + .5) / 20 - .5, ...).
    d = stack.data.astype(np.float64)
    for r, c in [(50, 29), (0, 0), (119, 159), (13, 87)]:
        u = min(max((c + 0.5) / 20 - 0.5, 0.0), 7.0)
        v = min(max((r + 0.5) / 20 - 0.5, 0.0), 5.0)
        j0, i0 = int(np.floor(u)), int(np.floor(v))
        j1, i1 = min(j0 + 1, 7), min(i0 + 1, 5)
        wx, wy = u - j0, v - i0
        expected = (1 - wy) * ((1 - wx) * d[:, i0, j0] + wx * d[:, i0, j1]) + wy * (
            (1 - wx) * d[:, i1, j0] + wx * d[:, i1, j1]
        )
        np.testing.assert_allclose(whole[:, r, c], expected, atol=1e-6, err_msg=f"{r},{c}")
    # Pixel (50, 29): 0.975 of the way from MSI column 0 to 1, row 2.025.
    expected = 0.975 * (0.975 * d[:, 2, 1] + 0.025 * d[:, 2, 0]) + 0.025 * (
        0.975 * d[:, 3, 1] + 0.025 * d[:, 3, 0]
    )
    np.testing.assert_allclose(whole[:, 50, 29], expected, atol=1e-6)
    # An interior window is the same pixels of the whole scene.
    np.testing.assert_array_equal(extra(Window(40, 24, 64, 64), None), whole[:, 24:88, 40:104])


@pytest.mark.parametrize("col_off,row_off", [(-32, -32), (-8, 70), (130, 100)])
def test_windows_outside_the_scene_reflect_like_the_vhr_bands(scene, col_off, row_off):
    _, _, stack = scene
    extra = stack.extra(TRANSFORM, W, H)
    whole = extra(Window(0, 0, W, H), TRANSFORM)
    got = extra(Window(col_off, row_off, 64, 64), None)
    rows = reflect_index(np.arange(row_off, row_off + 64), H)
    cols = reflect_index(np.arange(col_off, col_off + 64), W)
    assert got.shape == (len(MSI_CHANNELS), 64, 64)
    np.testing.assert_array_equal(got, whole[:, rows[:, None], cols[None, :]])


def test_a_chip_sees_what_training_fed_it(scene):
    """A training chip of the same window (its corner on the 10 m lattice, 40 m across): the
    stored MSI chip, interpolated as `LanceChipDataset` does, equals the scene's extra channels
    away from the chip's edges."""
    _, assets, stack = scene
    c0, r0, size = 40, 20, 80
    t = TRANSFORM * Affine.translation(c0, r0)
    left, top = t * (0, 0)
    right, bottom = t * (size, size)
    row = {
        "uid": "u",
        "chip_id": "chip",
        "cell": "c",
        "date": "2024-06-01",
        "crs": CRS,
        "transform": list(t)[:6],
        "width": size,
        "height": size,
        "footprint": wkb.dumps(reproject(box(left, bottom, right, top), CRS, 4326)),
    }
    s2 = S2Scene(dict(assets), "s2-test", "synthetic", datetime(2024, 6, 1, tzinfo=UTC))
    (msi,) = iter_msi_chips(s2, [row])
    h, w = msi["height"], msi["width"]
    chip = np.concatenate(
        [
            np.frombuffer(msi["reflectance"], np.float32).reshape(-1, h, w),
            np.frombuffer(msi["indices"], np.float32).reshape(-1, h, w),
        ]
    )
    assert list(msi["band_names"]) + list(msi["index_names"]) == list(MSI_CHANNELS)
    # Same 10 m pixels (the chip starts 2 columns and 1 row into the scene's grid) ...
    np.testing.assert_array_equal(chip, stack.data[:, 1 : 1 + h, 2 : 2 + w])
    # ... and the same values at every pixel more than half an MSI pixel (5 m = 10 px) inside
    # the chip. Within 5 m of its edge training clamps to the chip's outer MSI pixels, while the
    # scene interpolates towards the neighbouring ground: the one difference that remains.
    got = stack.extra(TRANSFORM, W, H)(Window(c0, r0, size, size), t)
    fed = _interp(chip, (size, size))
    inner = slice(10, size - 10)
    np.testing.assert_allclose(got[:, inner, inner], fed[:, inner, inner], atol=1e-6)
    assert not np.allclose(got[:, :10], fed[:, :10], atol=1e-3)


def test_the_tiny_world_stack_matches_its_stored_msi_chips(tiny_world):
    """On the synthetic world's own scene (80 m chips from the scene's corner, 20 m bands, the
    -1000 offset) every chip's stored MSI stack is a block of the scene's."""
    from flywheel_core.geo.s2 import cell_polygon
    from flywheel_core.imagery.catalog import StacCatalog
    from flywheel_core.imagery.vhr_chips import VhrScene, iter_vhr_chips
    from flywheel_core.partitions import window_end
    from flywheel_core.settings import ChipSettings
    from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES

    day = TINY_DATES[1]
    catalog = StacCatalog(tiny_world.catalog_path)
    area = cell_polygon(TINY_CELL)
    vref = catalog.find("synthetic-vhr", area, day, window_end(day, "monthly"))
    ref = catalog.find("synthetic-s2-l2a", area, day, window_end(day, "monthly"))
    scene = VhrScene(vref.assets["image"], "v", "synthetic-vhr", vref.acquired)
    chips = [
        {k: v for k, v in r.items() if k != "image"}
        for r in iter_vhr_chips(scene, TINY_CELL, day, area, ChipSettings(), 15, 11)
    ]
    rows = list(
        iter_msi_chips(S2Scene(ref.assets, ref.item_id, ref.collection, ref.acquired), chips)
    )
    stack = read_msi_stack(ref.assets, vref.assets["image"], list(MSI_CHANNELS))
    assert stack.boa_add_offset == -1000.0
    g = ~stack.transform
    for chip, msi in zip(chips, rows, strict=True):
        t = Affine(*msi["transform"])
        j, i = (round(v) for v in g * (t.c, t.f))
        assert g * (t.c, t.f) == pytest.approx((j, i))
        h, w = msi["height"], msi["width"]
        stored = np.concatenate(
            [
                np.frombuffer(msi["reflectance"], np.float32).reshape(-1, h, w),
                np.frombuffer(msi["indices"], np.float32).reshape(-1, h, w),
            ]
        )
        np.testing.assert_array_equal(stored, stack.data[:, i : i + h, j : j + w], chip["chip_id"])


def test_missing_scene_band_or_channel_is_named(scene):
    vhr, assets, _ = scene
    with pytest.raises(MissingChannelsError, match=r"no Sentinel-2 L2A scene.*msi_pvi"):
        read_msi_stack(None, vhr, ["B02", "pvi"])
    partial = {k: v for k, v in assets.items() if k != "B11"}
    with pytest.raises(MissingChannelsError, match=r"s2-x lacks bands \['B11'\]"):
        read_msi_stack(partial, vhr, ["B02"], scene_id="s2-x")
    with pytest.raises(MissingChannelsError, match="'evi'"):
        read_msi_stack(assets, vhr, ["B02", "evi"])


def test_a_scene_elsewhere_is_missing_data(tmp_path, scene):
    vhr, _, _ = scene
    far = write_s2_scene(tmp_path / "far", origin=(ORIGIN[0] + 5000.0, ORIGIN[1]), size_m=200.0)
    with pytest.raises(MissingChannelsError, match=r"does not overlap|no valid pixel"):
        read_msi_stack(far, vhr, ["B02"])


def test_split_channels_keeps_training_order():
    vhr, msi = split_channels(["red", "green", "blue", "nir", "msi_B02", "msi_pvi"])
    assert vhr == ["red", "green", "blue", "nir"] and msi == ["B02", "pvi"]
    with pytest.raises(ValueError, match="must follow"):
        split_channels(["red", "msi_B02", "green"])
    assert (*BANDS, *INDEX_NAMES) == MSI_CHANNELS
