"""The benchmark summary table: every recorded figure, its target and whether it is met, from
the JSON each benchmark writes (no benchmark is run here)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("bench_summary", ROOT / "bench/bench_summary.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_summary"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_table_lists_every_figure_with_its_verdict(tmp_path) -> None:
    bs = _module()
    bs.record(
        "chip_read",
        [bs.Figure("lance / rasterio", 3.4, 3.0), bs.Figure("context only", 1.2)],
        tmp_path,
    )
    bs.record("run_overhead", [bs.Figure("import", 2.6, 2.0, "<=", " s")], tmp_path)
    bs.record(
        "old", [bs.Figure("x", 1.0, 0.5)], tmp_path, measured_at="2026-01-02T03:04:05", load=None
    )
    doc = json.loads((tmp_path / "old.json").read_text())
    assert doc["measured_at"].startswith("2026-01-02") and doc["load_avg_1m_at_end"] is None

    csv_path, md_path = bs.write_table(tmp_path)
    rows = {r["figure"]: r for r in csv.DictReader(csv_path.open())}
    assert rows["lance / rasterio"]["met"] == "yes" and rows["lance / rasterio"]["target"] == ">= 3"
    assert rows["import"]["met"] == "NO" and rows["import"]["target"] == "<= 2"
    assert rows["context only"]["met"] == "" and rows["context only"]["target"] == ""
    text = md_path.read_text()
    assert "| run_overhead | import | 2.6 |" in text
    assert "2 of 3 targets met." in text

    # a benchmark run again replaces its own figures only
    bs.record("chip_read", [bs.Figure("lance / rasterio", 2.0, 3.0)], tmp_path)
    rows = list(csv.DictReader(bs.write_table(tmp_path)[0].open()))
    assert [r["met"] for r in rows if r["bench"] == "chip_read"] == ["NO"]
    assert {r["bench"] for r in rows} == {"chip_read", "run_overhead", "old"}
