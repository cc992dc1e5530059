"""The `dinov3_embeddings` Lance table: partition-exact rewrites and the ANN index threshold."""

import lancedb
import numpy as np
import pytest

from flywheel_core.embed.schema import EMBEDDINGS_TABLE
from flywheel_core.embed.table import (
    EmbeddingTableError,
    ensure_ann_index,
    write_embeddings,
)
from flywheel_tests.embed.vectors import embedding_rows, exact_neighbours, unit_vectors

A = {"dataset": "vhr_chips", "cell": "479e758c4", "date": "2024-06-01"}
B = {"dataset": "vhr_chips", "cell": "479e758c4", "date": "2024-07-01"}


def _rows(uri: str, where: str | None = None):
    table = lancedb.connect(uri).open_table(EMBEDDINGS_TABLE)
    query = table.search()
    if where:
        query = query.where(where)
    return query.limit(None).to_arrow()


def test_rerunning_a_partition_replaces_exactly_its_rows(tmp_path):
    uri = str(tmp_path / "lancedb")
    write_embeddings(uri, embedding_rows(unit_vectors(12, 8, seed=1), date=A["date"]), A)
    write_embeddings(uri, embedding_rows(unit_vectors(5, 8, seed=2), date=B["date"]), B)
    before_b = _rows(uri, f"date = '{B['date']}'").sort_by("uid")

    again = embedding_rows(unit_vectors(12, 8, seed=3), date=A["date"]).slice(0, 9)
    result = write_embeddings(uri, again, A)
    write_embeddings(uri, again, A)  # the same run twice changes nothing

    rows_a = _rows(uri, f"date = '{A['date']}'")
    assert rows_a.num_rows == 9 == result.rows
    assert len(set(rows_a["uid"].to_pylist())) == 9
    got = {r["uid"]: r["vector"] for r in rows_a.to_pylist()}
    for r in again.to_pylist():
        np.testing.assert_allclose(got[r["uid"]], r["vector"])
    assert _rows(uri, f"date = '{B['date']}'").sort_by("uid").equals(before_b)
    assert _rows(uri).num_rows == 14


def test_writes_that_do_not_fit_are_refused(tmp_path):
    uri = str(tmp_path / "lancedb")
    write_embeddings(uri, embedding_rows(unit_vectors(3, 8), date=A["date"]), A)
    with pytest.raises(EmbeddingTableError, match="8-d vectors; these are 16-d"):
        write_embeddings(uri, embedding_rows(unit_vectors(3, 16), date=B["date"]), B)
    with pytest.raises(EmbeddingTableError, match="dataset, cell, date"):
        write_embeddings(uri, embedding_rows(unit_vectors(3, 8)), {"cell": "479e758c4"})
    with pytest.raises(ValueError, match="date"):
        write_embeddings(uri, embedding_rows(unit_vectors(3, 8), date=A["date"]), B)


def test_ann_index_only_past_the_threshold_and_it_finds_the_nearest(tmp_path):
    uri = str(tmp_path / "lancedb")
    dim = 32
    first = unit_vectors(1500, dim, seed=0, clusters=30)
    write_embeddings(uri, embedding_rows(first, date=A["date"]), A)
    status = ensure_ann_index(uri, min_rows=2000)
    assert status.startswith("no index (exact search): 1500 rows < 2000")
    table = lancedb.connect(uri).open_table(EMBEDDINGS_TABLE)
    assert list(table.list_indices()) == []

    second = unit_vectors(1500, dim, seed=1, clusters=30)
    write_embeddings(uri, embedding_rows(second, date=B["date"]), B)
    assert ensure_ann_index(uri, min_rows=2000).startswith("built IVF_FLAT")
    table = lancedb.connect(uri).open_table(EMBEDDINGS_TABLE)
    (index,) = list(table.list_indices())
    assert index.columns == ["vector"]
    stats = table.index_stats(index.name)
    assert stats.distance_type == "cosine" and stats.num_unindexed_rows == 0

    everything = np.concatenate([first, second])
    uids = [f"479e758c4|{A['date']}|{i:05d}" for i in range(1500)] + [
        f"479e758c4|{B['date']}|{i:05d}" for i in range(1500)
    ]
    rng = np.random.default_rng(7)
    queries = everything[rng.choice(len(everything), 40, replace=False)]
    queries = queries + 0.05 * rng.standard_normal(queries.shape).astype(np.float32)
    hits = 0
    for q in queries:
        found = (
            table.search(q, vector_column_name="vector").distance_type("cosine").limit(1).to_arrow()
        )
        hits += found["uid"][0].as_py() == uids[exact_neighbours(everything, q, 1)[0]]
    assert hits >= 36, f"ANN top-1 agreed with exact search for {hits}/40 queries"
    plan = (
        table.search(queries[0], vector_column_name="vector")
        .distance_type("cosine")
        .limit(1)
        .explain_plan()
    )
    assert "ANNSubIndex" in plan and "metric=Cosine" in plan  # answered by the index

    third = embedding_rows(unit_vectors(400, dim, seed=2, clusters=30), date="2024-08-01")
    write_embeddings(uri, third, {**A, "date": "2024-08-01"})
    assert ensure_ann_index(uri, min_rows=2000).startswith("index refreshed: 400 new rows")
    assert ensure_ann_index(uri, min_rows=2000).startswith("index up to date (3400 rows")


def test_no_table_no_index(tmp_path):
    assert "does not exist yet" in ensure_ann_index(str(tmp_path / "lancedb"))
