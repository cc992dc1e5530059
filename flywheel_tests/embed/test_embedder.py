"""From images and tile rows to vectors: shapes, normalisation, determinism, register tokens."""

import numpy as np
import pyarrow as pa
import pytest
import torch
from shapely import wkb
from shapely.geometry import box

from flywheel_core.embed.dinov3 import load_dinov3
from flywheel_core.embed.embedder import (
    bare_forward,
    embed_images,
    embed_rows,
    embed_tile_rows,
    preprocess,
    split_tokens,
)
from flywheel_core.embed.patches import patch_table
from flywheel_core.embed.schema import embedding_schema
from flywheel_core.geo.projection import reproject


@pytest.fixture(scope="module")
def dino():
    return load_dinov3("tiny")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (7, 4, 48, 48), dtype=np.uint8)


def test_shapes_and_unit_vectors(dino, images):
    out = embed_images(dino, images, batch_size=3, patch_vectors=True)
    d = dino.dim
    grid = dino.image_size // dino.patch_size
    assert out.cls.shape == out.mean_patch.shape == (7, d)
    assert out.cls.dtype == out.mean_patch.dtype == np.float32
    assert out.norms.shape == (7,) and (out.norms > 0).all()
    assert out.patches is not None and out.patches.shape == (7, grid * grid, d)
    np.testing.assert_allclose(np.linalg.norm(out.cls, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out.mean_patch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out.patches, axis=2), 1.0, atol=1e-5)


def test_deterministic_and_independent_of_batch_size(dino, images):
    a = embed_images(dino, images, batch_size=7)
    b = embed_images(dino, images, batch_size=2)
    c = embed_images(load_dinov3("tiny"), images, batch_size=7)
    np.testing.assert_allclose(a.cls, b.cls, atol=1e-5)
    np.testing.assert_array_equal(a.cls, c.cls)
    np.testing.assert_array_equal(a.mean_patch, c.mean_patch)


def test_only_rgb_is_seen(dino, images):
    base = embed_images(dino, images)
    nir = images.copy()
    nir[:, 3] = 255 - nir[:, 3]
    np.testing.assert_array_equal(embed_images(dino, nir).cls, base.cls)
    red = images.copy()
    red[:, 0] = 255 - red[:, 0]
    assert not np.allclose(embed_images(dino, red).cls, base.cls)


def test_preprocessing_resizes_and_uses_the_model_statistics(dino):
    mean = np.array(dino.mean) * 255
    flat = np.broadcast_to(mean.round().astype(np.uint8)[None, :, None, None], (2, 3, 40, 40))
    x = preprocess(dino, np.ascontiguousarray(flat))
    assert x.shape == (2, 3, dino.image_size, dino.image_size)
    assert float(x.abs().max()) < 0.01  # the mean colour normalises to zero
    white = preprocess(dino, np.full((1, 3, 64, 64), 255, dtype=np.uint8))
    expected = (1 - torch.tensor(dino.mean)) / torch.tensor(dino.std)
    torch.testing.assert_close(white[0, :, 5, 5], expected.float())


def test_register_tokens_are_left_out_of_the_patch_mean(dino, images):
    out = embed_images(dino, images[:3])
    hidden = bare_forward(dino, preprocess(dino, images[:3])).float()
    r = dino.num_register_tokens
    grid = dino.image_size // dino.patch_size
    assert hidden.shape[1] == 1 + r + grid * grid
    manual = hidden[:, 1 + r :].mean(dim=1)
    manual = (manual / manual.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(out.mean_patch, manual, atol=1e-5)
    with_registers = hidden[:, 1:].mean(dim=1)
    with_registers = (with_registers / with_registers.norm(dim=-1, keepdim=True)).numpy()
    assert np.abs(out.mean_patch - with_registers).max() > 1e-3  # the test can tell them apart
    cls, patches = split_tokens(dino, hidden)
    assert patches.shape[1] == grid * grid
    np.testing.assert_allclose(out.cls, (cls / cls.norm(dim=-1, keepdim=True)).numpy(), atol=1e-5)


def test_bad_images_are_refused(dino):
    with pytest.raises(ValueError, match="uint8"):
        embed_images(dino, np.zeros((1, 3, 8, 8), dtype=np.uint16))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        embed_images(dino, np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="bands"):
        embed_images(dino, np.zeros((1, 2, 8, 8), dtype=np.uint8))


def _tile(uid: str, image: np.ndarray, **extra) -> dict:
    return {
        "uid": uid,
        "chip_id": uid,
        "cell": "479e758c4",
        "date": "2024-06-01",
        "bands": image.shape[0],
        "height": image.shape[1],
        "width": image.shape[2],
        "dtype": str(image.dtype),
        "image": image.tobytes(),
        **extra,
    }


def test_tile_rows_of_mixed_sizes_and_types_keep_their_order(dino, images):
    utm = box(690_000, 5_334_000, 690_080, 5_334_080)
    in_degrees = reproject(utm, "EPSG:32632", 4326)
    wide = np.random.default_rng(1).integers(0, 4000, (4, 30, 40), dtype=np.uint16)
    rows = [
        _tile("a", images[0], footprint=wkb.dumps(in_degrees)),
        _tile("b", wide, footprint=wkb.dumps(utm), crs="EPSG:32632"),
        _tile("c", images[1], footprint=wkb.dumps(in_degrees), center_lon=1.0, center_lat=2.0),
    ]
    table = embed_tile_rows(dino, rows, dataset="vhr_chips", batch_size=2)
    assert table.schema == embedding_schema(dino.dim)
    assert table["uid"].to_pylist() == ["a", "b", "c"]
    assert set(table["dataset"].to_pylist()) == {"vhr_chips"}
    assert table["trained"].to_pylist() == [False] * 3
    alone = embed_images(dino, images[:2])
    vec = np.array(table["vector"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vec[[0, 2]], alone.cls, atol=1e-5)
    projected = wkb.loads(table["footprint"][1].as_py())
    assert projected.equals_exact(in_degrees, 1e-9)
    assert table["center_lon"][2].as_py() == 1.0
    assert table["center_lon"][1].as_py() == pytest.approx(in_degrees.centroid.x)


def test_no_rows_give_an_empty_table_of_the_schema(dino):
    table = embed_tile_rows(dino, [], dataset="vhr_chips")
    assert table.num_rows == 0 and table.schema == embedding_schema(dino.dim)


def test_patch_rows_tile_the_chip(dino, images):
    transform = [0.3125, 0.0, 690_000.0, 0.0, -0.3125, 5_334_080.0]
    rows = [_tile("a", images[0], crs="EPSG:32632", transform=transform)]
    out = embed_rows(dino, rows, patch_vectors=True)
    table = patch_table(dino, rows, out, "vhr_chips")
    grid = dino.image_size // dino.patch_size
    assert table.num_rows == grid * grid
    assert table["uid"][0].as_py() == "a#p00_00" and table["tile_uid"][0].as_py() == "a"
    shapes = [wkb.loads(b) for b in table["footprint"].to_pylist()]
    chip = reproject(box(690_000, 5_334_080 - 15, 690_015, 5_334_080), "EPSG:32632", 4326)
    assert sum(s.area for s in shapes) == pytest.approx(chip.area, rel=1e-3)
    assert shapes[0].centroid.y > shapes[-1].centroid.y  # row 0 is the top of the chip
    vectors = np.array(table["vector"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vectors, out.patches[0], atol=1e-6)
    assert isinstance(table, pa.Table)
