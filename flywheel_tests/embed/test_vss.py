"""DuckDB vss (HNSW) over the Parquet export, checked against exact numpy search."""

import duckdb
import numpy as np
import pytest

from flywheel_core.embed.export import export_glob, export_parquet
from flywheel_core.embed.vss import build_hnsw, nearest, nearest_sql
from flywheel_core.store.objects import LocalStore, S3Store, split_s3
from flywheel_tests.embed.vectors import embedding_rows, exact_neighbours, unit_vectors

CELL = "479e758c4"
DATES = ("2024-06-01", "2024-07-01")
DIM = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("objects"))
    vectors = unit_vectors(600, DIM, seed=0, clusters=20)
    uids = []
    for i, day in enumerate(DATES):
        part = vectors[i * 300 : (i + 1) * 300]
        table = embedding_rows(part, date=day)
        uids += table["uid"].to_pylist()
        export_parquet(table, store, "vhr_chips", CELL, day)
    con = duckdb.connect()
    name = build_hnsw(con, export_glob(store, "vhr_chips"), DIM)
    return con, name, vectors, uids


def _queries(vectors: np.ndarray, n: int = 25) -> np.ndarray:
    rng = np.random.default_rng(5)
    q = vectors[rng.choice(len(vectors), n, replace=False)]
    return q + 0.05 * rng.standard_normal(q.shape).astype(np.float32)


def test_hnsw_agrees_with_exact_search(exported):
    con, name, vectors, uids = exported
    recall, top1 = 0, 0
    queries = _queries(vectors)
    for q in queries:
        got = nearest(con, name, q, k=10)
        want = [uids[i] for i in exact_neighbours(vectors, q, 10)]
        assert [g["distance"] for g in got] == sorted(g["distance"] for g in got)
        recall += len({g["uid"] for g in got} & set(want))
        top1 += got[0]["uid"] == want[0]
        by_uid = {u: v for u, v in zip(uids, vectors, strict=True)}
        for g in got:
            cosine = 1 - float(by_uid[g["uid"]] @ (q / np.linalg.norm(q)))
            assert g["distance"] == pytest.approx(cosine, abs=1e-5)
    assert top1 >= len(queries) - 1
    assert recall / (10 * len(queries)) >= 0.9


def test_the_unfiltered_query_uses_the_index(exported):
    con, name, vectors, _ = exported
    plan = con.execute("EXPLAIN " + nearest_sql(con, name, vectors[0], 5)).fetchall()[0][1]
    assert "HNSW_INDEX_SCAN" in plan


def test_filtered_queries_return_k_exact_neighbours(exported):
    con, name, vectors, uids = exported
    subset = np.arange(300, 600)  # the second date
    for q in _queries(vectors, 10):
        got = nearest(con, name, q, k=10, where=f"date = '{DATES[1]}'", columns=["date"])
        assert len(got) == 10 and {g["date"] for g in got} == {DATES[1]}
        want = [uids[subset[i]] for i in exact_neighbours(vectors[subset], q, 10)]
        assert [g["uid"] for g in got] == want


def test_broken_vectors_are_left_out_and_bad_queries_refused(tmp_path):
    vectors = unit_vectors(20, DIM, seed=1)
    vectors[0] = np.nan
    vectors[1] = 0.0
    store = LocalStore(tmp_path)
    export_parquet(embedding_rows(vectors), store, "vhr_chips", CELL, DATES[0])
    con = duckdb.connect()
    name = build_hnsw(con, export_glob(store, "vhr_chips"), DIM, name="small")
    assert con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 18
    with pytest.raises(ValueError, match="16"):
        nearest(con, name, np.ones(8), k=3)
    with pytest.raises(ValueError, match="NaN"):
        nearest(con, name, np.full(DIM, np.nan), k=3)
    with pytest.raises(ValueError, match="width"):
        build_hnsw(con, export_glob(store, "vhr_chips"), 32, name="wrong")


def test_hnsw_over_the_s3_export(s3_env, s3_server):
    bucket, prefix = split_s3(s3_env)
    store = S3Store(bucket, prefix, s3_server.client())
    vectors = unit_vectors(50, DIM, seed=2)
    table = embedding_rows(vectors)
    export_parquet(table, store, "vhr_chips", CELL, DATES[0])
    con = duckdb.connect()
    name = build_hnsw(con, export_glob(store, "vhr_chips"), DIM)
    got = nearest(con, name, vectors[7], k=3)
    assert got[0]["uid"] == table["uid"][7].as_py() and got[0]["distance"] == pytest.approx(
        0.0, abs=1e-6
    )
