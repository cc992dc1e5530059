"""A new label file and the lake reads the label fault tests compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))
# What an import writes that a re-run may legitimately change: its id and time.
VOLATILE = ("import_id", "created_at")


def write_label_file(path: Path, n: int) -> Path:
    """`n` small square polygons (about 10 m) around Munich, each with its own id."""
    step, size = 0.0004, 0.0001
    features = []
    for i in range(n):
        x, y = 11.57 + (i % 20) * step, 48.13 + (i // 20) * step
        ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
        features.append(
            {
                "type": "Feature",
                "properties": {"id": f"panel-{i:05d}", "install_year": 2020},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def lake_env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env.update(
        FLYWHEEL_DATA_DIR=str(folder),
        FLYWHEEL_LAKE_CATALOG=f"duckdb:{folder / 'lake' / 'catalog.ducklake'}",
        FLYWHEEL_LAKE_DATA_PATH=str(folder / "lake" / "files"),
        **extra,
    )
    return env


def import_args(path: Path) -> list[str]:
    return [FLYWHEEL, "labels", "import", str(path), "--source", "fault-suite"]


def run_import(path: Path, folder: Path, fault: str | None = None):
    env = lake_env(folder, **({"FLYWHEEL_FAULT_POINT": fault} if fault else {}))
    return subprocess.run(import_args(path), env=env, capture_output=True, text=True, timeout=180)


def lake_state(folder: Path) -> dict[str, pa.Table]:
    """Every table of the lake, read whole (each must open), labels without volatile columns."""
    config = LakeConfig(
        catalog=f"duckdb:{folder / 'lake' / 'catalog.ducklake'}",
        data_path=str(folder / "lake" / "files"),
    )
    with lake_connection(config) as con:
        names = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
        tables = {
            name: con.execute(f'SELECT * FROM "{name}"').fetch_arrow_table() for name in names
        }
    labels = tables["labels"]
    tables["labels"] = labels.drop_columns([c for c in VOLATILE if c in labels.schema.names])
    tables["labels"] = tables["labels"].sort_by("label_id")
    return tables
