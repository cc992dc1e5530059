"""Training input pipeline: samples/s from the Lance data module vs memory and vs chip files.

A synthetic `training_data` table (default 512 chips of 256 x 256, 4 uint8 bands, the real
schema, written with the project's partition writer) is built in a temporary folder, and the same
chips are also written as one GeoTIFF per chip (4 image bands + the mask band, DEFLATE). Then one
epoch of batches is drawn from each loader below, all with the data module's own train sampler
(positive-aware, one seed per sample) and train transform (D4 on the uint8 chip, photometric
parameters drawn per sample), and the same collate; every loader yields uint8 pixels, which the
model makes float on its device (`dataset.model_batch`):

- memory:  the samples already decoded (uint8 tensors) in a Python list: no I/O, no decoding,
  only the transform (the ceiling);
- lance:   `PVDataModule.train_dataloader()` (one Lance `take` per batch, zero-copy decode),
  workers 0 and N;
- rasterio: a Dataset that opens and reads one chip file per sample, workers 0 and N.

Each loader is timed `--repeat` times, interleaved, and the best epoch is printed with its ratio
to the in-memory ceiling (1.0 = as fast as memory). Worker start-up is excluded by timing from the
first batch on (workers persist across epochs in training, so start-up is paid once a round).
The time `model_batch` takes per batch on this CPU is printed too: on a GPU it runs on the device
after the transfer; in a CPU-only run it is part of the training step, not of the loader.

    python bench/train_loader.py [--chips 512] [--size 256] [--batch 8] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from bench_summary import Figure, record
from torch.utils.data import DataLoader, Dataset

from flywheel_core.train.datamodule import PVDataModule
from flywheel_core.train.dataset import Sample, model_batch, table_uri
from flywheel_core.train.synthetic import synthetic_rows, write_training_table

Item = int | tuple[int, int]


def _transformed(transform: Any, sample: Sample, item: Item) -> Sample:
    """`transform` applied as `LanceChipDataset` applies it (seeded from the item's seed)."""
    if transform is None:
        return sample
    if isinstance(item, tuple | list):
        return transform(sample, torch.Generator().manual_seed(int(item[1])))
    return transform(sample)


class MemoryDataset(Dataset):
    """The same uint8 samples, already decoded; the transform is the only per-sample work."""

    def __init__(self, samples: list[Sample], transform: Any) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: Item) -> Sample:
        i = int(item[0]) if isinstance(item, tuple | list) else int(item)
        return _transformed(self.transform, dict(self.samples[i]), item)


class ChipFileDataset(Dataset):
    """One GeoTIFF per chip (bands 1-4 image, band 5 mask), opened and read per sample."""

    def __init__(self, paths: Sequence[Path], transform: Any) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: Item) -> Sample:
        i = int(item[0]) if isinstance(item, tuple | list) else int(item)
        with rasterio.open(self.paths[i]) as src:
            data = src.read()
        image = torch.from_numpy(data[:4])
        mask = torch.from_numpy((data[4:5] > 0).view(np.uint8))
        sample = {"image": image, "mask": mask, "uid": self.paths[i].stem}
        return _transformed(self.transform, sample, item)


def write_chip_files(rows: list[dict], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for r in rows:
        shape = r["metadata"]["vhr_shape"]
        image = np.frombuffer(r["vhr_image_chip"], np.uint8).reshape(shape)
        mask = np.frombuffer(r["generated_mask"], np.uint8).reshape(shape[1:])
        path = folder / f"{r['uid'].replace('|', '_')}.tif"
        profile = {
            "driver": "GTiff",
            "count": 5,
            "height": shape[1],
            "width": shape[2],
            "dtype": "uint8",
            "crs": "EPSG:32632",
            "transform": Affine(0.3, 0, 691_000.0, 0, -0.3, 5_335_000.0),
            "compress": "DEFLATE",
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.concatenate([image, mask[None]]))
        paths[r["uid"]] = path
    return paths


def epoch_rate(loader: DataLoader) -> tuple[float, int]:
    """(samples/s from the first batch on, samples) for one pass over `loader`."""
    it: Iterable = iter(loader)
    first = next(it)
    n = len(first["uid"])
    t0 = time.perf_counter()
    for batch in it:
        n += len(batch["uid"])
    seconds = time.perf_counter() - t0
    return (n - len(first["uid"])) / max(seconds, 1e-9), n


def conversion_ms(loader: DataLoader, batches: int = 16) -> float:
    """Median ms of `model_batch` (float, photometric) per batch on this CPU, one thread."""
    times = []
    for b, batch in enumerate(loader):
        if b == batches:
            break
        t0 = time.perf_counter()
        model_batch(batch)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=512)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # loaders, not models, are measured; keep the cores for workers

    with tempfile.TemporaryDirectory(prefix="train_loader_") as tmp:
        t0 = time.perf_counter()
        rows = synthetic_rows(args.chips, size=args.size, splits=("train",), seed=0, panels=3)
        db = str(Path(tmp) / "lancedb")
        version = write_training_table(db, rows)
        by_uid = write_chip_files(rows, Path(tmp) / "chips")
        del rows
        uri = table_uri(db, "training_data")
        mb = sum(p.stat().st_size for p in by_uid.values()) / 2**20
        print(
            f"data: {args.chips} chips of 4 x {args.size} x {args.size} uint8 (+ mask); "
            f"Lance v{version}; {mb:.1f} MiB of GeoTIFFs; built in {time.perf_counter() - t0:.1f} s"
        )
        # the data module's train dataset, sampler and transform serve every loader
        ref = PVDataModule(uri, version, batch_size=args.batch)
        train = ref.datasets["train"]
        transform = train.transform
        samples = train.load_all()  # uint8 tensors, already decoded
        paths = [by_uid[u] for u in train.uids]

        def memory(workers: int) -> DataLoader:
            ds = MemoryDataset(samples, transform)
            return DataLoader(ds, args.batch, sampler=ref.train_sampler())

        def lance(workers: int) -> DataLoader:
            dm = PVDataModule(uri, version, batch_size=args.batch, num_workers=workers)
            return dm.train_dataloader()

        def files(workers: int) -> DataLoader:
            return DataLoader(
                ChipFileDataset(paths, transform),
                args.batch,
                sampler=ref.train_sampler(),
                num_workers=workers,
                persistent_workers=workers > 0,
                multiprocessing_context="forkserver" if workers else None,
            )

        cases = [
            ("memory (ceiling), 0 workers", memory(0)),
            ("lance data module, 0 workers", lance(0)),
            (f"lance data module, {args.workers} workers", lance(args.workers)),
            ("rasterio chip files, 0 workers", files(0)),
            (f"rasterio chip files, {args.workers} workers", files(args.workers)),
        ]
        best = {name: 0.0 for name, _ in cases}
        for _ in range(args.repeat):
            for name, loader in cases:
                rate, n = epoch_rate(loader)
                assert n == args.chips, (name, n)
                best[name] = max(best[name], rate)
        convert = conversion_ms(memory(0))
    report(args, best, convert)


def report(args: argparse.Namespace, best: dict[str, float], convert_ms: float) -> None:
    names = list(best)
    ceiling = best[names[0]]
    print(f"{'loader (best of ' + str(args.repeat) + ' epochs)':40}{'samples/s':>11}{'ratio':>8}")
    for name, rate in best.items():
        print(f"{name:40}{rate:11.1f}{rate / ceiling:8.3f}")
    lance0, lance_n = best[names[1]], best[names[2]]
    lance_best = max(lance0, lance_n)
    files_best = max(v for k, v in best.items() if k.startswith("rasterio"))
    best_workers = 0 if lance0 >= lance_n else args.workers
    print(f"ratio lance / memory   = {lance_best / ceiling:.3f} (best: {best_workers} workers)")
    print(f"ratio lance / rasterio = {lance_best / files_best:.3f}")
    steps = math.ceil(args.chips / args.batch)
    print(f"one epoch = {steps} batches of {args.batch}; worker start-up excluded (first batch)")
    print(
        f"model_batch (uint8 -> float, photometric) on this CPU: {convert_ms:.2f} ms a batch "
        "(on the device after the transfer, not in the loader)"
    )
    load = os.getloadavg()[0]
    note = f"{os.cpu_count()} CPUs, load {load:.2f}; memory ceiling at 0 workers"
    record(
        "train_loader",
        [
            Figure("lance / memory, best workers", lance_best / ceiling, 0.85, ">=", note=note),
            Figure("lance / memory, 0 workers", lance0 / ceiling),
            Figure(f"lance / memory, {args.workers} workers", lance_n / ceiling),
            Figure("lance / rasterio", lance_best / files_best),
            Figure("memory ceiling", ceiling, unit=" samples/s"),
            Figure("model_batch on CPU", convert_ms, unit=" ms/batch", note="device-side work"),
        ],
    )


if __name__ == "__main__":
    main()
