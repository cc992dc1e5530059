"""Embedding rows built by hand (schema of flywheel_core.embed.schema), for search tests.

Chips sit on a grid of 50 m squares east/north of the tiny world's point, one grid per
(cell, date); vectors come from a seeded generator, so the exact neighbours can be computed with
numpy beside the search and compared.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import shapely

from flywheel_core.embed.schema import EMBEDDINGS_TABLE, embedding_schema
from flywheel_core.store.lance_tables import replace_partition
from flywheel_tests.flywheel.shapes import at, square

CHIP_M = 50.0


def chip_uid(cell: str, day: str, row: int, col: int) -> str:
    return f"{cell}|{day}|r{row * 256:05d}c{col * 256:05d}"


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def grid_rows(
    cell: str,
    day: str,
    vectors: np.ndarray,
    side: int,
    *,
    dataset: str = "vhr_chips",
    model_id: str = "dinov3-tiny-random",
    trained: bool = False,
    origin_m: tuple[float, float] = (0.0, 0.0),
) -> pa.Table:
    """One row per vector, laid out row-major on a side x side grid of 50 m chips."""
    dim = vectors.shape[1]
    rows = []
    for i, vec in enumerate(vectors):
        r, c = divmod(i, side)
        x0, y0 = origin_m[0] + c * CHIP_M, origin_m[1] - (r + 1) * CHIP_M
        fp = square(x0, y0, CHIP_M)
        lon, lat = at(x0 + CHIP_M / 2, y0 + CHIP_M / 2)
        rows.append(
            {
                "uid": chip_uid(cell, day, r, c),
                "dataset": dataset,
                "tile_id": chip_uid(cell, day, r, c),
                "cell": cell,
                "date": day,
                "footprint": shapely.to_wkb(fp),
                "center_lon": lon,
                "center_lat": lat,
                "vector": vec.tolist(),
                "mean_patch": vec.tolist(),
                "norm": 1.0,
                "model_id": model_id,
                "trained": trained,
                "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            }
        )
    return pa.Table.from_pylist(rows, schema=embedding_schema(dim))


def write(db, table: pa.Table) -> None:
    cell, day = table.column("cell")[0].as_py(), table.column("date")[0].as_py()
    replace_partition(db, EMBEDDINGS_TABLE, table, {"cell": cell, "date": day})


def exact_top(
    vectors: np.ndarray, uids: list[str], query: np.ndarray, k: int
) -> list[tuple[str, float]]:
    """Numpy ground truth: (uid, cosine distance) of the k nearest, ties by uid."""
    q = query / np.linalg.norm(query)
    d = 1.0 - vectors @ q
    order = sorted(range(len(uids)), key=lambda i: (round(float(d[i]), 5), uids[i]))
    return [(uids[i], float(d[i])) for i in order[:k]]


# Distinct colours, one per chip: chip i is mostly channel i % 3.
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def chip_pixels(i: int, bands: int = 4) -> bytes:
    rng = np.random.default_rng(i)
    img = np.zeros((bands, 32, 32), dtype=np.uint8)
    for b in range(min(bands, 3)):
        img[b] = COLOURS[i % 3][b] + rng.integers(0, 10, (32, 32))
    if bands > 3:
        img[3] = 120
    return img.tobytes()


def pixel_table(uids: list[str], bands: int = 4, dataset: str | None = None) -> pa.Table:
    """A minimal `vhr_chips`/`raster_tiles` stand-in: the pixel columns the contact sheet reads."""
    cols = {
        "uid": uids,
        "image": [chip_pixels(i, bands) for i in range(len(uids))],
        "bands": pa.array([bands] * len(uids), pa.int16()),
        "height": pa.array([32] * len(uids), pa.int32()),
        "width": pa.array([32] * len(uids), pa.int32()),
        "dtype": ["uint8"] * len(uids),
    }
    if dataset:
        cols["dataset"] = [dataset] * len(uids)
    return pa.table(cols)
