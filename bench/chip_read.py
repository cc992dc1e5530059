"""Random chip reads: Lance (the project's `ChipReader`) vs rasterio windowed COG reads vs a
numpy memmap of the same bytes (the ceiling).

All methods serve the same chips (4-band VHR image + 1-band PV mask, 256 px) of one synthetic
world of 48 cells (>= 500 distinct chips; a 1152 x 1152 scene COG, DEFLATE, 512-px blocks, and a
mask COG per cell), in the same random order. The Lance table is written by the project's
partition writer, so it has one fragment per partition, as the assets leave it.

Regimes:
- warm, world > GDAL's block cache (the headline): page cache warm, GDAL_CACHEMAX set to a
  quarter of the world's decoded bytes, so rasterio decodes most windows as it would over any
  archive larger than its cache (GDAL's default cache is 5 % of RAM: any archive over ~1.2 GB
  here). The whole-world-cached figure is printed too: there rasterio copies decoded blocks from
  its own cache and no store that reads files can match it;
- cold: the page cache dropped (`/proc/sys/vm/drop_caches`, root only; the script says when it
  cannot) and every chip read once, in random order.

Every measurement runs in its own fresh process pinned to the same CPUs, so no method inherits
another's warm allocator, block cache or Lance handle, and the allocator variant is measured
honestly (`FLYWHEEL_MALLOC_TUNING=0` in that process only). Warm figures are the best of
`--repeat` passes of `--reads` random reads after a warm-up pass. Batched methods read batches
of 16: Lance and memmap take the batch's positions in one call, rasterio reads the batch's
windows sorted by file (its best order).

Lance variants, for the reasons the design is what it is: the same rows rewritten as one
fragment, `to_pylist` decode with an unsorted take (the former read path), glibc allocator
untuned, a fixed-size binary column, Lance's default codec.

    python bench/chip_read.py [--reads 2000] [--cells 48] [--repeat 3] [--workdir ...] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import geopandas as gpd
import lance
import numpy as np
import pyarrow as pa
import rasterio
from bench_summary import Figure, record
from rasterio.features import rasterize
from rasterio.windows import Window

from flywheel_core.geo.s2 import cell_polygon, cells_around
from flywheel_core.imagery.vhr_chips import VhrScene, iter_vhr_chips
from flywheel_core.settings import ChipSettings
from flywheel_core.store import lance_tables
from flywheel_core.store.chip_reader import ChipReader
from flywheel_core.store.lance_tables import pixels_field
from flywheel_core.world.synthetic import generate_world

DAY = date(2024, 6, 1)
BATCH = 16
SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("cell", pa.string()),
        ("date", pa.string()),
        pixels_field("image"),
        pixels_field("mask"),
    ]
)

# -- data -------------------------------------------------------------------------------------


def _mask_cog(scene: Path, truth: gpd.GeoDataFrame) -> Path:
    """The true PV mask on the scene's grid, as a COG beside it."""
    path = scene.with_name(f"{scene.stem}_mask.tif")
    with rasterio.open(scene) as src:
        shapes = [(g, 1) for g in truth.to_crs(src.crs).geometry if g is not None]
        mask = rasterize(shapes, out_shape=src.shape, transform=src.transform, dtype="uint8")
        profile = {
            "driver": "COG",
            "width": src.width,
            "height": src.height,
            "count": 1,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.transform,
            "BLOCKSIZE": 256,
        }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(mask, 1)
    return path


def build(workdir: Path, n_cells: int) -> dict:
    """World → mask COGs → chips, stored as Lance (project layout, fixed-size binary, default
    codec) and as a memmap; returns the layout (paths, chip windows in Lance row order)."""
    world = workdir / "world"
    cells = cells_around(11.58, 48.14, 15, n_cells)
    if not (world / "catalog.json").exists():
        generate_world(world, cells, [DAY], seed=0)
    truth = gpd.read_parquet(world / "truth.parquet")
    db = lance_tables.connect(str(workdir / "lancedb"))
    chips: list[dict] = []
    for cell in cells:
        scene = world / "vhr" / cell / f"{DAY.isoformat()}.tif"
        mask_path = _mask_cog(scene, truth)
        ref = VhrScene(str(scene), cell, "synthetic-vhr", datetime(2024, 6, 1, tzinfo=UTC))
        rows = list(iter_vhr_chips(ref, cell, DAY, cell_polygon(cell), ChipSettings(), 15, 11))
        with rasterio.open(mask_path) as m:
            for row in rows:
                win = Window(row["col_off"], row["row_off"], row["width"], row["height"])
                row["mask"] = m.read(1, window=win).tobytes()
                row["mask_href"] = str(mask_path)
        table = pa.Table.from_pylist([{f.name: r[f.name] for f in SCHEMA} for r in rows], SCHEMA)
        lance_tables.replace_partition(db, "chips", table, {"cell": cell, "date": DAY.isoformat()})
        chips.extend(rows)
    lance_uri = workdir / "lancedb" / "chips.lance"
    stored = lance.dataset(str(lance_uri)).to_table()
    position = {u: i for i, u in enumerate(stored["uid"].to_pylist())}
    chips.sort(key=lambda c: position[c["uid"]])  # row i of every store is the same chip
    size = chips[0]["height"]
    image_bytes, mask_bytes = 4 * size * size, size * size
    fixed = pa.schema(
        [
            pa.field("image", pa.binary(image_bytes), nullable=False),
            pa.field("mask", pa.binary(mask_bytes), nullable=False),
        ]
    )
    pixels = stored.select(["image", "mask"])
    lance.write_dataset(
        pixels.cast(fixed), str(workdir / "chips_fixed.lance"), mode="overwrite", schema=fixed
    )
    one = workdir / "chips_one_fragment.lance"
    lance.write_dataset(pixels, str(one), mode="overwrite", schema=pixels.schema)
    plain = pixels.cast(pa.schema([pa.field(f.name, f.type) for f in pixels.schema]))
    lance.write_dataset(plain, str(workdir / "chips_default_codec.lance"), mode="overwrite")
    shape = (len(chips), 5, size, size)
    mm = np.memmap(workdir / "chips.u8", dtype=np.uint8, mode="w+", shape=shape)
    for i, c in enumerate(chips):
        mm[i, :4] = np.frombuffer(c["image"], np.uint8).reshape(4, size, size)
        mm[i, 4] = np.frombuffer(c["mask"], np.uint8).reshape(size, size)
    mm.flush()
    windows = [
        [c["scene_href"], c["mask_href"], c["col_off"], c["row_off"], c["width"], c["height"]]
        for c in chips
    ]
    decoded = 0
    for href in {w[0] for w in windows} | {w[1] for w in windows}:
        with rasterio.open(href) as src:
            decoded += src.width * src.height * src.count
    layout = {
        "chips": len(chips),
        "size": size,
        "windows": windows,
        "cells": len(cells),
        "decoded_bytes": decoded,
    }
    (workdir / "layout.json").write_text(json.dumps(layout))
    return layout


# -- one measurement (runs in its own process) -------------------------------------------------


def _lance_reader(workdir: Path, table: str, size: int) -> ChipReader:
    shapes = {"image": (4, size, size), "mask": (size, size)}
    return ChipReader(str(workdir / table), shapes)


def _read_lance(reader: ChipReader, batch: np.ndarray) -> None:
    got = reader.read(batch)
    _ = int(got["image"][-1, 0, 0, 0]) + int(got["mask"][-1, 0, 0])


def _read_lance_pylist(ds: lance.LanceDataset, batch: np.ndarray, size: int) -> None:
    """The former path: unsorted take, then `to_pylist` and `frombuffer` per row."""
    rows = ds.take(batch.tolist(), columns=["image", "mask"])
    for img_b, msk_b in zip(rows["image"].to_pylist(), rows["mask"].to_pylist(), strict=True):
        img = np.frombuffer(img_b, np.uint8).reshape(4, size, size)
        msk = np.frombuffer(msk_b, np.uint8).reshape(size, size)
        _ = int(img[0, 0, 0]) + int(msk[0, 0])


class _Rasterio:
    def __init__(self, windows: list) -> None:
        self.windows, self.handles = windows, {}

    def read(self, batch: np.ndarray) -> None:
        for i in sorted(batch.tolist(), key=lambda i: (self.windows[i][0], i)):
            scene, mask, col, row, w, h = self.windows[i]
            for href in (scene, mask):
                if href not in self.handles:
                    self.handles[href] = rasterio.open(href)
            win = Window(col, row, w, h)
            img = self.handles[scene].read(window=win)
            msk = self.handles[mask].read(1, window=win)
            _ = int(img[0, 0, 0]) + int(msk[0, 0])


def measure(workdir: Path, method: str, batch: int, passes: list[list[int]]) -> list[float]:
    """Chips/s of each pass; the first pass is the warm-up (or the cold pass) itself."""
    layout = json.loads((workdir / "layout.json").read_text())
    size = layout["size"]
    if method == "memmap":
        n = layout["chips"]
        mm = np.memmap(workdir / "chips.u8", dtype=np.uint8, mode="r", shape=(n, 5, size, size))

        def read(b: np.ndarray) -> None:
            sample = mm[np.sort(b)] if len(b) > 1 else np.array(mm[int(b[0])])
            _ = int(sample.reshape(-1)[-1])
    elif method == "rasterio":
        read = _Rasterio(layout["windows"]).read
    elif method == "lance-pylist":
        ds = lance.dataset(str(workdir / "lancedb" / "chips.lance"))

        def read(b: np.ndarray) -> None:
            _read_lance_pylist(ds, b, size)
    else:
        table = {
            "lance": "lancedb/chips.lance",
            "lance-one-fragment": "chips_one_fragment.lance",
            "lance-fixed": "chips_fixed.lance",
            "lance-default-codec": "chips_default_codec.lance",
        }[method]
        reader = _lance_reader(workdir, table, size)

        def read(b: np.ndarray) -> None:
            _read_lance(reader, b)

    rates = []
    for order in passes:
        arr = np.asarray(order, dtype=np.int64)
        t0 = time.perf_counter()
        for k in range(0, len(arr), batch):
            read(arr[k : k + batch])
        rates.append(len(arr) / (time.perf_counter() - t0))
    return rates


# -- the driver ---------------------------------------------------------------------------------


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def run_measure(args: argparse.Namespace, method: str, batch: int, passes: list, env: dict) -> list:
    spec = args.workdir / f"passes-{os.getpid()}.json"
    spec.write_text(json.dumps(passes))
    cmd = [sys.executable, __file__, "--measure", method, "--batch", str(batch)]
    cmd += ["--workdir", str(args.workdir), "--passes", str(spec)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000, help="random reads per warm pass")
    parser.add_argument("--cells", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3, help="warm passes (best is kept)")
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/chip_read"))
    parser.add_argument("--fresh", action="store_true", help="regenerate the world")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache passes")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        passes = json.loads(args.passes.read_text())
        print(json.dumps(measure(args.workdir, args.measure, args.batch, passes)))
        return
    logging.basicConfig(level=logging.WARNING)
    if args.workdir.exists():
        keep = args.workdir / "world"
        for child in args.workdir.iterdir():
            if child != keep or args.fresh:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    layout = build(args.workdir, args.cells)
    n = layout["chips"]
    print(
        f"{n} distinct chips ({layout['size']} px, 4 bands + mask) over {layout['cells']} cells "
        f"(one scene COG + one mask COG each); built in {time.perf_counter() - t0:.0f} s"
    )
    report(args, layout)


CASES = [  # (label, method, batch, malloc tuned, GDAL cache holds the world)
    ("numpy memmap (ceiling)", "memmap", 1, True, False),
    ("numpy memmap, batches of 16", "memmap", BATCH, True, False),
    ("rasterio COG window", "rasterio", 1, True, False),
    ("rasterio COG windows, batches of 16", "rasterio", BATCH, True, False),
    ("lance ChipReader", "lance", 1, True, False),
    ("lance ChipReader, batches of 16", "lance", BATCH, True, False),
    ("  rasterio, world in GDAL cache", "rasterio", 1, True, True),
    ("  rasterio, world in GDAL cache, b16", "rasterio", BATCH, True, True),
    ("  lance rows in one fragment, b16", "lance-one-fragment", BATCH, True, False),
    ("  lance malloc untuned, b16", "lance", BATCH, False, False),
    ("  lance to_pylist + unsorted (former), b16", "lance-pylist", BATCH, True, False),
    ("  lance fixed-size binary, b16", "lance-fixed", BATCH, True, False),
    ("  lance default codec, b16", "lance-default-codec", BATCH, True, False),
]


def report(args: argparse.Namespace, layout: dict) -> None:
    n = layout["chips"]
    rng = np.random.default_rng(0)
    warm = [rng.integers(0, n, size=args.reads).tolist() for _ in range(args.repeat + 1)]
    cold_order = rng.permutation(n).tolist()
    cpus = sorted(os.sched_getaffinity(0))
    can_drop = not args.no_cold and drop_page_cache()
    # every reader gets the cores Lance's own thread pools use (one per CPU)
    threads = str(len(cpus))
    base_env = os.environ | {"OMP_NUM_THREADS": threads, "GDAL_NUM_THREADS": threads}
    bounded_mb = max(layout["decoded_bytes"] // 4 // 2**20, 1)
    warm_rates, cold_rates = {}, {}
    for label, method, batch, tuned, whole_world in CASES:
        env = base_env | {"FLYWHEEL_MALLOC_TUNING": "1" if tuned else "0"}
        if method == "rasterio":
            env["GDAL_CACHEMAX"] = str(2048 if whole_world else bounded_mb)
        warm_rates[label] = max(run_measure(args, method, batch, warm, env)[1:])
        if can_drop and not label.startswith("  "):
            drop_page_cache()
            cold_rates[label] = run_measure(args, method, batch, [cold_order], env)[0]
    print(
        f"pinned to CPUs {cpus}; GDAL/OpenMP threads {threads} (Lance: one per CPU); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"GDAL_CACHEMAX {bounded_mb} MB = 1/4 of the world's {layout['decoded_bytes'] / 2**20:.0f}"
        " MB decoded (rows marked 'world in GDAL cache': 2048 MB)"
    )
    print(f"warm: best of {args.repeat} passes of {args.reads} random reads after a warm-up")
    if cold_rates:
        print(f"cold: page cache dropped, each of the {n} chips read once in random order")
    else:
        print("cold: not measured (no permission to drop the page cache here, or --no-cold)")
    print(f"{'method':<40}{'warm /s':>9}{'vs memmap':>10}{'vs rasterio':>12}{'cold /s':>9}")
    for label, _method, batch, _tuned, _whole in CASES:
        mm = warm_rates["numpy memmap (ceiling)" if batch == 1 else "numpy memmap, batches of 16"]
        rio = warm_rates[
            "rasterio COG window" if batch == 1 else "rasterio COG windows, batches of 16"
        ]
        rate = warm_rates[label]
        cold = f"{cold_rates[label]:9.0f}" if label in cold_rates else f"{'':9}"
        print(f"{label:<40}{rate:9.0f}{rate / mm:10.3f}{rate / rio:12.2f}{cold}")
    summarize(warm_rates, cold_rates)


def summarize(warm: dict, cold: dict) -> None:
    lb, ls = warm["lance ChipReader, batches of 16"], warm["lance ChipReader"]
    rio_b, rio_s = warm["rasterio COG windows, batches of 16"], warm["rasterio COG window"]
    figures = [
        Figure("lance b16 / rasterio b16 (world > GDAL cache)", lb / rio_b, 3.0),
        Figure("lance b16 / memmap b16", lb / warm["numpy memmap, batches of 16"], 0.25),
        Figure("lance single / rasterio single (world > GDAL cache)", ls / rio_s, 1.5),
        Figure("lance b16 / rasterio b16 (world in GDAL cache)", lb / warm[CASES[7][0]]),
        Figure("lance single / rasterio single (world in GDAL cache)", ls / warm[CASES[6][0]]),
        Figure("lance b16: one fragment / one per partition", warm[CASES[8][0]] / lb),
        Figure("lance b16: tuned / untuned malloc", lb / warm[CASES[9][0]]),
        Figure("lance b16: ChipReader / former read path", lb / warm[CASES[10][0]]),
        Figure("lance b16: fixed-size / variable binary column", warm[CASES[11][0]] / lb),
    ]
    if cold:
        figures += [
            Figure(
                "cold: lance b16 / rasterio b16",
                cold["lance ChipReader, batches of 16"]
                / cold["rasterio COG windows, batches of 16"],
            ),
            Figure(
                "cold: lance single / rasterio single",
                cold["lance ChipReader"] / cold["rasterio COG window"],
            ),
        ]
    record("chip_read", figures)


if __name__ == "__main__":
    main()
