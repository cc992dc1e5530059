"""A partition's run without Dagster: tiles streamed from Lance to vectors, export, QA, index."""

import numpy as np
import pyarrow as pa
import pytest
from shapely import wkb
from shapely.geometry import box

from flywheel_core.embed.dinov3 import load_dinov3
from flywheel_core.embed.partition import embed_partition, tile_batches
from flywheel_core.embed.preview import embedding_preview, pca_colors
from flywheel_core.store.lance_tables import connect, replace_partition
from flywheel_core.store.objects import LocalStore

CELL, DAY = "479e758c4", "2024-06-01"


def _tiles(n: int, dataset: str) -> pa.Table:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image = rng.integers(0, 4000, (4, 40, 40), dtype=np.uint16)  # a 16-bit raster
        rows.append(
            {
                "uid": f"{dataset}|{i:04d}",
                "chip_id": f"{dataset}|{i:04d}",
                "dataset": dataset,
                "cell": CELL,
                "date": DAY,
                "row_off": (i // 5) * 40,
                "col_off": (i % 5) * 40,
                "bands": 4,
                "height": 40,
                "width": 40,
                "dtype": "uint16",
                "image": image.tobytes(),
                "footprint": wkb.dumps(box(11.5 + i * 1e-3, 48.1, 11.501 + i * 1e-3, 48.101)),
                "center_lon": 11.5005 + i * 1e-3,
                "center_lat": 48.1005,
            }
        )
    return pa.Table.from_pylist(rows)


@pytest.fixture(scope="module")
def dino():
    return load_dinov3("tiny")


def test_a_raster_dataset_goes_through_the_same_steps(dino, tmp_path):
    uri = str(tmp_path / "lancedb")
    db = connect(uri)
    replace_partition(db, "raster_tiles", _tiles(23, "ds1"), {"dataset": "ds1"})
    total, chunks = tile_batches(db, "raster_tiles", "dataset = 'ds1'", chunk=10)
    assert total == 23
    messages: list[str] = []
    run = embed_partition(
        dino,
        chunks,
        total,
        dataset="ds1",
        cell=CELL,
        date=DAY,
        lancedb_uri=uri,
        store=LocalStore(tmp_path / "objects"),
        batch_size=4,
        min_index_rows=20,
        progress=messages.append,
    )
    assert run.rows == 23 and run.qa["coverage"] == 1.0 and run.qa["nan_vectors"] == 0
    assert run.index_status.startswith("built IVF_FLAT")
    assert [m for m in messages if m.startswith("embedded")][-1].startswith("embedded 23/23")
    assert run.export_uri.endswith(f"embeddings/ds1/cell={CELL}/date={DAY}/part-0.parquet")
    assert run.vectors.shape == (23, dino.dim) and len(run.thumbs) == 23
    img = embedding_preview(run.vectors, run.thumbs, run.places, "ds1")
    assert img.size == (960, 334)


def test_missing_tile_table_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        tile_batches(connect(str(tmp_path)), "vhr_chips", "cell = 'x'", 8)


def test_pca_colours_put_similar_vectors_close():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    vectors = np.stack([a, a + 0.01, b, b + 0.01]).astype(np.float32)
    colors = pca_colors(vectors).astype(int)
    near = np.abs(colors[0] - colors[1]).sum()
    far = np.abs(colors[0] - colors[2]).sum()
    assert near < far
