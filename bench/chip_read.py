"""Random chip reads: Lance table vs rasterio windowed COG reads vs a numpy memmap (the ceiling).

All methods serve the same chips (4-band VHR image + 1-band PV mask, 256 px) of one synthetic
world, in the same random order, in one run; the script prints chips/s and ratios. The Lance table
is written by the project's own partition writer, so it measures what the assets store; the same
bytes under Lance's default codec are shown too, because that choice is why pixels are stored
uncompressed.

    python bench/chip_read.py [--reads 400] [--cells 4] [--workdir bench/out/chip_read] [--fresh]
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
from flywheel_core.imagery.vhr_chips import VhrScene, iter_vhr_chips
from flywheel_core.settings import ChipSettings
from flywheel_core.store import lance_tables
from flywheel_core.store.lance_tables import pixels_field
from flywheel_core.world.synthetic import generate_world

DAY = date(2024, 6, 1)
SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("cell", pa.string()),
        ("date", pa.string()),
        pixels_field("image"),
        pixels_field("mask"),
    ]
)


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


def build(workdir: Path, n_cells: int) -> tuple[list[dict], Path, Path, Path]:
    """World → mask COGs → chips, stored three ways: Lance (project + default codec), memmap."""
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
    default_uri = workdir / "chips_default_codec.lance"
    plain = stored.cast(pa.schema([pa.field(f.name, f.type) for f in stored.schema]))
    lance.write_dataset(plain, str(default_uri), mode="overwrite")
    size = chips[0]["height"]
    mm_path = workdir / "chips.u8"
    mm = np.memmap(mm_path, dtype=np.uint8, mode="w+", shape=(len(chips), 5, size, size))
    for i, c in enumerate(chips):
        mm[i, :4] = np.frombuffer(c["image"], np.uint8).reshape(4, size, size)
        mm[i, 4] = np.frombuffer(c["mask"], np.uint8).reshape(size, size)
    mm.flush()
    return chips, lance_uri, default_uri, mm_path


def bench_lance(uri: Path, order: np.ndarray, size: int, batch: int = 1) -> float:
    ds = lance.dataset(str(uri))
    t0 = time.perf_counter()
    for k in range(0, len(order), batch):
        rows = ds.take([int(i) for i in order[k : k + batch]], columns=["image", "mask"])
        for j in range(rows.num_rows):
            img = np.frombuffer(rows.column("image")[j].as_py(), np.uint8).reshape(4, size, size)
            msk = np.frombuffer(rows.column("mask")[j].as_py(), np.uint8).reshape(size, size)
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
    parser.add_argument("--reads", type=int, default=400, help="random reads per method")
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/chip_read"))
    parser.add_argument("--fresh", action="store_true", help="regenerate the world")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.workdir.exists():
        keep = args.workdir / "world"
        for child in args.workdir.iterdir():
            if child != keep or args.fresh:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    args.workdir.mkdir(parents=True, exist_ok=True)
    chips, lance_uri, default_uri, mm_path = build(args.workdir, args.cells)
    size = chips[0]["height"]
    order = np.random.default_rng(0).integers(0, len(chips), size=args.reads)
    warm = order[: min(20, len(order))]
    bench_lance(lance_uri, warm, size)
    bench_lance(default_uri, warm, size)
    bench_rasterio(chips, warm)
    bench_memmap(mm_path, len(chips), size, warm)
    results = {
        "numpy memmap (ceiling)": bench_memmap(mm_path, len(chips), size, order),
        "rasterio COG window": bench_rasterio(chips, order),
        "lance take": bench_lance(lance_uri, order, size),
        "lance take, batches of 16": bench_lance(lance_uri, order, size, batch=16),
        "lance take, default codec": bench_lance(default_uri, order, size),
    }
    ceiling, baseline = results["numpy memmap (ceiling)"], results["rasterio COG window"]
    print(
        f"{len(chips)} distinct chips ({size} px, 4 bands + mask), {args.reads} random reads each"
    )
    print(f"{'method':<28}{'chips/s':>10}{'vs memmap':>11}{'vs rasterio':>13}")
    for name, rate in results.items():
        print(f"{name:<28}{rate:>10.0f}{rate / ceiling:>11.3f}{rate / baseline:>13.2f}")


if __name__ == "__main__":
    main()
