"""Embedding tables built from given vectors, so tests know the exact answer to compare with."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from shapely import wkb
from shapely.geometry import box

from flywheel_core.embed.schema import embedding_schema


def unit_vectors(n: int, dim: int, seed: int = 0, clusters: int = 0) -> np.ndarray:
    """n unit vectors; with `clusters`, spread tightly around that many random centres."""
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.standard_normal((clusters, dim))
        v = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, dim))
    else:
        v = rng.standard_normal((n, dim))
    v = v.astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def embedding_rows(
    vectors: np.ndarray,
    cell: str = "479e758c4",
    date: str = "2024-06-01",
    dataset: str = "vhr_chips",
    prefix: str | None = None,
) -> pa.Table:
    """One row per vector in `embedding_schema`, uids `<cell>|<date>|<i>` (or `<prefix><i>`)."""
    dim = vectors.shape[1]
    rows = []
    for i, vec in enumerate(vectors):
        lon, lat = 11.5 + (i % 50) * 1e-3, 48.1 + (i // 50) * 1e-3
        rows.append(
            {
                "uid": f"{prefix}{i}" if prefix is not None else f"{cell}|{date}|{i:05d}",
                "dataset": dataset,
                "tile_id": f"{cell}|{date}|{i:05d}",
                "cell": cell,
                "date": date,
                "footprint": wkb.dumps(box(lon, lat, lon + 1e-3, lat + 1e-3)),
                "center_lon": lon + 5e-4,
                "center_lat": lat + 5e-4,
                "vector": vec.tolist(),
                "mean_patch": vec.tolist(),
                "norm": float(np.linalg.norm(vec)) * 3.0,
                "model_id": "test-vectors",
                "trained": True,
                "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            }
        )
    return pa.Table.from_pylist(rows, schema=embedding_schema(dim))


def exact_neighbours(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k rows with the smallest cosine distance to `query` (numpy ground truth)."""
    q = query / np.linalg.norm(query)
    return np.argsort(1.0 - vectors @ q, kind="stable")[:k]
