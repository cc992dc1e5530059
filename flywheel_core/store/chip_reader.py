"""Random reads of chip pixels from a Lance table: the fast path the store exists for.

A read is one Lance `take` of just the pixel columns asked for, with three things that each
measurably matter on this layout (256 x 256 x 4 uint8 rows, `bench/chip_read.py`):

1. the positions are sorted (and de-duplicated) before the take, so Lance reads forward through
   its pages, and the rows are put back in the order asked for afterwards;
2. the pixel bytes are viewed in place in the Arrow buffers (`store.pixels.pixel_rows`), never
   decoded through `to_pylist` (which copies every row into a Python `bytes`: about half of what
   a take delivers);
3. glibc's allocator is tuned once per process (`store.allocator.tune_allocator`): without it
   every batch's fresh buffers are mmapped and page-faulted (2-3x on batched reads).

Together they make a batch of 16 about 3x faster than the former read path (unsorted take,
`to_pylist`, untuned allocator), and 6-9x faster than rasterio windowed reads of the same chips
from COGs when the COGs do not fit GDAL's block cache (`bench/chip_read.py`).

The handle is opened per process (a reader pickled into a DataLoader worker opens its own: Lance
is not fork-safe) at a pinned version, so a reader sees the table as it was when it was made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import lance
import numpy as np

from flywheel_core.store.allocator import tune_allocator
from flywheel_core.store.pixels import pixel_rows


def open_lance(uri: str, version: int | None = None) -> lance.LanceDataset:
    """The Lance dataset at `uri` (at `version`), with object-store options from the environment
    for remote URIs (imported lazily: lancedb is slow to import in a fresh loader worker)."""
    options = None
    if "://" in uri:
        from flywheel_core.store.lance_tables import storage_options

        options = storage_options(uri)
    return lance.dataset(uri, version=version, storage_options=options)


class ChipReader:
    """`read(positions)` → {column: (n, *shape) array} for the pixel columns of a Lance table.

    uri: the Lance dataset (`<lancedb uri>/<table>.lance`).
    shapes: per pixel column, the shape of one row (e.g. {"image": (4, 256, 256)}).
    dtypes: per column, the pixel type (default uint8).
    version: the table version (None: the latest when the reader is made).
    tune_malloc: apply `tune_allocator` in each process that reads (default True).
    """

    def __init__(
        self,
        uri: str,
        shapes: Mapping[str, Sequence[int]],
        *,
        dtypes: Mapping[str, Any] | None = None,
        version: int | None = None,
        tune_malloc: bool = True,
    ) -> None:
        if not shapes:
            raise ValueError("a ChipReader needs at least one pixel column")
        self.uri = str(uri)
        self.shapes = {c: tuple(int(x) for x in s) for c, s in shapes.items()}
        self.dtypes = {c: np.dtype((dtypes or {}).get(c, np.uint8)) for c in self.shapes}
        self.tune_malloc = tune_malloc
        ds = open_lance(self.uri, version)
        missing = [c for c in self.shapes if c not in ds.schema.names]
        if missing:
            raise KeyError(f"{self.uri} has no column(s) {missing}; it has {ds.schema.names}")
        self.version: int = ds.version
        self.rows: int = ds.count_rows()
        self._ds: lance.LanceDataset | None = ds
        self._pid: int | None = os.getpid()

    @property
    def dataset(self) -> lance.LanceDataset:
        if self._ds is None or self._pid != os.getpid():
            self._ds, self._pid = open_lance(self.uri, self.version), os.getpid()
        return self._ds

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_ds"], state["_pid"] = None, None
        return state

    def __len__(self) -> int:
        return self.rows

    def read(self, positions: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The rows at `positions` (any order, repeats allowed), in that order.

        Arrays are read-only views of the Arrow buffers when the positions were already sorted
        and distinct; otherwise one copy that puts the rows back in order."""
        if self.tune_malloc:
            tune_allocator()
        idx = np.asarray(positions, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.rows):
            bad = idx[(idx < 0) | (idx >= self.rows)][0]
            raise IndexError(f"position {int(bad)} out of range for {self.rows} rows")
        unique, inverse = np.unique(idx, return_inverse=True)
        table = self.dataset.take(unique.tolist(), columns=list(self.shapes))
        in_order = len(unique) == len(idx) and np.array_equal(unique, idx)
        out = {}
        for column, shape in self.shapes.items():
            rows = pixel_rows(table.column(column), shape, self.dtypes[column])
            out[column] = rows if in_order else rows[inverse]
        return out

    def read_one(self, position: int) -> dict[str, np.ndarray]:
        """One row: {column: array of the row's shape}."""
        return {c: a[0] for c, a in self.read([position]).items()}
