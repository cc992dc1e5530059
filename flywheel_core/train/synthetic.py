"""Small `training_data` tables of synthetic chips, for tests, benchmarks and smoke runs.

Each chip is vegetation (green, bright NIR) with a few dark bluish rectangles of "panels" (low
NIR) and, as distractors, reddish roofs; the mask is exactly the panels. Rows follow the real
`TRAINING_SCHEMA` and are written with the project's partition writer, so readers see what the
`training_data` asset writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from flywheel_core.store import lance_tables
from flywheel_core.train.samples import NAMESPACE, TRAINING_SCHEMA

VHR_BANDS = ["red", "green", "blue", "nir"]
MSI_CHANNELS = [
    "B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12",
    "ndvi", "ndbi", "ndwi", "mndwi", "bsi", "ndpvi", "nbd", "pvi",
]  # fmt: skip
GRASS = np.array([60, 110, 50, 180], np.float32)
PANEL = np.array([45, 60, 95, 40], np.float32)
ROOF = np.array([150, 80, 70, 120], np.float32)


def synthetic_chip(
    rng: np.random.Generator, size: int = 64, panels: int = 2, msi_px: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image uint8 (4, size, size), mask uint8 (size, size), msi float32 (18, msi_px, msi_px))."""
    img = np.empty((4, size, size), np.float32)
    img[:] = GRASS[:, None, None]
    mask = np.zeros((size, size), np.uint8)
    lo, hi = max(size // 10, 3), max(size // 4, 5)
    for _ in range(int(rng.integers(0, 2))):
        h, w = rng.integers(lo, hi, size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        img[:, y : y + h, x : x + w] = ROOF[:, None, None]
    for _ in range(panels):
        h, w = rng.integers(lo, hi, size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        img[:, y : y + h, x : x + w] = PANEL[:, None, None]
        mask[y : y + h, x : x + w] = 1
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    image = np.clip(img, 0, 255).astype(np.uint8)
    msi = rng.uniform(0.0, 0.5, (len(MSI_CHANNELS), msi_px, msi_px)).astype(np.float32)
    return image, mask, msi


def synthetic_rows(
    n: int,
    *,
    cell: str = "c1",
    date: str = "2024-06-01",
    splits: Sequence[str] = ("train",),
    size: int = 64,
    seed: int = 0,
    panels: int = 2,
    msi_px: int = 2,
) -> list[dict]:
    """n rows in the seed schema; row i gets split `splits[i % len(splits)]`."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        image, mask, msi = synthetic_chip(rng, size, panels, msi_px)
        chip_id = f"{cell}|{date}|r{i:05d}"
        split = splits[i % len(splits)]
        rows.append(
            {
                "uid": chip_id,
                "uuid": str(uuid.uuid5(NAMESPACE, chip_id)),
                "cell": cell,
                "date": date,
                "split": split,
                "prompt_geometry": None,
                "vhr_image_chip": image.tobytes(),
                "generated_mask": mask.tobytes(),
                "msi_image_chip": msi.tobytes(),
                "metadata": {
                    "cell": cell,
                    "date": date,
                    "chip_id": chip_id,
                    "split": split,
                    "negative": not mask.any(),
                    "sensor": "synthetic-test",
                    "msi_sensor": "synthetic-test",
                    "crs": "EPSG:32632",
                    "transform": [0.3125, 0.0, 0.0, 0.0, -0.3125, 0.0],
                    "gsd_m": 0.3125,
                    "vhr_shape": list(image.shape),
                    "vhr_dtype": "uint8",
                    "vhr_bands": VHR_BANDS,
                    "msi_shape": list(msi.shape),
                    "msi_channels": MSI_CHANNELS,
                    "msi_gsd_m": 10.0,
                    "cloud_fraction": 0.0,
                    "mask_qa": [],
                },
            }
        )
    return rows


def write_training_table(lancedb_uri: str, rows: list[dict], table: str = "training_data") -> int:
    """Write rows partition by partition (cell × date) with the project's writer; the version."""
    db = lance_tables.connect(lancedb_uri)
    version = 0
    for cell, date in sorted({(r["cell"], r["date"]) for r in rows}):
        part = [r for r in rows if r["cell"] == cell and r["date"] == date]
        result = lance_tables.replace_partition(
            db,
            table,
            pa.Table.from_pylist(part, schema=TRAINING_SCHEMA),
            {"cell": cell, "date": date},
        )
        version = result.version
    return version
