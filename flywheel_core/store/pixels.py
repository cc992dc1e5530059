"""Pixel columns of Lance rows as numpy arrays, without a copy per row.

Chips are stored as raw bytes (`lance_tables.pixels_field`). The slow way to read them is
`column.to_pylist()` (one Python `bytes` object, that is one copy, per row) and then `frombuffer`;
measured here it halves what a `take` delivers. A binary Arrow array already holds its rows back
to back in one data buffer, with an offsets buffer saying where each starts, so when every row has
the same size (every chip of a table has the shape of its grid) the whole column is one
`(rows, *shape)` view of that buffer: no copy, no Python object per row. Rows of other sizes, nulls
or a column split over several chunks fall back to one copy (still without `to_pylist`).

The arrays returned by `pixel_rows` are views that keep the Arrow buffer alive, marked read-only
so that nobody writes into the Arrow data through them (copy first to change pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


class PixelShapeError(ValueError):
    """A pixel row whose byte length does not match the shape it is read as."""


def _offsets(arr: pa.Array) -> np.ndarray:
    dtype = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    buf = arr.buffers()[1]
    assert buf is not None
    return np.frombuffer(buf, dtype=dtype, count=len(arr) + 1, offset=arr.offset * dtype().itemsize)


def _row_bytes(shape: Sequence[int], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def pixel_rows(
    column: pa.Array | pa.ChunkedArray, shape: Sequence[int], dtype: np.dtype | type = np.uint8
) -> np.ndarray:
    """A binary (or large/fixed-size binary) column as one `(rows, *shape)` array.

    Zero-copy when the column is one chunk without nulls and every row has the size of `shape`;
    otherwise one contiguous copy. Raises `PixelShapeError` for a null row or a row whose length
    is not the shape's."""
    dt = np.dtype(dtype)
    size = _row_bytes(shape, dt)
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            column = column.chunk(0)
        else:
            parts = [pixel_rows(c, shape, dt) for c in column.chunks if len(c)]
            if not parts:
                return np.empty((0, *shape), dt)
            return np.concatenate(parts)
    n = len(column)
    if n == 0:
        return np.empty((0, *shape), dt)
    if column.null_count:
        raise PixelShapeError(f"{column.null_count} of {n} pixel rows are null")
    data = column.buffers()[-1]
    assert data is not None
    if pa.types.is_fixed_size_binary(column.type):
        width = column.type.byte_width
        if width != size:
            raise PixelShapeError(f"rows of {width} B read as {tuple(shape)} {dt} ({size} B)")
        start = column.offset * width
        view = np.frombuffer(data, dt, count=n * size // dt.itemsize, offset=start)
        return _readonly(view.reshape(n, *shape))
    offsets = _offsets(column)
    lengths = np.diff(offsets)
    if np.any(lengths != size):
        bad = int(np.flatnonzero(lengths != size)[0])
        raise PixelShapeError(
            f"row {bad} has {int(lengths[bad])} B, expected {size} B for {tuple(shape)} {dt}"
        )
    start = int(offsets[0])
    if start % dt.itemsize:  # an odd start cannot be viewed as a wider dtype; copy once
        raw = np.frombuffer(data, np.uint8, count=n * size, offset=start)
        return raw.copy().view(dt).reshape(n, *shape)
    view = np.frombuffer(data, dt, count=n * size // dt.itemsize, offset=start)
    return _readonly(view.reshape(n, *shape))


def pixel_list(
    column: pa.Array | pa.ChunkedArray,
    shapes: Sequence[Sequence[int] | None],
    dtype: np.dtype | type = np.uint8,
) -> list[np.ndarray | None]:
    """Per-row arrays for a column whose rows may have different shapes (or be null): one view
    of the column's data buffer per row, still without `to_pylist`."""
    dt = np.dtype(dtype)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if len(shapes) != len(column):
        raise PixelShapeError(f"{len(shapes)} shapes for {len(column)} rows")
    if pa.types.is_fixed_size_binary(column.type):
        column = column.cast(pa.binary())
    data = column.buffers()[-1]
    offsets = _offsets(column)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    out: list[np.ndarray | None] = []
    for j, shape in enumerate(shapes):
        if not valid[j] or shape is None:
            out.append(None)
            continue
        start, end = int(offsets[j]), int(offsets[j + 1])
        size = _row_bytes(shape, dt)
        if end - start != size:
            raise PixelShapeError(f"row {j} has {end - start} B, expected {size} B for {shape}")
        raw = np.frombuffer(data, np.uint8, count=size, offset=start)
        if start % dt.itemsize:
            raw = raw.copy()
        out.append(_readonly(raw.view(dt).reshape(shape)))
    return out
