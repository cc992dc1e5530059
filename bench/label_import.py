"""Label import: 50,000 small polygons, full import vs reading the file alone (the baseline).

Writes one synthetic GeoJSON and one GeoParquet of the same polygons (PV-roof sized, 10-30 m,
spread over a region, with an id, an install year and a name) into a temporary folder, then for
each file, in one run and on the same bytes:

- read alone: `read_frame` + reprojection, what any tool must spend to get the features;
- full import: `import_label_file_into` into an empty, migrated DuckLake (DuckDB-file catalog),
  i.e. what `flywheel labels import` does: hash, parse/validate/index with the lake closed, then
  one write transaction.

It prints labels/s, the import/read-alone ratio, and how long the lake was held (attach +
write + close), which is what other readers and runs wait for. Threads are pinned (BLAS/OpenMP
and DuckDB) so the figures compare across machines and runs.

    python bench/label_import.py [--labels 50000] [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import os

_THREADS = os.environ.get("FLYWHEEL_BENCH_THREADS", "2")
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_name, _THREADS)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import duckdb  # noqa: E402
import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import shapely  # noqa: E402
from bench_summary import Figure, record  # noqa: E402

from flywheel_core.labels.ingest import import_label_file_into  # noqa: E402
from flywheel_core.labels.readers import read_frame, to_wgs84  # noqa: E402
from flywheel_core.lake.config import LakeConfig  # noqa: E402
from flywheel_core.lake.connection import lake_connection  # noqa: E402
from flywheel_core.settings import Settings  # noqa: E402

TARGET_PER_S = 5_000


def make_frame(n: int, seed: int = 7) -> gpd.GeoDataFrame:
    """`n` rectangular roofs of 10-30 m over a 40 km × 45 km region near Berlin."""
    rng = np.random.default_rng(seed)
    lon = 13.0 + rng.random(n) * 0.6
    lat = 52.2 + rng.random(n) * 0.4
    w = (10 + rng.random(n) * 20) / (111_320 * np.cos(np.radians(lat)))
    h = (10 + rng.random(n) * 20) / 111_320
    return gpd.GeoDataFrame(
        {
            "id": np.arange(n),
            "install_year": rng.integers(2012, 2025, n),
            "name": [f"roof-{i}" for i in range(n)],
        },
        geometry=shapely.box(lon, lat, lon + w, lat + h),
        crs=4326,
    )


def _read_alone(path: Path) -> float:
    started = time.perf_counter()
    to_wgs84(read_frame(path), path.name, [])
    return time.perf_counter() - started


def _import(path: Path, folder: Path, settings: Settings, run: int) -> tuple[float, float, int]:
    lake = folder / f"lake-{path.suffix[1:]}-{run}"
    config = LakeConfig(
        catalog=f"duckdb:{lake / 'catalog.ducklake'}", data_path=str(lake / "files")
    )
    with lake_connection(config):
        pass  # an existing, migrated lake: the first open's migrations are not the import's
    started = time.perf_counter()
    done = import_label_file_into(
        config, path, s2_level=settings.s2_level, h3_resolution=settings.h3_resolution
    )
    return time.perf_counter() - started, done.lake_s, done.result.n_inserted


def _bench_file(path: Path, folder: Path, n: int, repeat: int, settings: Settings) -> list[Figure]:
    reads, imports, held = [], [], []
    for run in range(repeat):
        reads.append(_read_alone(path))
        total, lake_s, inserted = _import(path, folder, settings, run)
        if inserted != n:
            raise SystemExit(f"{path.name}: inserted {inserted} of {n} labels")
        imports.append(total)
        held.append(lake_s)
    read_s, import_s, lake_s = (statistics.median(v) for v in (reads, imports, held))
    rate = n / import_s
    print(
        f"{path.suffix[1:]:>8}  {path.stat().st_size / 1e6:7.1f} MB  read alone {read_s:6.2f} s "
        f"({n / read_s:8,.0f}/s)  import {import_s:6.2f} s ({rate:8,.0f} labels/s)  "
        f"ratio {import_s / read_s:4.1f}x  lake held {lake_s:5.2f} s "
        f"({100 * lake_s / import_s:4.1f}% of the import)"
    )
    kind = path.suffix[1:]
    return [
        Figure(f"{kind}: labels/s", rate, TARGET_PER_S, unit="/s"),
        Figure(f"{kind}: import / reading the file alone", import_s / read_s),
        Figure(f"{kind}: share of the import holding the lake", lake_s / import_s, unit=""),
    ]


def _pin_duckdb_threads(threads: int) -> None:
    """Every DuckDB connection of this process (the lake's included) runs `threads` threads."""
    connect = duckdb.connect

    def pinned(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        con = connect(*args, **kwargs)  # type: ignore[arg-type]
        con.execute(f"SET threads = {int(threads)}")
        return con

    duckdb.connect = pinned  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=int(_THREADS))
    parser.add_argument("--repeat", type=int, default=2, help="runs per file; medians shown")
    args = parser.parse_args()
    _pin_duckdb_threads(args.threads)
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="bench-label-import-") as tmp:
        folder = Path(tmp)
        frame = make_frame(args.labels)
        files = [folder / "roofs.geojson", folder / "roofs.parquet"]
        frame.to_file(files[0])
        frame.to_parquet(files[1])
        print(
            f"label import: {args.labels:,} polygons, {args.threads} thread(s), "
            f"median of {args.repeat} run(s); target >= {TARGET_PER_S:,} labels/s"
        )
        figures = []
        for path in files:
            figures += _bench_file(path, folder, args.labels, args.repeat, settings)
    print("target met" if all(f.met is not False for f in figures) else "TARGET MISSED")
    record("label_import", figures)


if __name__ == "__main__":
    main()
