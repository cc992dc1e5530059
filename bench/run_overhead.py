"""Run start: what loading the code location and starting a one-partition run cost (issue 12.5).

Two figures, both on this machine, in this run:

1. `import flywheel_assets.definitions` in a fresh interpreter, median of --repeat, next to the
   baseline of the same interpreter importing the definitions AND the step modules they used to
   import at load time (torch, lightning, lancedb, geopandas, scipy: what every Dagster process
   paid before the imports moved into the assets). `-X importtime` lists the top offenders of
   the definitions alone. Target: <= 2 s.
2. `dagster asset materialize --select seed_labels,vhr_chips` for one partition of a synthetic
   world (1 cell, 1 date, generated in a temp dir), wall time of the whole CLI process against
   the sum of the steps' compute time (STEP_START -> STEP_SUCCESS in the Dagster event log), as
   a ratio, once with the multiprocess executor (Dagster's default: a subprocess per step, each
   importing the code location) and once with the in_process executor chosen through run config
   (`execution: {config: {in_process: {}}}`, as the launchpad can). Target: ratio <= 3.

Threads are pinned (OMP/MKL/OPENBLAS = --threads) for every child process.

    python bench/run_overhead.py [--repeat 5] [--threads 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_summary

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CELL_LONLAT = ("11.58", "48.14")
DATE = "2024-06-01"
ASSETS = "seed_labels,vhr_chips"
IMPORT_TARGET_S = 2.0
RATIO_TARGET = 3.0
# What flywheel_assets.definitions imported at load time before issue 12.5 (the baseline).
EAGER_STEP_MODULES = (
    "flywheel_core.train.round",
    "flywheel_core.train.trainer",
    "flywheel_core.embed.dinov3",
    "flywheel_core.embed.partition",
    "flywheel_core.masks.factory",
    "flywheel_core.flywheel.partition",
    "flywheel_core.rasters.scenes",
    "flywheel_core.masks.backends.registry",
    "flywheel_core.infer.partition",
    "geopandas",
)


def _env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    pinned = {
        k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    }
    return {**os.environ, **pinned, "PYTHONWARNINGS": "ignore", **(extra or {})}


def _time_import(modules: list[str], env: dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); import {', '.join(modules)}; " + (
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def _importtime_top(env: dict[str, str], n: int = 12) -> list[tuple[float, str]]:
    """Top-level packages by cumulative import time (each counted where first imported)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import flywheel_assets.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    best: dict[str, float] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        top = name.strip().split(".")[0]
        if top != "flywheel_assets":
            best[top] = max(best.get(top, 0.0), int(cumulative) / 1e6)
    return sorted(((s, m) for m, s in best.items()), reverse=True)[:n]


def import_figures(repeat: int, env: dict[str, str]) -> dict[str, float]:
    """Median fresh-interpreter import times, after one untimed import that warms the page cache
    (else the first figure pays for reading every .pyc and shared library from disk)."""
    _time_import(["flywheel_assets.definitions", *EAGER_STEP_MODULES], env)
    light = [_time_import(["flywheel_assets.definitions"], env) for _ in range(repeat)]
    eager = [
        _time_import(["flywheel_assets.definitions", *EAGER_STEP_MODULES], env)
        for _ in range(repeat)
    ]
    floor = [_time_import(["dagster"], env) for _ in range(repeat)]
    print(f"\n== import flywheel_assets.definitions (fresh interpreter, median of {repeat})")
    print(f"  definitions (now)                    {statistics.median(light):6.2f} s")
    print(f"  baseline: + the eager step imports   {statistics.median(eager):6.2f} s")
    print(f"  floor: import dagster alone          {statistics.median(floor):6.2f} s")
    ratio = statistics.median(light) / statistics.median(eager)
    print(f"  ratio now/baseline                   {ratio:6.2f}")
    verdict = "MET" if statistics.median(light) <= IMPORT_TARGET_S else "MISSED"
    print(f"  target <= {IMPORT_TARGET_S} s: {verdict}")
    print("  -X importtime, top packages (cumulative s, where first imported):")
    for seconds, module in _importtime_top(env):
        print(f"    {seconds:6.2f}  {module}")
    return {"import_s": statistics.median(light), "import_baseline_s": statistics.median(eager)}


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall


def prepare_world(work: Path, env: dict[str, str]) -> str:
    """A 1-cell, 1-date synthetic world, its seeds in DuckLake, its cell registered; the key."""
    from flywheel_core.geo.s2 import cell_from_lonlat

    fly = [sys.executable, "-c", "from flywheel_cli.main import cli; cli()"]
    cell = cell_from_lonlat(float(CELL_LONLAT[0]), float(CELL_LONLAT[1]), 15)
    _run([*fly, "world", "generate", "--out", str(work / "world"), "--cell", cell,
          "--dates", DATE], env, work)  # fmt: skip
    seeds = sorted((work / "world").glob("seed_labels*"))[0]
    _run([*fly, "labels", "import", str(seeds)], env, work)
    _run([*fly, "cells", "add", "--token", cell], env, work)
    return f"{cell}|{DATE}"


def _step_seconds(dagster_home: Path) -> dict[str, float]:
    """Per-step compute seconds of the latest run: STEP_START to STEP_SUCCESS."""
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(str(dagster_home)) as instance:
        run = instance.get_runs(limit=1)[0]
        starts: dict[str, float] = {}
        seconds: dict[str, float] = {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                starts[event.step_key] = record.timestamp
            elif event.event_type == DagsterEventType.STEP_SUCCESS:
                seconds[event.step_key] = record.timestamp - starts[event.step_key]
        return seconds


def materialize_figures(work: Path, env: dict[str, str], key: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    print(f"\n== dagster asset materialize --select {ASSETS} --partition '{key}'")
    for executor in ("multiprocess", "in_process"):
        config = work / f"{executor}.yaml"
        config.write_text(f"execution:\n  config:\n    {executor}: {{}}\n")
        cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "flywheel_assets.definitions",
               "--select", ASSETS, "--partition", key, "-c", str(config)]  # fmt: skip
        wall = _run(cmd, env, work)
        steps = _step_seconds(Path(env["DAGSTER_HOME"]))
        compute = sum(steps.values())
        ratio = wall / compute
        detail = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(steps.items()))
        print(f"  {executor:13s} wall {wall:6.2f} s, steps {compute:6.2f} s ({detail})")
        verdict = "MET" if ratio <= RATIO_TARGET else "MISSED"
        print(f"  {'':13s} ratio wall/compute {ratio:5.2f}  (target <= {RATIO_TARGET}: {verdict})")
        figures[f"{executor}_ratio"] = ratio
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh imports per figure")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads per child")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--skip-materialize", action="store_true", help="import figures only")
    args = parser.parse_args()
    imports = import_figures(args.repeat, _env(args.threads))
    figures = [
        bench_summary.Figure(
            "import flywheel_assets.definitions", imports["import_s"], IMPORT_TARGET_S, "<=", " s"
        ),
        bench_summary.Figure(
            "import: eager step imports / now",
            imports["import_baseline_s"] / imports["import_s"],
            note="the baseline imports what the assets used to import at load",
        ),
    ]
    if args.skip_materialize:
        bench_summary.record("run_overhead", figures)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="run_overhead_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        home = work / "dagster_home"
        home.mkdir(exist_ok=True)
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        env = _env(
            args.threads,
            {
                "DAGSTER_HOME": str(home),
                "FLYWHEEL_DATA_DIR": str(work / "data"),
                "FLYWHEEL_WORLD_DIR": str(work / "world"),
                "PYTHONPATH": str(ROOT),
            },
        )
        key = prepare_world(work, env)
        ratios = materialize_figures(work, env, key)
        figures += [
            bench_summary.Figure(
                "materialize seed_labels,vhr_chips: wall / asset compute (in_process)",
                ratios["in_process_ratio"],
                RATIO_TARGET,
                "<=",
            ),
            bench_summary.Figure(
                "materialize: wall / asset compute (multiprocess executor)",
                ratios["multiprocess_ratio"],
            ),
        ]
        bench_summary.record("run_overhead", figures)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
