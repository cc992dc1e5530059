"""Where a synthetic world's files live under its directory (readers rely on this layout)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

VHR_DIR = "vhr"
S2_DIR = "s2"
TRUTH_FILE = "truth.parquet"
SEED_LABELS_FILE = "seed_labels.parquet"
DISTRACTORS_FILE = "distractors.parquet"  # hidden, like the truth: PV look-alikes by kind
PREVIEW_FILE = "preview.png"
CATALOG_FILE = "catalog.json"
WORLD_FILE = "world.json"
SCL_BAND = "SCL"


def vhr_path(out_dir: Path, cell: str, day: date) -> Path:
    return out_dir / VHR_DIR / cell / f"{day.isoformat()}.tif"


def s2_band_path(out_dir: Path, cell: str, day: date, band: str) -> Path:
    return out_dir / S2_DIR / cell / day.isoformat() / f"{band}.tif"
