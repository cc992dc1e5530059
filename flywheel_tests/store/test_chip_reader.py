"""`ChipReader`: rows in the order asked (repeats too) from one sorted take, at a pinned version,
decoded without `to_pylist`, and clear errors for bad positions and columns."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from flywheel_core.store import lance_tables as lt
from flywheel_core.store.chip_reader import ChipReader
from flywheel_core.train.dataset import table_uri

SHAPE = (4, 8, 8)
SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("cell", pa.string()),
        ("date", pa.string()),
        lt.pixels_field("image"),
        lt.pixels_field("mask"),
    ]
)


def _partition(cell: str, n: int, seed: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (n, *SHAPE), dtype=np.uint8)
    mask = rng.integers(0, 2, (n, *SHAPE[1:]), dtype=np.uint8)
    table = pa.table(
        {
            "uid": [f"{cell}-{i}" for i in range(n)],
            "cell": [cell] * n,
            "date": ["2024-06-01"] * n,
            "image": [r.tobytes() for r in image],
            "mask": [r.tobytes() for r in mask],
        },
        schema=SCHEMA,
    )
    return table, image, mask


@pytest.fixture
def store(tmp_path):
    db = lt.connect(str(tmp_path / "lancedb"))
    images, masks = [], []
    for seed, cell in enumerate(("479e758c4", "479e758cc")):
        table, image, mask = _partition(cell, 6 + seed, seed)
        lt.replace_partition(db, "chips", table, {"cell": cell, "date": "2024-06-01"})
        images.append(image)
        masks.append(mask)
    uri = table_uri(str(tmp_path / "lancedb"), "chips")
    return db, uri, np.concatenate(images), np.concatenate(masks)


def _reader(uri: str, **kw) -> ChipReader:
    return ChipReader(uri, {"image": SHAPE, "mask": SHAPE[1:]}, **kw)


def _owner(arr: np.ndarray) -> object:
    base: object = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


def test_rows_come_back_in_the_order_asked(store) -> None:
    _db, uri, images, masks = store
    reader = _reader(uri)
    assert len(reader) == len(images) == 13
    in_order = reader.read([1, 2, 9])
    assert isinstance(_owner(in_order["image"]), pa.Buffer)  # viewed in the Arrow buffer
    assert np.array_equal(in_order["image"], images[[1, 2, 9]])
    for order in ([12, 0, 5, 5, 3], [1, 2, 3], [7]):
        got = reader.read(order)
        assert np.array_equal(got["image"], images[order])
        assert np.array_equal(got["mask"], masks[order])
    one = reader.read_one(4)
    assert np.array_equal(one["image"], images[4]) and one["mask"].shape == SHAPE[1:]


def test_the_version_is_pinned(store) -> None:
    db, uri, images, _ = store
    reader = _reader(uri)
    table, _, _ = _partition("479e758c4", 2, seed=42)  # replaces that partition: 6 rows -> 2
    lt.replace_partition(db, "chips", table, {"cell": "479e758c4", "date": "2024-06-01"})
    assert np.array_equal(reader.read([0, 12])["image"], images[[0, 12]])
    again = pickle.loads(pickle.dumps(reader))  # a DataLoader worker reopens at the same version
    assert again.version == reader.version and np.array_equal(again.read([3])["image"], images[[3]])
    assert len(_reader(uri)) == 9


def test_bad_positions_and_columns_are_named(store) -> None:
    _db, uri, _, _ = store
    with pytest.raises(IndexError, match="position 13 out of range for 13 rows"):
        _reader(uri).read([1, 13])
    with pytest.raises(KeyError, match="no column"):
        ChipReader(uri, {"pixels": SHAPE})
