"""One table of every benchmark ratio and its target, so a regression is visible at a glance.

Each benchmark calls `record(bench, rows)` at its end; that writes
`bench/results/summary/<bench>.json` (replacing that benchmark's previous figures only). Run as a
script (`make bench` does, last), this module gathers every JSON into
`bench/results/summary/summary.csv` and `summary.md`: benchmark, figure, value, target, met,
when it was measured, and a note (the machine's load average at the time is recorded with each
benchmark, because a ratio measured on shared cores is not a settled figure).

    python bench/bench_summary.py            # rebuild the table from the recorded JSONs
"""

from __future__ import annotations

import csv
import json
import operator
import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

SUMMARY_DIR = Path(__file__).resolve().parent / "results" / "summary"
_COMPARE = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Figure:
    """One measured figure. `target` is None for figures shown for context only."""

    name: str
    value: float
    target: float | None = None
    compare: str = ">="
    unit: str = "x"
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return bool(_COMPARE[self.compare](self.value, self.target))


def record(
    bench: str,
    figures: list[Figure],
    directory: Path = SUMMARY_DIR,
    *,
    measured_at: str | None = None,
    load: float | str | None = "now",
) -> Path:
    """Write one benchmark's figures (and the run's context) for the summary table.

    `measured_at` / `load` default to now; pass the original run's time (and load None when it
    is not known) to record figures of an earlier run's saved table."""
    directory.mkdir(parents=True, exist_ok=True)
    if load == "now":
        load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    doc = {
        "bench": bench,
        "measured_at": measured_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_avg_1m_at_end": load,
        "figures": [asdict(f) | {"met": f.met} for f in figures],
    }
    path = directory / f"{bench}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"summary figures: {path}")
    for f in figures:
        target = "" if f.target is None else f" (target {f.compare} {f.target:g})"
        verdict = "" if f.met is None else ("  met" if f.met else "  NOT MET")
        print(f"  {f.name}: {f.value:.3g}{f.unit}{target}{verdict}")
    return path


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def build_table(directory: Path = SUMMARY_DIR) -> list[dict]:
    rows = []
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text())
        for f in doc["figures"]:
            met = f["met"]
            rows.append(
                {
                    "bench": doc["bench"],
                    "figure": f["name"],
                    "value": _fmt(f["value"]),
                    "unit": f["unit"],
                    "target": "" if f["target"] is None else f"{f['compare']} {f['target']:g}",
                    "met": "" if met is None else ("yes" if met else "NO"),
                    "measured": doc["measured_at"][:16].replace("T", " "),
                    "load": "" if doc["load_avg_1m_at_end"] is None else doc["load_avg_1m_at_end"],
                    "note": f["note"],
                }
            )
    return rows


def write_table(directory: Path = SUMMARY_DIR) -> tuple[Path, Path]:
    rows = build_table(directory)
    if not rows:
        raise SystemExit(f"no benchmark figures under {directory}: run make bench first")
    columns = list(rows[0])
    csv_path, md_path = directory / "summary.csv", directory / "summary.md"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    missed = sum(r["met"] == "NO" for r in rows)
    targets = sum(r["met"] != "" for r in rows)
    lines += ["", f"{targets - missed} of {targets} targets met."]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


if __name__ == "__main__":
    for p in write_table():
        print(p)
    print((SUMMARY_DIR / "summary.md").read_text())
