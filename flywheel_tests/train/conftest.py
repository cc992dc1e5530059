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


def few_label_rows(
    n_pos: int = 6,
    n_neg: int = 2,
    *,
    size: int = 256,
    seed: int = 21,
    eval_chips: tuple[int, int] = (2, 1),
) -> list[dict]:
    """A seed-only round: `n_pos` train chips with panels and `n_neg` without, plus
    `eval_chips` = (with, without) panels in each of val and test. Every chip gets its own
    illumination (gain 0.55..1.5 and a haze offset up to 0.15 of the range), as scenes from
    different dates and sensors do, so absolute brightness does not tell panels apart."""
    import numpy as np

    from flywheel_core.train.synthetic import synthetic_rows

    n_eval_pos, n_eval_neg = eval_chips
    pos = synthetic_rows(n_pos + 2 * n_eval_pos, size=size, seed=seed, panels=2)
    neg = synthetic_rows(n_neg + 2 * n_eval_neg, size=size, seed=seed + 1, panels=0)
    splits = (
        ["train"] * n_pos
        + ["val"] * n_eval_pos
        + ["test"] * n_eval_pos
        + ["train"] * n_neg
        + ["val"] * n_eval_neg
        + ["test"] * n_eval_neg
    )
    rng = np.random.default_rng(seed + 2)
    rows = pos + neg
    for i, (r, split) in enumerate(zip(rows, splits, strict=True)):
        r["uid"] = r["metadata"]["chip_id"] = f"c1|2024-05-01|r{i:05d}"
        r["split"] = r["metadata"]["split"] = split
        shape = r["metadata"]["vhr_shape"]
        img = np.frombuffer(r["vhr_image_chip"], np.uint8).reshape(shape).astype(np.float32)
        gain, haze = rng.uniform(0.55, 1.5), rng.uniform(0, 0.15 * 255)
        img = img * gain * rng.uniform(0.9, 1.1, (shape[0], 1, 1)) + haze
        r["vhr_image_chip"] = np.clip(img, 0, 255).astype(np.uint8).tobytes()
    return rows
