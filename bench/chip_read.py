"""Random chip reads: Lance table vs rasterio windowed COG reads vs a numpy memmap (the ceiling).

All three serve the same chips (4-band VHR image + 1-band PV mask, 256 px) from the same
synthetic world, in the same random order, in one run; the script prints chips/s and ratios.

    python bench/chip_read.py [--chips 400] [--cells 4] [--workdir bench/out/chip_read]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path

import geopandas as gpd
import lance
import numpy as np
import pyarrow as pa
import rasterio
from rasterio.features import rasterize
from rasterio.windows import Window

from flywheel_core.geo.s2 import cell_polygon, cells_around
from flywheel_core.imagery.synthetic import generate_world
from flywheel_core.imagery.vhr_chips import VhrScene, iter_vhr_chips
from flywheel_core.settings import ChipSettings

DAY = date(2024, 6, 1)


def build(workdir: Path, n_cells: int) -> tuple[list[dict], Path, Path]:
    """World → per-scene mask COGs → chip list, a Lance table and a memmap of the same bytes."""
    world = workdir / "world"
    cells = cells_around(11.58, 48.14, 15, n_cells)
    if not (world / "catalog.json").exists():
        generate_world(world, cells, [DAY], seed=0)
    truth = gpd.read_parquet(world / "truth.parquet")
    chips: list[dict] = []
    for cell in cells:
        scene = world / "vhr" / cell / f"{DAY.isoformat()}.tif"
        mask_path = scene.with_name(f"{DAY.isoformat()}_mask.tif")
        with rasterio.open(scene) as src:
            shapes = truth.to_crs(src.crs).geometry
            mask = rasterize(
                ((g, 1) for g in shapes if g is not None),
                out_shape=src.shape,
                transform=src.transform,
                dtype="uint8",
            )
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
        with rasterio.open(mask_path, "w", **profile) as dst:
            dst.write(mask, 1)
        ref = VhrScene(str(scene), cell, "synthetic-vhr", datetime(2024, 6, 1, tzinfo=UTC))
        for row in iter_vhr_chips(ref, cell, DAY, cell_polygon(cell), ChipSettings(), 15, 11):
            with rasterio.open(mask_path) as m:
                win = Window(row["col_off"], row["row_off"], row["width"], row["height"])
                row["mask"] = m.read(1, window=win).tobytes()
            row["mask_href"] = str(mask_path)
            chips.append(row)
    table = pa.table(
        {
            "image": pa.array([c["image"] for c in chips], pa.binary()),
            "mask": pa.array([c["mask"] for c in chips], pa.binary()),
        }
    )
    lance_uri = workdir / "chips.lance"
    lance.write_dataset(table, str(lance_uri), mode="overwrite")
    size = chips[0]["height"]
    mm_path = workdir / "chips.u8"
    mm = np.memmap(mm_path, dtype=np.uint8, mode="w+", shape=(len(chips), 5, size, size))
    for i, c in enumerate(chips):
        mm[i, :4] = np.frombuffer(c["image"], np.uint8).reshape(4, size, size)
        mm[i, 4] = np.frombuffer(c["mask"], np.uint8).reshape(size, size)
    mm.flush()
    return chips, lance_uri, mm_path


def bench_lance(uri: Path, order: np.ndarray, size: int) -> float:
    ds = lance.dataset(str(uri))
    t0 = time.perf_counter()
    for i in order:
        row = ds.take([int(i)], columns=["image", "mask"])
        img = np.frombuffer(row.column("image")[0].as_py(), np.uint8).reshape(4, size, size)
        msk = np.frombuffer(row.column("mask")[0].as_py(), np.uint8).reshape(size, size)
        _ = int(img[0, 0, 0]) + int(msk[0, 0])
    return len(order) / (time.perf_counter() - t0)


def bench_rasterio(chips: list[dict], order: np.ndarray) -> float:
    handles: dict[str, rasterio.io.DatasetReader] = {}
    t0 = time.perf_counter()
    for i in order:
        c = chips[int(i)]
        win = Window(c["col_off"], c["row_off"], c["width"], c["height"])
        for href in (c["scene_href"], c["mask_href"]):
            if href not in handles:
                handles[href] = rasterio.open(href)
        img = handles[c["scene_href"]].read(window=win)
        msk = handles[c["mask_href"]].read(1, window=win)
        _ = int(img[0, 0, 0]) + int(msk[0, 0])
    rate = len(order) / (time.perf_counter() - t0)
    for h in handles.values():
        h.close()
    return rate


def bench_memmap(path: Path, n: int, size: int, order: np.ndarray) -> float:
    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 5, size, size))
    t0 = time.perf_counter()
    for i in order:
        sample = np.array(mm[int(i)])
        _ = int(sample[0, 0, 0])
    return len(order) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=400, help="random reads per method")
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/chip_read"))
    parser.add_argument("--fresh", action="store_true", help="regenerate the world")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.fresh and args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True, exist_ok=True)
    chips, lance_uri, mm_path = build(args.workdir, args.cells)
    size = chips[0]["height"]
    order = np.random.default_rng(0).integers(0, len(chips), size=args.chips)
    warm = order[: min(20, len(order))]
    (
        bench_lance(lance_uri, warm, size),
        bench_rasterio(chips, warm),
        bench_memmap(mm_path, len(chips), size, warm),
    )
    results = {
        "numpy memmap (ceiling)": bench_memmap(mm_path, len(chips), size, order),
        "lance take": bench_lance(lance_uri, order, size),
        "rasterio COG window": bench_rasterio(chips, order),
    }
    ceiling = results["numpy memmap (ceiling)"]
    print(
        f"{len(chips)} distinct chips ({size} px, 4 bands + mask), {args.chips} random reads each"
    )
    print(f"{'method':<26}{'chips/s':>12}{'vs memmap':>12}{'vs rasterio':>13}")
    for name, rate in results.items():
        print(
            f"{name:<26}{rate:>12.0f}{rate / ceiling:>12.3f}"
            f"{rate / results['rasterio COG window']:>13.2f}"
        )


if __name__ == "__main__":
    main()
