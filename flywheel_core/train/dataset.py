"""Random access to `training_data` chips in Lance, at a pinned table version.

The dataset never loads the table: at construction it scans only the small key columns (uid,
split, date, cell and the shape lists) to find the row positions that match the filter, then each
sample (or each batch, through `__getitems__`) is one `take` of just the pixel columns it needs.
The version is pinned when the dataset is built, so a training run reads exactly the rows it
recorded even while new partitions are written, and an old run can be re-read from its version.

The Lance handle is opened lazily per process (keyed by pid), so each DataLoader worker opens its
own. Start workers with the "forkserver" or "spawn" context (`PVDataModule` does): Lance is not
fork-safe, and a worker forked from a process that has read Lance can spin forever in Lance's
runtime (seen here with pylance 14: one `lance_background` thread at 100 % CPU, no batches).
The module imports only torch, numpy, pyarrow and lance, so a fresh worker starts quickly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from flywheel_core.lake.quote import sql_eq, sql_in, sql_range

log = logging.getLogger(__name__)

BANDS = ("vhr", "vhr+msi")
INDEX_COLUMNS = ["uid", "split", "date", "cell", "metadata.vhr_shape", "metadata.msi_shape"]
CHANNEL_COLUMNS = ["metadata.vhr_bands", "metadata.msi_channels"]

Sample = dict[str, Any]


def table_uri(lancedb_uri: str, table: str) -> str:
    """The Lance dataset behind a LanceDB table: `<db uri>/<table>.lance`."""
    return f"{str(lancedb_uri).rstrip('/')}/{table}.lance"


def open_lance(uri: str, version: int | None = None) -> lance.LanceDataset:
    options = None
    if "://" in uri:  # object-store options from the environment (lancedb is slow to import)
        from flywheel_core.store.lance_tables import storage_options

        options = storage_options(uri)
    return lance.dataset(uri, version=version, storage_options=options)


def row_filter(
    split: str | None = None, as_of: str | None = None, cells: Sequence[str] | None = None
) -> str | None:
    """The SQL predicate a dataset selects (for logs and provenance; selection is done in Arrow)."""
    parts = []
    if split is not None:
        parts.append(sql_eq("split", split))
    if as_of is not None:
        parts.append(sql_range("date", high=as_of))
    if cells is not None:
        parts.append(sql_in("cell", cells))
    return " AND ".join(parts) or None


class LanceChipDataset(Dataset):
    """`training_data` rows as dict(image (C,H,W) float32, mask (1,H,W) float32, uid).

    uri: the Lance dataset (`table_uri(lancedb_uri, "training_data")`).
    version: the table version to read; None pins the latest at construction (see `.version`).
    bands: "vhr" (R,G,B,NIR scaled to 0..1) or "vhr+msi" (plus the MSI channels resampled
        bilinearly to the chip grid).
    split / as_of / cells: row filter (split equality, ISO `date <= as_of`, cell membership).
    transform: optional callable applied to each sample dict (e.g. `D4Augment`). An item may be
        an index or a pair (index, seed), as `PositiveAwareSampler` yields: the transform is
        then called as `transform(sample, generator)` with a generator seeded by it.
    """

    def __init__(
        self,
        uri: str,
        version: int | None = None,
        *,
        split: str | None = None,
        as_of: str | None = None,
        cells: Sequence[str] | None = None,
        bands: str = "vhr",
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        if bands not in BANDS:
            raise ValueError(f"bands must be one of {BANDS}, got {bands!r}")
        self.uri = str(uri)
        self.bands = bands
        self.split = split
        self.as_of = as_of
        self.cells = list(cells) if cells is not None else None
        self.transform = transform
        self._ds: lance.LanceDataset | None = None
        self._pid: int | None = None
        self._positive: np.ndarray | None = None
        ds = open_lance(self.uri, version)
        self.version: int = ds.version
        self._ds, self._pid = ds, os.getpid()

        keys = ds.to_table(columns=INDEX_COLUMNS)
        keep = self._selection(keys)
        positions = np.flatnonzero(keep)
        self.indices: np.ndarray = positions.astype(np.int64)
        picked = keys.take(pa.array(positions, pa.int64()))
        self.uids: list[str] = picked.column("uid").to_pylist()
        self._vhr_shapes: list[tuple[int, ...]] = [
            tuple(s) for s in picked.column("metadata.vhr_shape").to_pylist()
        ]
        self._msi_shapes: list[tuple[int, ...] | None] = [
            tuple(s) if s else None for s in picked.column("metadata.msi_shape").to_pylist()
        ]
        self.channels: list[str] = self._channel_names(ds)
        log.debug(
            "%s@v%d [%s]: %d of %d rows",
            self.uri,
            self.version,
            row_filter(split, as_of, self.cells) or "all",
            len(self.indices),
            keys.num_rows,
        )

    # -- selection ---------------------------------------------------------------------------

    def _selection(self, keys: pa.Table) -> np.ndarray:
        keep = np.ones(keys.num_rows, dtype=bool)
        if self.split is not None:
            keep &= pc.fill_null(pc.equal(keys["split"], self.split), False).to_numpy(
                zero_copy_only=False
            )
        if self.as_of is not None:
            keep &= pc.fill_null(pc.less_equal(keys["date"], self.as_of), False).to_numpy(
                zero_copy_only=False
            )
        if self.cells is not None:
            keep &= pc.is_in(keys["cell"], pa.array(self.cells, pa.string())).to_numpy(
                zero_copy_only=False
            )
        return keep

    def _channel_names(self, ds: lance.LanceDataset) -> list[str]:
        vhr_bands, msi_channels = ["red", "green", "blue", "nir"], list[str]()
        if len(self.indices):
            row = ds.take([int(self.indices[0])], columns=CHANNEL_COLUMNS).to_pylist()[0]
            meta = row.get("metadata") or {}
            vhr_bands = meta.get("vhr_bands") or vhr_bands
            msi_channels = meta.get("msi_channels") or []
        if self.bands == "vhr":
            return list(vhr_bands)
        return list(vhr_bands) + [f"msi_{c}" for c in msi_channels]

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    @property
    def vhr_channels(self) -> int:
        """How many leading channels are VHR bands (the rest, if any, are MSI)."""
        return sum(not c.startswith("msi_") for c in self.channels)

    def positive(self, batch: int = 256) -> np.ndarray:
        """Per sample: does its mask have any pixel? (reads the mask column once, then cached)"""
        if self._positive is None:
            flags = np.zeros(len(self), dtype=bool)
            for b in range(0, len(self), batch):
                rows = self.dataset.take(
                    [int(i) for i in self.indices[b : b + batch]], columns=["generated_mask"]
                )
                for j, m in enumerate(rows.column("generated_mask").to_pylist()):
                    flags[b + j] = m is not None and np.frombuffer(m, np.uint8).any()
            self._positive = flags
        return self._positive

    @property
    def row_filter(self) -> str | None:
        return row_filter(self.split, self.as_of, self.cells)

    # -- per-process handle ------------------------------------------------------------------

    @property
    def dataset(self) -> lance.LanceDataset:
        pid = os.getpid()
        if self._ds is None or self._pid != pid:
            self._ds, self._pid = open_lance(self.uri, self.version), pid
        return self._ds

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_ds"], state["_pid"] = None, None
        return state

    # -- access ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.indices)

    def _columns(self) -> list[str]:
        cols = ["vhr_image_chip", "generated_mask"]
        return [*cols, "msi_image_chip"] if self.bands == "vhr+msi" else cols

    def __getitem__(self, i: int | tuple[int, int]) -> Sample:
        return self.__getitems__([i])[0]

    def __getitems__(self, items: Sequence[int | tuple[int, int]]) -> list[Sample]:
        """One Lance `take` for a whole batch (the DataLoader calls this when it exists)."""
        seeds = [it[1] if isinstance(it, tuple | list) else None for it in items]
        picks = [int(it[0]) if isinstance(it, tuple | list) else int(it) for it in items]
        n = len(self)
        for i in picks:
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for {n} samples")
        picks = [i % n for i in picks]
        rows = self.dataset.take([int(self.indices[i]) for i in picks], columns=self._columns())
        cols = {c: rows.column(c).to_pylist() for c in self._columns()}
        out = []
        transform: Any = self.transform  # takes an optional generator (see the docstring)
        for j, i in enumerate(picks):
            sample = self._decode(i, {c: cols[c][j] for c in cols})
            if transform is not None:
                seed = seeds[j]
                if seed is None:
                    sample = transform(sample)
                else:
                    sample = transform(sample, torch.Generator().manual_seed(int(seed)))
            out.append(sample)
        return out

    def _decode(self, i: int, row: dict) -> Sample:
        shape = self._vhr_shapes[i]
        _, h, w = shape
        image = torch.from_numpy(
            np.frombuffer(row["vhr_image_chip"], np.uint8).reshape(shape).astype(np.float32)
        ).div_(255.0)
        mask = np.frombuffer(row["generated_mask"], np.uint8).reshape(h, w)
        mask_t = torch.from_numpy((mask > 0).astype(np.float32))[None]
        if self.bands == "vhr+msi":
            mshape = self._msi_shapes[i]
            if mshape is None or row["msi_image_chip"] is None:
                raise ValueError(f"row {self.uids[i]} has no MSI chip but bands='vhr+msi'")
            msi = torch.from_numpy(
                np.frombuffer(row["msi_image_chip"], np.float32).reshape(mshape).copy()
            )
            msi = torch.nan_to_num(msi, nan=0.0, posinf=0.0, neginf=0.0)
            msi = F.interpolate(msi[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            image = torch.cat([image, msi])
        return {"image": image.contiguous(), "mask": mask_t, "uid": self.uids[i]}

    def load_all(self) -> list[Sample]:
        """Every selected sample, untransformed (for small evaluations and benchmarks)."""
        transform, self.transform = self.transform, None
        try:
            return [
                s
                for b in range(0, len(self), 32)
                for s in self.__getitems__(list(range(b, min(b + 32, len(self)))))
            ]
        finally:
            self.transform = transform
