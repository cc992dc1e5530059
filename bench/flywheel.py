"""The flywheel on a matrix of worlds: does the loop turn everywhere, not only on the demo world?

Each world (seed x place x panel mix x GSD x density) runs `flywheel rounds --rounds 3` in its own
process with its own data folder and Dagster instance, from 30 % noisy seed labels; the rounds
write a JSON report (flywheel_core.flywheel.report). This script prints, per world and round,
the labels by source, the model's test IoU, and the recall and precision of the active labels
against the hidden truth, then the mean and the worst world per round, separately for the
development worlds and the held-out worlds (looked at only once the rules were settled), and
checks the targets. It writes the table as CSV and Markdown and one PNG plot of recall and
precision per round per world under --out.

With --compare-msi [NAME,...] the development worlds (or the named ones) run a second time with
models trained and run on VHR + Sentinel-2 bands (`--bands vhr+msi`), and a comparison table is
written beside the others. Reports of earlier runs under --out are reused (--fresh ignores them),
so an interrupted bench resumes. With --jobs 2 each world gets the cores split between them
(OMP_NUM_THREADS), since OpenMP threads of two processes fighting for two cores slow training
tenfold.

    python bench/flywheel.py [--only dev|held_out] [--worlds NAME,...] [--jobs 2]
                             [--compare-msi [NAME,...]] [--fresh]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench_summary import Figure, record

ROOT = Path(__file__).resolve().parents[1]
FLYWHEEL = [sys.executable, "-c", "from flywheel_cli.main import cli; cli()"]
DATES = "2024-05-01,2024-06-01,2024-07-01"
CHIP_GROUND_M = 80.0  # chips cover about the same ground at every GSD (256 px at 0.3125 m)

TARGETS = {
    "mean_recall": 0.90,
    "mean_precision": 0.90,
    "worst_recall": 0.75,
    "worst_precision": 0.85,
    "round1_test_iou": 0.5,
}


@dataclass(frozen=True)
class World:
    name: str
    split: str  # "dev" or "held_out"
    seed: int
    lon: float
    lat: float
    cells: int = 4
    gsd: float = 0.3125
    panel_mix: str = "poly=0.4,mono=0.45,thin_film=0.15"
    install_density: float = 1.6
    distractor_density: float = 1.0
    extra: dict = field(default_factory=dict)

    def args(self) -> list[str]:
        return [
            "--seed", str(self.seed),
            "--lon", str(self.lon),
            "--lat", str(self.lat),
            "--cells", str(self.cells),
            "--gsd", str(self.gsd),
            "--panel-mix", self.panel_mix,
            "--install-density", str(self.install_density),
            "--distractor-density", str(self.distractor_density),
        ]  # fmt: skip

    @property
    def chip_px(self) -> int:
        return max(64, round(CHIP_GROUND_M / self.gsd / 32.0) * 32)


# Seeds, places (both hemispheres, tropics, high latitudes), panel mixes, GSDs and densities.
MONO = "poly=0.2,mono=0.7,thin_film=0.1"
POLY = "poly=0.7,mono=0.3,thin_film=0.0"
THIN = "poly=0.3,mono=0.3,thin_film=0.4"
MATRIX = [
    World("munich-s0", "dev", 0, 11.58, 48.14),
    World("london-s1", "dev", 1, -0.12, 51.50, panel_mix=MONO),
    World("madrid-s2", "dev", 2, -3.70, 40.42, gsd=0.5, panel_mix=MONO),
    World("sydney-s3", "dev", 3, 151.21, -33.87, panel_mix=POLY),
    World("nairobi-s4", "dev", 4, 36.82, -1.29, gsd=0.5, panel_mix=THIN),
    World("oslo-s5", "dev", 5, 10.75, 59.91, distractor_density=1.5),
    World("phoenix-s6", "dev", 6, -112.07, 33.45, gsd=0.75, distractor_density=2.0),
    World("santiago-s7", "dev", 7, -70.65, -33.45, gsd=1.0, install_density=2.0),
    World("delhi-s8", "held_out", 8, 77.21, 28.61, gsd=0.5),
    World("capetown-s9", "held_out", 9, 18.42, -33.92, panel_mix=THIN),
    World("helsinki-s10", "held_out", 10, 24.94, 60.17, gsd=0.625, distractor_density=2.0),
    World("bogota-s11", "held_out", 11, -74.07, 4.71, gsd=1.0, panel_mix=MONO),
]


def run_world(
    world: World, out: Path, variant: str, extra_args: list[str], threads: int | None = None
) -> dict:
    """`flywheel rounds` for one world in a fresh data folder; its JSON report."""
    work = out / "runs" / f"{world.name}{variant}"
    report = work / "report.json"
    if report.exists():
        return json.loads(report.read_text())
    data, home = work / "data", work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "FLYWHEEL_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "FLYWHEEL_CHIP_SIZE": str(world.chip_px),
    }
    if threads:  # worlds side by side: split the cores, or OpenMP's spinning threads fight
        env.update(OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    args = ["rounds", "--rounds", "3", "--dates", DATES, "--report", str(report)]
    started = time.monotonic()
    with (work / "rounds.log").open("w") as log:
        proc = subprocess.run(
            [*FLYWHEEL, *args, *world.args(), *extra_args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"{world.name}{variant} failed (exit {proc.returncode}): {work}/rounds.log"
        )
    result = json.loads(report.read_text())
    result["seconds"] = seconds
    report.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  {world.name}{variant}: done in {seconds:.0f} s", flush=True)
    return result


def table_rows(worlds: list[World], results: dict[str, dict]) -> list[dict]:
    rows = []
    for w in worlds:
        for r in results[w.name]["rounds"]:
            rows.append(
                {
                    "world": w.name,
                    "split": w.split,
                    "seed": w.seed,
                    "lat": w.lat,
                    "gsd_m": w.gsd,
                    "panel_mix": w.panel_mix,
                    "round": r["round"],
                    "installations": r["installations"],
                    "labels_seed": r["labels_by_source"].get("seed", 0),
                    "labels_model": r["labels_by_source"].get("model", 0),
                    "labels_other": sum(
                        v for k, v in r["labels_by_source"].items() if k not in ("seed", "model")
                    ),
                    "accepted": r["accepted"],
                    "test_iou": r["test_iou"],
                    "recall": r["recall"],
                    "precision": r["precision"],
                }
            )
    return rows


def summarize(rows: list[dict], split: str) -> list[dict]:
    out = []
    for k in sorted({r["round"] for r in rows}):
        sel = [r for r in rows if r["round"] == k and r["split"] == split]
        if not sel:
            continue
        ious = [r["test_iou"] for r in sel if r["test_iou"] is not None]
        out.append(
            {
                "split": split,
                "round": k,
                "worlds": len(sel),
                "mean_recall": statistics.fmean(r["recall"] for r in sel),
                "worst_recall": min(r["recall"] for r in sel),
                "mean_precision": statistics.fmean(r["precision"] for r in sel),
                "worst_precision": min(r["precision"] for r in sel),
                "mean_test_iou": statistics.fmean(ious) if ious else None,
                "worst_test_iou": min(ious) if len(ious) == len(sel) else None,
            }
        )
    return out


def check_targets(rows: list[dict], split: str) -> list[tuple[str, bool, str]]:
    sel = [r for r in rows if r["split"] == split]
    if not sel:
        return []
    last = max(r["round"] for r in sel)
    final = [r for r in sel if r["round"] == last]
    first = [r for r in sel if r["round"] == 1]
    mean_r = statistics.fmean(r["recall"] for r in final)
    mean_p = statistics.fmean(r["precision"] for r in final)
    worst_r = min(r["recall"] for r in final)
    worst_p = min(r["precision"] for r in final)
    ious = [r["test_iou"] for r in first]
    worst_iou = min((v if v is not None else -1.0) for v in ious)
    rising = []
    for w in sorted({r["world"] for r in sel}):
        rec = [r["recall"] for r in sorted(sel, key=lambda r: r["round"]) if r["world"] == w]
        ok = all(b > a or a > 0.95 for a, b in itertools.pairwise(rec))
        rising.append((w, ok))
    t = TARGETS
    iou_text = f"worst {worst_iou:.3f}" if worst_iou >= 0 else "a world has no test IoU"
    not_rising = ", ".join(w for w, ok in rising if not ok) or "all worlds"
    return [
        (f"mean recall round {last} >= {t['mean_recall']}", mean_r >= t["mean_recall"],
         f"{mean_r:.3f}"),
        (f"mean precision round {last} >= {t['mean_precision']}",
         mean_p >= t["mean_precision"], f"{mean_p:.3f}"),
        (f"worst recall round {last} >= {t['worst_recall']}", worst_r >= t["worst_recall"],
         f"{worst_r:.3f}"),
        (f"worst precision round {last} >= {t['worst_precision']}",
         worst_p >= t["worst_precision"], f"{worst_p:.3f}"),
        ("recall rises every round (unless > 0.95)", all(ok for _, ok in rising), not_rising),
        (f"round 1 test IoU >= {t['round1_test_iou']} on every world",
         worst_iou >= t["round1_test_iou"], iou_text),
    ]  # fmt: skip


def summary_figures(rows: list[dict]) -> list[Figure]:
    """The round-3 quality targets per split, for the benchmark summary table."""
    t, figures = TARGETS, []
    for split in ("dev", "held_out"):
        sel = [r for r in rows if r["split"] == split]
        if not sel:
            continue
        last = max(r["round"] for r in sel)
        final = [r for r in sel if r["round"] == last]
        for metric in ("recall", "precision"):
            values = [r[metric] for r in final]
            tag = f"{split} ({len(final)} worlds), round {last}"
            mean, worst = statistics.fmean(values), min(values)
            figures += [
                Figure(f"{tag}: mean {metric}", mean, t[f"mean_{metric}"], unit=""),
                Figure(f"{tag}: worst {metric}", worst, t[f"worst_{metric}"], unit=""),
            ]
    return figures


def record_table(path: Path) -> None:
    """The summary figures of an earlier run's table, dated by the commit that holds it (or the
    file's time when it is not committed)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["round"] = int(r["round"])
        r["recall"], r["precision"] = float(r["recall"]), float(r["precision"])
    log = ["git", "log", "-1", "--format=%cI", "--", str(path)]
    dated = subprocess.run(log, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    when = dated or mtime
    record("flywheel", summary_figures(rows), measured_at=when, load=None)


def _fmt(v: object) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict], summaries: list[dict], checks: dict, compare: list[dict]) -> str:
    cols = ["world", "split", "round", "installations", "labels_seed", "labels_model",
            "test_iou", "recall", "precision"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "| split | round | worlds | mean recall | worst recall | mean precision | "
              "worst precision | mean test IoU | worst test IoU |", "|" + "---|" * 9]  # fmt: skip
    for s in summaries:
        lines.append(
            "| " + " | ".join(_fmt(s[c]) for c in ("split", "round", "worlds", "mean_recall",
            "worst_recall", "mean_precision", "worst_precision", "mean_test_iou",
            "worst_test_iou")) + " |"
        )  # fmt: skip
    for split, items in checks.items():
        lines += ["", f"Targets ({split}):", ""]
        lines += [f"- {'PASS' if ok else 'FAIL'} {name}: {value}" for name, ok, value in items]
    if compare:
        lines += ["", "VHR vs VHR + MSI (round 3, development worlds):", "",
                  "| world | recall vhr | recall vhr+msi | precision vhr | precision vhr+msi | "
                  "test IoU vhr | test IoU vhr+msi |", "|" + "---|" * 7]  # fmt: skip
        for c in compare:
            lines.append("| " + " | ".join(_fmt(c[k]) for k in c) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for name in sorted({r["world"] for r in rows}):
        sel = sorted((r for r in rows if r["world"] == name), key=lambda r: r["round"])
        style = "-" if sel[0]["split"] == "dev" else "--"
        label = name + (" (held out)" if sel[0]["split"] != "dev" else "")
        for ax, metric in zip(axes, ("recall", "precision"), strict=True):
            ax.plot([r["round"] for r in sel], [r[metric] for r in sel], style, marker="o",
                    label=label)  # fmt: skip
    for ax, metric in zip(axes, ("recall", "precision"), strict=True):
        ax.set_title(f"label {metric} vs hidden truth")
        ax.set_xlabel("round")
        ax.set_ylim(0, 1.02)
        ax.set_xticks(sorted({r["round"] for r in rows}))
        ax.axhline(0.9, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "flywheel")
    ap.add_argument("--only", choices=["dev", "held_out"], default=None)
    ap.add_argument("--worlds", default=None, help="Comma-separated world names.")
    ap.add_argument("--jobs", type=int, default=1, help="Worlds run at once (each in a process).")
    ap.add_argument(
        "--compare-msi",
        nargs="?",
        const="dev",
        default=None,
        help="Also run these worlds (comma-separated; default: every development world) with "
        "VHR + MSI models, and compare.",
    )
    ap.add_argument("--fresh", action="store_true", help="Ignore reports of earlier runs in --out.")
    ap.add_argument(
        "--record-only",
        action="store_true",
        help="Run nothing: put the figures of the table in --out into the benchmark summary.",
    )
    args = ap.parse_args()
    if args.record_only:
        record_table(args.out / "flywheel.csv")
        return
    worlds = [w for w in MATRIX if args.only in (None, w.split)]
    if args.worlds:
        names = set(args.worlds.split(","))
        worlds = [w for w in worlds if w.name in names]
    out = args.out
    if args.fresh and (out / "runs").exists():
        import shutil

        shutil.rmtree(out / "runs")
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(worlds)} worlds x 3 rounds, {args.jobs} at a time -> {out}", flush=True)
    threads = max(1, (os.cpu_count() or 2) // args.jobs) if args.jobs > 1 else None
    msi_names = set()
    if args.compare_msi == "dev":
        msi_names = {w.name for w in worlds if w.split == "dev"}
    elif args.compare_msi:
        msi_names = set(args.compare_msi.split(","))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {w.name: pool.submit(run_world, w, out, "", [], threads) for w in worlds}
        msi = (
            {w.name: pool.submit(run_world, w, out, "-msi", ["--bands", "vhr+msi"], threads)
             for w in worlds if w.name in msi_names}
        )  # fmt: skip
        results, msi_results, failed = {}, {}, []
        for into, jobs, variant in ((results, futures, ""), (msi_results, msi, "-msi")):
            for name, future in jobs.items():
                try:
                    into[name] = future.result()
                except RuntimeError as err:  # reported below; the other worlds still count
                    failed.append(f"{name}{variant}")
                    print(f"  FAILED {err}", flush=True)
    worlds = [w for w in worlds if w.name in results]
    rows = table_rows(worlds, results)
    summaries = [s for split in ("dev", "held_out") for s in summarize(rows, split)]
    checks = {split: check_targets(rows, split) for split in ("dev", "held_out")}
    checks = {k: v for k, v in checks.items() if v}
    compare = []
    for name, res in ((n, r) for n, r in msi_results.items() if n in results):
        a, b = results[name]["rounds"][-1], res["rounds"][-1]
        compare.append(
            {"world": name, "recall_vhr": a["recall"], "recall_msi": b["recall"],
             "precision_vhr": a["precision"], "precision_msi": b["precision"],
             "iou_vhr": a["test_iou"], "iou_msi": b["test_iou"]}
        )  # fmt: skip
    with (out / "flywheel.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows, summaries, checks, compare)
    if failed:
        text += "\nFailed runs (see their rounds.log): " + ", ".join(failed) + "\n"
    (out / "flywheel.md").write_text(text)
    plot(rows, out / "flywheel.png")
    record("flywheel", summary_figures(rows))
    print(text)
    print(f"written: {out / 'flywheel.csv'}, {out / 'flywheel.md'}, {out / 'flywheel.png'}")


if __name__ == "__main__":
    main()
