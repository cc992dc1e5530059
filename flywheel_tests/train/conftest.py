"""A small `training_data` table of synthetic chips (real TRAINING_SCHEMA, project writer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from flywheel_core.train.dataset import table_uri
from flywheel_core.train.synthetic import synthetic_rows, write_training_table

SPLIT_CYCLE = ("train", "train", "val", "train", "test")


@dataclass
class PVTable:
    lancedb_uri: str
    table: str
    uri: str
    version: int
    rows: list[dict]


def build_table(root: Path, size: int = 64) -> PVTable:
    rows = (
        synthetic_rows(15, cell="c1", date="2024-05-01", splits=SPLIT_CYCLE, size=size, seed=1)
        + synthetic_rows(10, cell="c1", date="2024-06-01", splits=SPLIT_CYCLE, size=size, seed=2)
        + synthetic_rows(10, cell="c2", date="2024-06-01", splits=SPLIT_CYCLE, size=size, seed=3)
    )
    db = str(root / "lancedb")
    version = write_training_table(db, rows)
    return PVTable(db, "training_data", table_uri(db, "training_data"), version, rows)


@pytest.fixture(scope="session")
def pv_table(tmp_path_factory: pytest.TempPathFactory) -> PVTable:
    """Shared and read-only: tests that write make their own with `build_table`."""
    return build_table(tmp_path_factory.mktemp("pv_table"))
