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

Pixels stay uint8 until the batch is on the model's device: a chip is a view of the `take`
result's Arrow buffer (`store.pixels`, no Python object or copy per row), the mask is compared with
0 once, and the float conversion (÷ 255), the photometric change and the concatenation of MSI
channels happen in `model_batch`, which the LightningModule runs after the transfer. A uint8 batch
is a quarter of the float one to move between processes and to the device, and the CPU work per
sample is the D4 transform of bytes. Each process that reads tunes glibc's allocator once
(`store.allocator`: batched takes of ~320 KiB rows otherwise fault every page of every buffer).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from flywheel_core.lake.quote import sql_eq, sql_in, sql_range
from flywheel_core.store.allocator import tune_allocator
from flywheel_core.store.chip_reader import open_lance
from flywheel_core.store.pixels import pixel_list, pixel_rows
from flywheel_core.train.photometric import apply_photometric

log = logging.getLogger(__name__)

BANDS = ("vhr", "vhr+msi")
INDEX_COLUMNS = ["uid", "split", "date", "cell", "metadata.vhr_shape", "metadata.msi_shape"]
CHANNEL_COLUMNS = ["metadata.vhr_bands", "metadata.msi_channels"]

Sample = dict[str, Any]


def table_uri(lancedb_uri: str, table: str) -> str:
    """The Lance dataset behind a LanceDB table: `<db uri>/<table>.lance`."""
    return f"{str(lancedb_uri).rstrip('/')}/{table}.lance"


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


def _pixel_tensors(
    column: pa.ChunkedArray | pa.Array,
    shapes: Sequence[Sequence[int]],
    dtype: type,
    mask: bool = False,
) -> list[torch.Tensor | None]:
    """Per-row tensors of a pixel column, without a copy (with `mask`: rows (H, W) compared with
    0 into (1, H, W) 0/1 uint8, one new array). When every row has one shape (the common case: a
    table's chips share their grid) the column is one `(rows, *shape)` view, handled in one
    piece."""
    if shapes and all(s == shapes[0] for s in shapes):
        block = pixel_rows(column, shapes[0], dtype)
        if mask:
            return list(torch.from_numpy(np.greater(block, 0).view(np.uint8))[:, None])
        return list(_readonly_tensor(block))
    out: list[torch.Tensor | None] = []
    for row in pixel_list(column, shapes, dtype):
        if row is None:
            out.append(None)
        elif mask:
            out.append(torch.from_numpy(np.greater(row, 0).view(np.uint8))[None])
        else:
            out.append(_readonly_tensor(row))
    return out


def _readonly_tensor(view: np.ndarray) -> torch.Tensor:
    """A tensor over a read-only Arrow-backed array, without a copy. Torch warns (once) that it
    cannot mark tensors read-only; nothing here writes to them: the transforms return new tensors
    and collation copies into the batch, so the warning is silenced for this call only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(view)


def model_batch(batch: Any) -> Any:
    """A collated batch as the model takes it: `image` float32 (B, C, H, W), the VHR channels
    ÷ 255 (0..1) with the photometric change applied where the batch carries its parameters,
    followed by the MSI channels; `mask` float32 0/1. Run it where the batch already is on the
    device (`PVSegmentationModule.on_after_batch_transfer`); a batch that is already float (or
    anything that is not a sample batch) is returned as it is, so applying it twice is harmless."""
    if not isinstance(batch, dict) or "image" not in batch:
        return batch
    out = dict(batch)
    image = out["image"]
    if not image.is_floating_point():
        x = image.to(torch.float32).div_(255.0)
        params, seeds = out.pop("photometric", None), out.pop("photometric_seed", None)
        if params is not None:
            x = apply_photometric(x, params, seeds)
        msi = out.pop("msi", None)
        out["image"] = torch.cat([x, msi.to(x.dtype)], dim=1) if msi is not None else x
    mask = out.get("mask")
    if mask is not None and not mask.is_floating_point():
        out["mask"] = mask.to(torch.float32)
    return out


def collate_samples(samples: Sequence[Sample]) -> dict[str, Any]:
    """Samples (e.g. from `__getitems__`) as one float model batch, on the CPU."""
    return model_batch(default_collate(list(samples)))


class LanceChipDataset(Dataset):
    """`training_data` rows as dict(image (4,H,W) uint8, mask (1,H,W) uint8 0/1, uid[, msi]).

    `model_batch` turns a collated batch into the model's float input (see the module doc); image
    tensors are read-only views of Arrow memory (transforms must not write into them).

    uri: the Lance dataset (`table_uri(lancedb_uri, "training_data")`).
    version: the table version to read; None pins the latest at construction (see `.version`).
    bands: "vhr" (R,G,B,NIR, uint8; 0..1 after `model_batch`) or "vhr+msi" (plus `msi`, the MSI
        channels as float32, resampled bilinearly to the chip grid).
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
        self._tuned_pid: int | None = None
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetched: OrderedDict[tuple[int, ...], Future[pa.Table]] = OrderedDict()

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
                shapes = [s[1:] for s in self._vhr_shapes[b : b + batch]]
                masks = pixel_list(rows.column("generated_mask"), shapes, np.uint8)
                for j, m in enumerate(masks):
                    flags[b + j] = m is not None and bool(m.any())
            self._positive = flags
        return self._positive

    @property
    def row_filter(self) -> str | None:
        return row_filter(self.split, self.as_of, self.cells)

    # -- per-process handle ------------------------------------------------------------------

    @property
    def dataset(self) -> lance.LanceDataset:
        """This process's Lance handle (opened on first use in each worker); the first use in a
        process also tunes its allocator for batched takes (`store.allocator`)."""
        pid = os.getpid()
        if self._ds is None or self._pid != pid:
            self._ds, self._pid = open_lance(self.uri, self.version), pid
        if self._tuned_pid != pid:
            tune_allocator()
            self._tuned_pid = pid
        return self._ds

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_ds"], state["_pid"], state["_tuned_pid"] = None, None, None
        state["_prefetcher"], state["_prefetched"] = None, OrderedDict()
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
        """One Lance `take` for a whole batch (the DataLoader calls this when it exists).

        The row positions are taken sorted and once each (Lance then reads forward in one pass);
        samples are views of the result's Arrow buffers in the order asked for, so neither the
        reordering nor the decoding copies a chip (`_decode`)."""
        seeds = [it[1] if isinstance(it, tuple | list) else None for it in items]
        picks = self._picks(items)
        if not picks:
            return []
        positions = self.indices[np.asarray(picks, dtype=np.int64)]
        unique, first, inverse = np.unique(positions, return_index=True, return_inverse=True)
        pending = self._prefetched.pop(tuple(unique.tolist()), None)
        if pending is not None:
            rows = pending.result()
        else:
            rows = self.dataset.take(unique.tolist(), columns=self._columns())
        decoded = self._decode(rows, [picks[int(f)] for f in first])
        out = []
        transform: Any = self.transform  # takes an optional generator (see the docstring)
        for j, i in enumerate(picks):
            sample = {**decoded[int(inverse[j])], "uid": self.uids[i]}
            if transform is not None:
                seed = seeds[j]
                if seed is None:
                    sample = transform(sample)
                else:
                    sample = transform(sample, torch.Generator().manual_seed(int(seed)))
            out.append(sample)
        return out

    def _picks(self, items: Sequence[int | tuple[int, int]]) -> list[int]:
        """Sample indices of `items` (plain or (index, seed)), negative ones from the end."""
        picks = [int(it[0]) if isinstance(it, tuple | list) else int(it) for it in items]
        n = len(self)
        for i in picks:
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for {n} samples")
        return [i % n for i in picks]

    def prefetch(self, items: Sequence[int | tuple[int, int]]) -> None:
        """Start reading a batch `__getitems__` will be asked for soon, in a background thread.

        Lance reads without holding the GIL, so in a loader without workers the `take` of the
        next batch overlaps the decoding, transform and collation of this one (and the training
        step). `PVDataModule` announces each train batch one ahead (`LookaheadBatches`); the two
        latest announcements are kept, older ones dropped. With loader workers nothing calls it:
        the batches are read in the workers."""
        unique = np.unique(self.indices[np.asarray(self._picks(items), dtype=np.int64)])
        key = tuple(unique.tolist())
        if not key or key in self._prefetched:
            return
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="lance-prefetch")
        ds = self.dataset
        self._prefetched[key] = self._prefetcher.submit(ds.take, list(key), self._columns())
        while len(self._prefetched) > 2:
            self._prefetched.popitem(last=False)

    def _decode(self, rows: pa.Table, picks: list[int]) -> list[Sample]:
        """Samples of the rows of `rows` (sample `picks[j]` is row j): uint8 image, 0/1 mask
        (one comparison, the only pass over the pixels) and the resampled float MSI channels."""
        shapes = [self._vhr_shapes[i] for i in picks]
        images = _pixel_tensors(rows.column("vhr_image_chip"), shapes, np.uint8)
        masks = _pixel_tensors(
            rows.column("generated_mask"), [s[1:] for s in shapes], np.uint8, mask=True
        )
        msis: list[np.ndarray | None] = [None] * len(picks)
        if self.bands == "vhr+msi":
            msi_shapes = [self._msi_shapes[i] for i in picks]
            msis = pixel_list(rows.column("msi_image_chip"), msi_shapes, np.float32)
        out = []
        for i, image, mask, msi in zip(picks, images, masks, msis, strict=True):
            if image is None or mask is None:
                raise ValueError(f"row {self.uids[i]} has no image or no mask")
            sample: Sample = {"image": image, "mask": mask}
            if self.bands == "vhr+msi":
                if msi is None:
                    raise ValueError(f"row {self.uids[i]} has no MSI chip but bands='vhr+msi'")
                m = torch.nan_to_num(_readonly_tensor(msi), nan=0.0, posinf=0.0, neginf=0.0)
                size = tuple(image.shape[-2:])
                sample["msi"] = F.interpolate(
                    m[None], size=size, mode="bilinear", align_corners=False
                )[0]
            out.append(sample)
        return out

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
