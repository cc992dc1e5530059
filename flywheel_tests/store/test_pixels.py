"""Pixel columns viewed in place: `pixel_rows` shares the Arrow buffer (no copy per row, no
`to_pylist`), handles slices, chunks, large and fixed-size binary, and refuses wrong sizes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from flywheel_core.store.pixels import PixelShapeError, pixel_list, pixel_rows

SHAPE = (2, 3, 4)


def _rows(n: int, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 250, (n, *SHAPE)).astype(dtype)


def _column(arr: np.ndarray, type_: pa.DataType | None = None) -> pa.Array:
    return pa.array([r.tobytes() for r in arr], type_ or pa.binary())


def test_rows_are_a_view_of_the_arrow_buffer() -> None:
    arr = _rows(5)
    col = _column(arr)
    got = pixel_rows(col, SHAPE)
    assert got.shape == (5, *SHAPE) and np.array_equal(got, arr)
    data = np.frombuffer(col.buffers()[2], np.uint8)
    assert np.shares_memory(got, data)  # zero copy
    assert not got.flags.writeable


@pytest.mark.parametrize("type_", [pa.binary(), pa.large_binary()])
def test_a_slice_reads_its_own_rows(type_) -> None:
    arr = _rows(7, seed=1)
    col = _column(arr, type_).slice(2, 3)
    assert np.array_equal(pixel_rows(col, SHAPE), arr[2:5])


def test_fixed_size_binary_and_other_dtypes() -> None:
    arr = _rows(4, seed=2, dtype=np.float32)
    width = int(np.prod(SHAPE)) * 4
    col = pa.array([r.tobytes() for r in arr], pa.binary(width)).slice(1)
    assert np.array_equal(pixel_rows(col, SHAPE, np.float32), arr[1:])


def test_chunks_are_joined_in_order() -> None:
    arr = _rows(6, seed=3)
    chunked = pa.chunked_array([_column(arr[:2]), _column(arr[2:2]), _column(arr[2:])])
    assert np.array_equal(pixel_rows(chunked, SHAPE), arr)
    assert pixel_rows(pa.chunked_array([], pa.binary()), SHAPE).shape == (0, *SHAPE)


def test_wrong_sizes_and_nulls_are_refused() -> None:
    arr = _rows(3)
    short = pa.array([arr[0].tobytes(), arr[1].tobytes()[:-1], arr[2].tobytes()])
    with pytest.raises(PixelShapeError, match="row 1 has 23 B, expected 24 B"):
        pixel_rows(short, SHAPE)
    with pytest.raises(PixelShapeError, match="1 of 2 pixel rows are null"):
        pixel_rows(pa.array([arr[0].tobytes(), None]), SHAPE)
    with pytest.raises(PixelShapeError):
        pixel_rows(pa.array([b"x" * 10], pa.binary(10)), SHAPE)


def test_pixel_list_reads_rows_of_different_shapes_and_nulls() -> None:
    a = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    b = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    col = pa.array([a.tobytes(), None, b.tobytes()])
    got = pixel_list(col, [a.shape, None, b.shape], np.float32)
    assert got[1] is None
    assert np.array_equal(got[0], a) and np.array_equal(got[2], b)
    with pytest.raises(PixelShapeError):
        pixel_list(col, [b.shape, None, b.shape], np.float32)
