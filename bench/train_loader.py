"""Training input pipeline: samples/s from the Lance data module vs memory and vs chip files.

A synthetic `training_data` table (default 512 chips of 256 x 256, 4 uint8 bands, the real
schema, written with the project's partition writer) is built in a temporary folder, and the same
chips are also written as one GeoTIFF per chip (4 image bands + the mask band, DEFLATE). Then one
epoch of shuffled batches, with the same D4 augmentation and collate, is drawn from:

- memory:  the decoded sample tensors in a Python list: no I/O, no decoding (the ceiling);
- lance:   `PVDataModule.train_dataloader()` (one Lance `take` per batch), workers 0 and N;
- rasterio: a Dataset that opens and reads one chip file per sample, workers 0 and N.

Each loader is timed `--repeat` times, interleaved, and the best epoch is printed with its ratio
to the in-memory ceiling (1.0 = as fast as memory). Worker start-up is excluded by timing from the
first batch on (workers persist across epochs in training, so start-up is paid once a round).

    python bench/train_loader.py [--chips 512] [--size 256] [--batch 8] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from torch.utils.data import DataLoader, Dataset

from flywheel_core.train.augment import D4Augment
from flywheel_core.train.datamodule import PVDataModule
from flywheel_core.train.dataset import LanceChipDataset, Sample, table_uri
from flywheel_core.train.synthetic import synthetic_rows, write_training_table


class MemoryDataset(Dataset):
    """Already-decoded samples; the transform is the only per-sample work."""

    def __init__(self, samples: list[Sample], transform: D4Augment) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.transform(dict(self.samples[i]))


class ChipFileDataset(Dataset):
    """One GeoTIFF per chip (bands 1-4 image, band 5 mask), opened and read per sample."""

    def __init__(self, paths: list[Path], transform: D4Augment) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Sample:
        with rasterio.open(self.paths[i]) as src:
            data = src.read()
        image = torch.from_numpy(data[:4].astype(np.float32)).div_(255.0)
        mask = torch.from_numpy((data[4:5] > 0).astype(np.float32))
        return self.transform({"image": image, "mask": mask, "uid": self.paths[i].stem})


def write_chip_files(rows: list[dict], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
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
        paths.append(path)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=512)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # loaders, not models, are measured; keep the cores for workers

    with tempfile.TemporaryDirectory(prefix="bench-train-loader-") as tmp:
        t0 = time.perf_counter()
        rows = synthetic_rows(args.chips, size=args.size, splits=("train",), seed=0, panels=3)
        db = str(Path(tmp) / "lancedb")
        version = write_training_table(db, rows)
        paths = write_chip_files(rows, Path(tmp) / "chips")
        del rows
        uri = table_uri(db, "training_data")
        mb = sum(p.stat().st_size for p in paths) / 2**20
        print(
            f"data: {args.chips} chips of 4 x {args.size} x {args.size} uint8 (+ mask); "
            f"Lance v{version}; {mb:.1f} MiB of GeoTIFFs; built in {time.perf_counter() - t0:.1f} s"
        )
        samples = LanceChipDataset(uri, version, split="train").load_all()

        def generator() -> torch.Generator:
            return torch.Generator().manual_seed(0)

        def memory(workers: int) -> DataLoader:
            ds = MemoryDataset(samples, D4Augment())
            return DataLoader(ds, args.batch, shuffle=True, generator=generator())

        def lance(workers: int) -> DataLoader:
            dm = PVDataModule(uri, version, batch_size=args.batch, num_workers=workers)
            return dm.train_dataloader()

        def files(workers: int) -> DataLoader:
            ds = ChipFileDataset(paths, D4Augment())
            return DataLoader(
                ds,
                args.batch,
                shuffle=True,
                generator=generator(),
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

    ceiling = best[cases[0][0]]
    print(f"{'loader (best of ' + str(args.repeat) + ' epochs)':40}{'samples/s':>11}{'ratio':>8}")
    for name, rate in best.items():
        print(f"{name:40}{rate:11.1f}{rate / ceiling:8.3f}")
    lance_best = max(v for k, v in best.items() if k.startswith("lance"))
    files_best = max(v for k, v in best.items() if k.startswith("rasterio"))
    print(f"ratio lance / memory   = {lance_best / ceiling:.3f}")
    print(f"ratio lance / rasterio = {lance_best / files_best:.3f}")
    steps = math.ceil(args.chips / args.batch)
    print(f"one epoch = {steps} batches of {args.batch}; worker start-up excluded (first batch)")


if __name__ == "__main__":
    main()
