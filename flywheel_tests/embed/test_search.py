from __future__ import annotations

import json
from datetime import date

import lancedb
import numpy as np
import pyarrow as pa
import pytest
import shapely

from flywheel_core.embed.schema import EMBEDDINGS_TABLE
from flywheel_core.embed.search import (
    EmptyTableError,
    PointNotCoveredError,
    SearchError,
    SearchFilters,
    UnknownChipError,
    VectorWidthError,
    chip_query,
    labeled_uids,
    read_vector_file,
    search,
    search_many,
)
from flywheel_core.embed.table import build_ann_index
from flywheel_core.lake.connection import LakeConfig, lake_connection
from flywheel_tests.embed.embedding_rows import CHIP_M, chip_uid, exact_top, grid_rows, unit, write
from flywheel_tests.flywheel.conftest import import_seeds
from flywheel_tests.flywheel.shapes import at, square

DIM = 16
CELL_A, CELL_B = "479e758c4", "479e758cc"
JUNE, JULY = "2024-06-01", "2024-07-01"


@pytest.fixture
def world(tmp_path):
    """Two cells x two dates of 6x6 chips; cell B sits 400 m east of cell A."""
    rng = np.random.default_rng(7)
    db = lancedb.connect(str(tmp_path / "lancedb"))
    parts = {}
    for cell, east in ((CELL_A, 0.0), (CELL_B, 400.0)):
        for day in (JUNE, JULY):
            vecs = unit(rng, 36, DIM)
            table = grid_rows(cell, day, vecs, 6, origin_m=(east, 0.0))
            write(db, table)
            parts[(cell, day)] = (table.column("uid").to_pylist(), vecs)
    return db, parts


def _all(parts, keep=lambda cell, day: True):
    uids, vecs = [], []
    for (cell, day), (u, v) in parts.items():
        if keep(cell, day):
            uids += u
            vecs.append(v)
    return uids, np.concatenate(vecs)


def test_vector_query_matches_exact_numpy_search(world):
    db, parts = world
    uids, vecs = _all(parts)
    q = np.random.default_rng(1).standard_normal(DIM).astype(np.float32) * 3.0  # not normalised
    result = search(db, vector=q, k=7)
    assert result.exact and result.query.kind == "vector"
    truth = exact_top(vecs, uids, q, 7)
    assert [h.uid for h in result.hits] == [u for u, _ in truth]
    assert [h.distance for h in result.hits] == pytest.approx([d for _, d in truth], abs=1e-5)
    assert [h.rank for h in result.hits] == list(range(1, 8))
    hit = result.hits[0]
    assert shapely.from_wkt(hit.footprint_wkt).contains(
        shapely.Point(hit.center_lon, hit.center_lat)
    )
    assert json.dumps(result.as_dict())  # serialisable for --json
    assert result.untrained  # the rows say trained=False, and the result says so


def test_chip_query_leaves_itself_out_unless_asked(world):
    db, parts = world
    uid = parts[(CELL_A, JUNE)][0][14]
    result = search(db, chip=uid, k=5)
    assert uid not in [h.uid for h in result.hits] and len(result.hits) == 5
    assert result.query.uid == uid and result.query.cell == CELL_A
    uids, vecs = _all(parts)
    truth = exact_top(vecs, uids, vecs[uids.index(uid)], 6)[1:]
    assert [h.uid for h in result.hits] == [u for u, _ in truth]
    with_self = search(db, chip=uid, k=5, include_query=True)
    assert with_self.hits[0].uid == uid and with_self.hits[0].distance == pytest.approx(0, abs=1e-6)


def test_filters_are_applied_before_the_top_k(world):
    db, parts = world
    uid = parts[(CELL_B, JULY)][0][3]  # the query lives in cell B
    result = search(db, chip=uid, k=10, filters=SearchFilters(cell=CELL_A, date=JUNE))
    assert len(result.hits) == 10  # a full k from the filtered set, not a share of a global k
    assert {(h.cell, h.date) for h in result.hits} == {(CELL_A, JUNE)}
    uids, vecs = _all(parts)
    a_uids, a_vecs = parts[(CELL_A, JUNE)]
    truth = exact_top(a_vecs, a_uids, vecs[uids.index(uid)], 10)
    assert [h.uid for h in result.hits] == [u for u, _ in truth]
    until = search(db, chip=uid, k=200, filters=SearchFilters(until=JUNE))
    assert len(until.hits) == 72 and {h.date for h in until.hits} == {JUNE}


def test_point_query_picks_the_chip_under_the_point(world):
    db, _ = world
    lon, lat = at(2.5 * CHIP_M, -1.5 * CHIP_M)  # inside row 1, column 2 of cell A
    result = search(db, point=(lon, lat), k=3)
    assert result.query.kind == "point" and result.query.point_distance_m == 0.0
    assert result.query.uid == chip_uid(CELL_A, JULY, 1, 2)  # the latest date wins
    june = search(db, point=(lon, lat), k=3, filters=SearchFilters(date=JUNE))
    assert june.query.uid == chip_uid(CELL_A, JUNE, 1, 2)
    # 60 m west of the grid: in no footprint, but near the west column's centres.
    lon, lat = at(-60.0, -0.5 * CHIP_M)
    near = search(db, point=(lon, lat), k=3)
    assert near.query.uid == chip_uid(CELL_A, JULY, 0, 0)
    assert near.query.point_distance_m == pytest.approx(60.0, abs=0.5)
    with pytest.raises(PointNotCoveredError, match="nearest chip centre"):
        search(db, point=at(-900.0, 0.0), k=3)
    with pytest.raises(PointNotCoveredError, match="no chip within"):
        search(db, point=(0.0, 0.0), k=3)
    with pytest.raises(SearchError, match="not a lon/lat point"):
        search(db, point=(48.0, 211.0), k=3)


def test_bad_queries_fail_clearly(world, tmp_path):
    db, _ = world
    with pytest.raises(UnknownChipError, match="similar uids"):
        search(db, chip=f"nope|{JUNE}|r00256c00512", k=3)
    with pytest.raises(UnknownChipError, match="no embedding for chip 'x'"):
        search(db, chip="x", k=3)
    with pytest.raises(VectorWidthError, match="has 5 values; the embeddings have 16"):
        search(db, vector=np.ones(5), k=3)
    with pytest.raises(SearchError, match="all zeros"):
        search(db, vector=np.zeros(DIM), k=3)
    with pytest.raises(SearchError, match="exactly one"):
        search(db, vector=np.ones(DIM), chip="x", k=3)
    with pytest.raises(SearchError, match="k must be"):
        search(db, vector=np.ones(DIM), k=0)
    with pytest.raises(SearchError, match="split must be"):
        SearchFilters(split="holdout")
    with pytest.raises(SearchError, match="ISO date"):
        SearchFilters(date="June")
    empty = lancedb.connect(str(tmp_path / "empty"))
    with pytest.raises(EmptyTableError, match="materialize dinov3_embeddings"):
        search(empty, vector=np.ones(DIM), k=3)
    empty.create_table(
        EMBEDDINGS_TABLE,
        schema=grid_rows(CELL_A, JUNE, unit(np.random.default_rng(0), 1, DIM), 1).schema,
    )
    with pytest.raises(EmptyTableError, match="is empty"):
        search(empty, vector=np.ones(DIM), k=3)


def test_split_filter_reads_the_training_data_split(world):
    db, parts = world
    a_uids, a_vecs = parts[(CELL_A, JUNE)]
    with pytest.raises(SearchError, match="materialize training_data"):
        search(db, vector=a_vecs[0], k=3, filters=SearchFilters(split="val"))
    splits = ["val" if i % 3 == 0 else "train" for i in range(len(a_uids))]
    training = pa.table(
        {
            "uid": a_uids,
            "cell": [CELL_A] * len(a_uids),
            "date": [JUNE] * len(a_uids),
            "split": splits,
        }
    )
    db.create_table("training_data", training)
    result = search(db, vector=a_vecs[0], k=50, filters=SearchFilters(split="val"))
    val = {u for u, s in zip(a_uids, splits, strict=True) if s == "val"}
    assert {h.uid for h in result.hits} == val  # chips outside the training data never match
    none = search(db, vector=a_vecs[0], k=5, filters=SearchFilters(split="test"))
    assert none.hits == ()


def test_label_status_uses_active_labels_as_of_each_chip_date(world, tmp_path):
    db, parts = world
    lake = LakeConfig(catalog=f"duckdb:{tmp_path / 'c.ducklake'}", data_path=str(tmp_path / "f"))
    # Inside chip (0, 0) of cell A since 2024-01; inside chip (0, 1) only from 2024-06-15.
    early = square(5.0, -45.0, 10.0)
    late = square(CHIP_M + 5.0, -45.0, 10.0)
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [early, late], [date(2024, 1, 1), date(2024, 6, 15)])
        q = parts[(CELL_A, JUNE)][1][10]
        labeled = search(
            db, vector=q, k=50, lake=con, filters=SearchFilters(label_status="labeled")
        )
        assert {h.uid for h in labeled.hits} == {
            chip_uid(CELL_A, JUNE, 0, 0),
            chip_uid(CELL_A, JULY, 0, 0),
            chip_uid(CELL_A, JULY, 0, 1),  # the June chip predates the second install
        }
        unlabeled = search(
            db, vector=q, k=500, lake=con, filters=SearchFilters(label_status="unlabeled")
        )
        assert len(unlabeled.hits) == 4 * 36 - 3
        assert "NOT IN" in unlabeled.where  # the shorter list goes into the SQL
        uids, vecs = _all(parts)
        keep = [i for i, u in enumerate(uids) if u not in {h.uid for h in labeled.hits}]
        truth = exact_top(vecs[keep], [uids[i] for i in keep], q, 5)
        top5 = search(db, vector=q, k=5, lake=con, filters=SearchFilters(label_status="unlabeled"))
        assert [h.uid for h in top5.hits] == [u for u, _ in truth]
        chips = db.open_table(EMBEDDINGS_TABLE).search().select(["uid", "date", "footprint"])
        assert len(labeled_uids(con, chips.limit(None).to_arrow())) == 3
    with pytest.raises(SearchError, match="needs a DuckLake connection"):
        search(db, vector=q, k=3, filters=SearchFilters(label_status="labeled"))


def test_chip_queries_stay_within_the_query_model(tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    rng = np.random.default_rng(3)
    vecs = unit(rng, 9, DIM)
    write(db, grid_rows(CELL_A, JUNE, vecs, 3, model_id="tiny"))
    write(db, grid_rows(CELL_B, JUNE, vecs, 3, model_id="sat493m", trained=True, origin_m=(400, 0)))
    result = search(db, chip=chip_uid(CELL_A, JUNE, 0, 0), k=20)
    assert {h.model_id for h in result.hits} == {"tiny"} and len(result.hits) == 8
    real = search(db, chip=chip_uid(CELL_B, JUNE, 0, 0), k=3)
    assert not real.untrained and {h.model_id for h in real.hits} == {"sat493m"}


@pytest.mark.slow
def test_an_ann_index_is_used_once_built_and_stays_accurate(tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    rng = np.random.default_rng(11)
    centres = unit(rng, 20, 32)
    vecs = centres[rng.integers(0, 20, 4096)] + 0.3 * rng.standard_normal((4096, 32))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    table = grid_rows(CELL_A, JUNE, vecs, 64)
    write(db, table)
    tbl = db.open_table(EMBEDDINGS_TABLE)
    tbl.create_index(metric="cosine", num_partitions=16, num_sub_vectors=8)
    uids = table.column("uid").to_pylist()
    recalls = []
    for i in range(0, 4096, 205):
        result = search(db, chip=uids[i], k=10)
        assert not result.exact
        truth = {u for u, _ in exact_top(vecs, uids, vecs[i], 11)[1:]}
        recalls.append(len(truth & {h.uid for h in result.hits}) / 10)
        exact = search(db, chip=uids[i], k=10, exact=True)
        assert exact.exact and {h.uid for h in exact.hits} == truth
    assert np.mean(recalls) >= 0.9


def test_vector_files(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(4, dtype=np.float32)[None, :])
    assert read_vector_file(tmp_path / "v.npy").shape == (1, 4)
    (tmp_path / "v.json").write_text("[1, 2.5, -3]")
    assert read_vector_file(tmp_path / "v.json").tolist() == [1.0, 2.5, -3.0]
    (tmp_path / "bad.json").write_text('["a", 1]')
    with pytest.raises(SearchError, match="list of numbers"):
        read_vector_file(tmp_path / "bad.json")
    (tmp_path / "v.txt").write_text("1 2")
    with pytest.raises(SearchError, match=r"\.npy or \.json"):
        read_vector_file(tmp_path / "v.txt")
    with pytest.raises(SearchError, match="no vector file"):
        read_vector_file(tmp_path / "missing.npy")


def _one_by_one(db, chips, **kw):
    return [
        [(h.uid, round(h.distance, 6), h.rank) for h in search(db, query=c, **kw).hits]
        for c in chips
    ]


def test_search_many_answers_like_one_search_per_query(world):
    """One batched query, the same hits (each query's own chip left out) as k single searches."""
    db, parts = world
    tbl = db.open_table(EMBEDDINGS_TABLE)
    chips = [chip_query(tbl, uid, "vector") for uid in parts[(CELL_A, JUNE)][0][:7]]
    chips.append(chip_query(tbl, parts[(CELL_B, JULY)][0][3], "vector"))
    filters = SearchFilters(until=JUNE)
    calls = []
    original = type(tbl).search

    def spy(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("query"))
        return original(self, *args, **kwargs)

    type(tbl).search = spy
    try:
        batch = search_many(db, chips, k=5, filters=filters, opened=tbl)
    finally:
        type(tbl).search = original
    assert len(calls) == 1 and len(calls[0]) == len(chips)  # ONE LanceDB query for all 8
    got = [[(h.uid, round(h.distance, 6), h.rank) for h in r.hits] for r in batch]
    assert got == _one_by_one(db, chips, k=5, filters=filters)
    assert all(len(r.hits) == 5 and r.exact for r in batch)
    assert all(c.uid not in {h.uid for h in r.hits} for c, r in zip(chips, batch, strict=True))
    assert search_many(db, [], k=5) == []
    # a batch of one (a round with one candidate): LanceDB then tags no `query_index`
    one = search_many(db, chips[:1], k=5, filters=filters, opened=tbl)
    assert [[(h.uid, round(h.distance, 6), h.rank) for h in r.hits] for r in one] == got[:1]


def test_search_many_refuses_a_batch_of_two_models(tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    rng = np.random.default_rng(3)
    write(db, grid_rows(CELL_A, JUNE, unit(rng, 9, DIM), 3, model_id="tiny"))
    write(db, grid_rows(CELL_B, JUNE, unit(rng, 9, DIM), 3, model_id="sat", origin_m=(400, 0)))
    tbl = db.open_table(EMBEDDINGS_TABLE)
    chips = [chip_query(tbl, chip_uid(c, JUNE, 0, 0), "vector") for c in (CELL_A, CELL_B)]
    with pytest.raises(SearchError, match="one embedding model"):
        search_many(db, chips, k=3)


@pytest.mark.slow
def test_the_project_ivf_flat_index_serves_search_and_search_many_alike(tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    rng = np.random.default_rng(5)
    centres = unit(rng, 20, 32)
    vecs = centres[rng.integers(0, 20, 2500)] + 0.3 * rng.standard_normal((2500, 32))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    table = grid_rows(CELL_A, JUNE, vecs, 50)
    write(db, table)
    tbl = db.open_table(EMBEDDINGS_TABLE)
    assert build_ann_index(tbl, 2500).startswith("IVF_FLAT (cosine, 50 partition(s), 8 probes)")
    uids = table.column("uid").to_pylist()
    chips = [chip_query(tbl, uids[i], "vector") for i in range(0, 2500, 125)]
    batch = search_many(db, chips, k=10, opened=tbl)
    assert not any(r.exact for r in batch)
    got = [[(h.uid, round(h.distance, 6), h.rank) for h in r.hits] for r in batch]
    assert got == _one_by_one(db, chips, k=10)
    recalls = [
        len({h.uid for h in r.hits} & {u for u, _ in exact_top(vecs, uids, c.vector, 11)[1:]}) / 10
        for c, r in zip(chips, batch, strict=True)
    ]
    # 8 of 50 partitions on a small, overlapping 32-d table; Lance's k-means starts at random, so
    # recall varies between runs (0.795-0.9 seen). An index whose probes miss the query's
    # neighbourhood would score near 8/50 = 0.16; bench/embeddings.py measures the real size.
    assert np.mean(recalls) >= 0.6
