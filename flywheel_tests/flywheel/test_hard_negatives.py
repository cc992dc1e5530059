"""Hard-negative candidates: mined from embedding neighbours after the backfill, recorded once."""

from __future__ import annotations

from datetime import date

import geopandas as gpd
import lancedb
import numpy as np
import pytest
import shapely
from dagster import DagsterInstance, MultiPartitionKey, materialize

from flywheel_assets.loop.backfill import validated_backfill
from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_assets.resources import ImageryResource
from flywheel_core.flywheel.acceptance import AcceptanceRules
from flywheel_core.flywheel.backfill import backfill
from flywheel_core.flywheel.hard_negatives import candidate_id, hard_negatives, record
from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.lake.models import register_model, registry_name
from flywheel_core.lake.predictions import prediction_row, replace_predictions
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.gpu import GPUResource
from flywheel_resources.lancedb_io import LanceDBResource
from flywheel_tests.embed.embedding_rows import CHIP_M, chip_uid, grid_rows, write
from flywheel_tests.flywheel.conftest import H3_RES, S2_LEVEL, import_seeds
from flywheel_tests.flywheel.shapes import square

CELL = cell_from_lonlat(11.58, 48.14, S2_LEVEL)
MAY, JUNE, JULY, AUGUST = date(2024, 5, 1), date(2024, 6, 1), date(2024, 7, 1), date(2024, 8, 1)
DIM = 8
SIDE = 4
K = 3
ORIGIN = (0.0, 150.0)  # the grid's north-west corner, metres from the point: inside CELL


def _e(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


def _vectors(day: date) -> np.ndarray:
    """Chip (r, c) of a SIDE x SIDE grid; chip (1, 1) of June is the query of the rejection."""
    rng = np.random.default_rng(day.toordinal())
    vecs = np.zeros((SIDE * SIDE, DIM), dtype=np.float32)
    vecs[:, 5:] = rng.standard_normal((SIDE * SIDE, 3))  # far from e0 and e3 (cos ~ 0)
    at = {(r, c): i for i, (r, c) in enumerate((r, c) for r in range(SIDE) for c in range(SIDE))}
    if day == JUNE:
        vecs[at[1, 1]] = _e(0)
        vecs[at[1, 2]] = _e(0) + 0.2 * _e(1)  # nearest unlabeled neighbour
        vecs[at[2, 1]] = _e(0) + 0.3 * _e(1)  # third
        vecs[at[2, 2]] = _e(3)  # under the false positive
        vecs[at[3, 3]] = _e(3) + 0.1 * _e(4)
    if day == MAY:
        vecs[at[1, 1]] = _e(0) + 0.25 * _e(2)  # second: the same place a month earlier
    vecs[at[0, 0]] = _e(0) + 0.01 * _e(1)  # nearest of all, but a label covers it
    if day == JULY:
        vecs[:] = _e(0)  # identical to the query, but after the partition date
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def _embed(db, days=(MAY, JUNE, JULY)) -> None:
    for day in days:
        write(db, grid_rows(CELL, day.isoformat(), _vectors(day), SIDE, origin_m=ORIGIN))


def _centre_square(r: int, c: int, size: float = 8.0, dx: float = 0.0):
    """A square detection centred in chip (r, c) of the grid (shifted `dx` m east)."""
    x = ORIGIN[0] + c * CHIP_M + CHIP_M / 2 - size / 2 + dx
    y = ORIGIN[1] - (r * CHIP_M + CHIP_M / 2) - size / 2
    return square(x, y, size)


SEED = _centre_square(0, 0, 20.0)
DETECTIONS = {
    "p-low": (_centre_square(1, 1), 0.3),  # rejected: score -> mined
    "p-dup": (_centre_square(0, 0, 20.0, dx=0.5), 0.9),  # rejected: already_labeled -> skipped
    "p-true": (_centre_square(2, 0, 10.0), 0.95),  # accepted, a true installation
    # rejected: score; the hidden truth has no installation here either, but mining never reads
    # the truth (it feeds training), so a false positive the rules accept is never mined
    "p-fp": (_centre_square(2, 2), 0.5),
    "p-far": (square(900.0, -900.0, 8.0), 0.2),  # rejected, but in no chip
}
TRUTH = [DETECTIONS["p-true"][0]]


def _dets():
    return [
        {
            "prediction_id": pid,
            "geometry": shapely.to_wkb(g),
            "score": s,
            "area_m2": None,
            "msi_pvi": -0.7,
        }
        for pid, (g, s) in DETECTIONS.items()
    ]


def _backfill(con):
    return backfill(
        con,
        _dets(),
        cell=CELL,
        date=JUNE,
        round=1,
        model_id="unet-r1",
        rules=AcceptanceRules(),
        run_id="run-1",
        s2_level=S2_LEVEL,
        h3_resolution=H3_RES,
    )


def _mine(db, con, decided, **kw):
    args = {"cell": CELL, "date": JUNE, "round": 1, "model_id": "unet-r1", "k": K}
    args.update(kw)
    return hard_negatives(db, con, decided, **args)


def _rows(con):
    cur = con.execute(
        "SELECT prediction_id, reason, query_uid, neighbour_uid, neighbour_date, rank, distance, "
        "trained, status, embedding_model_id, candidate_id FROM hard_negatives "
        "ORDER BY prediction_id, rank"
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_rejected_detections_record_unlabeled_neighbours(lake, tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    _embed(db)
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 1, 1)])
        result = _backfill(con)
        assert result.rejected == {"already_labeled": 1, "score": 3}
        mined = _mine(db, con, result.decided)
        assert mined.queries == 3 and mined.no_query_chip == 1  # p-far is in no chip
        assert mined.reasons == {"rejected: score": 3}
        assert mined.candidates == mined.inserted == 2 * K and mined.trained is False
        rows = _rows(con)
    low = [r for r in rows if r["prediction_id"] == "p-low"]
    assert [r["neighbour_uid"] for r in low] == [
        chip_uid(CELL, JUNE.isoformat(), 1, 2),
        chip_uid(CELL, MAY.isoformat(), 1, 1),
        chip_uid(CELL, JUNE.isoformat(), 2, 1),
    ]
    assert [r["rank"] for r in low] == [1, 2, 3]
    assert low[0]["distance"] == pytest.approx(1 - 1 / np.sqrt(1.04), abs=1e-5)
    assert {r["query_uid"] for r in low} == {chip_uid(CELL, JUNE.isoformat(), 1, 1)}
    assert {r["reason"] for r in low} == {"rejected: score"}
    fp = [r for r in rows if r["prediction_id"] == "p-fp"]
    assert {r["reason"] for r in fp} == {"rejected: score"}
    assert fp[0]["neighbour_uid"] == chip_uid(CELL, JUNE.isoformat(), 3, 3)
    for r in rows:  # never the labeled chip, never after the partition date, never the query
        assert "r00000c00000" not in r["neighbour_uid"]
        assert r["neighbour_date"] <= JUNE and r["neighbour_uid"] != r["query_uid"]
        assert r["status"] == "candidate" and r["trained"] is False
        assert r["embedding_model_id"] == "dinov3-tiny-random"
        assert r["candidate_id"] == candidate_id(
            next(
                d.detection
                for d in result.decided
                if d.detection.prediction_id == r["prediction_id"]
            ),
            r["neighbour_uid"],
            1,
        )
    assert not any(r["prediction_id"] in ("p-dup", "p-true") for r in rows)


def test_mining_sends_its_queries_in_one_batch_with_the_one_at_a_time_answers(
    lake, tmp_path, monkeypatch
):
    """Two rejected detections with a chip each: ONE LanceDB vector query, and the neighbours
    `search` gives each chip on its own (same filters, unlabeled pool, query chip left out)."""
    from lancedb.table import LanceTable

    import flywheel_core.flywheel.hard_negatives as hn
    from flywheel_core.embed.search import SearchFilters, chip_query, search
    from flywheel_core.embed.search_filters import restriction

    db = lancedb.connect(str(tmp_path / "lancedb"))
    _embed(db)
    vector_queries = []
    original = LanceTable.search

    def spy(self, query=None, *args, **kwargs):
        if query is not None:  # a vector search (point lookups scan without a vector)
            vector_queries.append(query)
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(LanceTable, "search", spy)
    monkeypatch.setattr(
        hn, "search", lambda *a, **kw: pytest.fail("one search per query"), raising=False
    )
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 1, 1)])
        mined = _mine(db, con, _backfill(con).decided)
        rows = _rows(con)
        assert mined.queries == 3 and mined.no_query_chip == 1
        assert len(vector_queries) == 1 and len(vector_queries[0]) == 2  # p-low and p-fp
        monkeypatch.setattr(LanceTable, "search", original)
        tbl = db.open_table("dinov3_embeddings")
        by_query = {}
        for r in rows:
            by_query.setdefault(r["query_uid"], []).append((r["neighbour_uid"], r["rank"]))
        assert len(by_query) == 2
        for uid, got in by_query.items():
            chip = chip_query(tbl, uid, "vector")
            filters = SearchFilters(
                dataset=chip.dataset, until=JUNE.isoformat(), model_id=chip.model_id
            )
            pool = " AND ".join(filters.column_clauses())
            unlabeled = restriction(db, tbl, pool, SearchFilters(label_status="unlabeled"), con)
            alone = search(db, query=chip, k=K, filters=filters, where=unlabeled, opened=tbl)
            assert got == [(h.uid, h.rank) for h in alone.hits]


def test_a_rerun_adds_nothing_and_keeps_reviews(lake, tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    _embed(db)
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 1, 1)])
        first = _mine(db, con, _backfill(con).decided)
        before, snapshot = _rows(con), current_snapshot_id(con)
        again = _mine(db, con, _backfill(con).decided)
        assert (again.inserted, again.deleted, again.unchanged) == (0, 0, first.candidates)
        assert _rows(con) == before
        assert current_snapshot_id(con) == snapshot  # nothing written, no new snapshot
        # A reviewer dismisses one candidate; then every distance moves (say, new embeddings).
        target = before[0]["candidate_id"]
        con.execute(
            "UPDATE hard_negatives SET status = 'dismissed' WHERE candidate_id = ?", [target]
        )
        moved = [dict(r, distance=r["distance"] + 0.01) for r in _raw(con)]
        ins, dele, same = record(con, moved, cell=CELL, date=JUNE, round=1)
        assert (ins, dele, same) == (len(moved), len(moved), 0)
        status = dict(con.execute("SELECT candidate_id, status FROM hard_negatives").fetchall())
        assert status[target] == "dismissed" and len(status) == len(before)
        # Fewer candidates (k = 1) replace the partition+round's rows; other rounds stay.
        _mine(db, con, _backfill(con).decided, round=2)
        fewer = _mine(db, con, _backfill(con).decided, k=1)
        assert fewer.candidates == 2 and fewer.deleted == 2 * K - 2 + fewer.inserted
        counts = dict(
            con.execute("SELECT round, count(*) FROM hard_negatives GROUP BY round").fetchall()
        )
        assert counts == {1: 2, 2: 2 * K}


def _raw(con):
    from flywheel_core.flywheel.hard_negatives import COLUMNS

    cur = con.execute(f"SELECT {', '.join(COLUMNS)} FROM hard_negatives")
    return [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]


def test_no_embeddings_records_nothing_and_does_not_fail(lake, tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    with lake_connection(lake) as con:
        missing_table = _mine(db, con, _backfill(con).decided)
        assert missing_table.no_embeddings and missing_table.candidates == 0
        _embed(db, days=(MAY,))  # other partitions have vectors, this one does not
        missing_partition = _mine(db, con, _backfill(con).decided)
        # No seed label here, so p-dup is accepted: the three score rejections are the queries.
        assert missing_partition.no_embeddings and missing_partition.queries == 3
        assert con.execute("SELECT count(*) FROM hard_negatives").fetchone()[0] == 0


# --- the asset, through a real Dagster run -------------------------------------------------


def _prepare_lake(con, day: date) -> None:
    model_id = f"unet-{day}"
    register_model(
        con,
        {
            "model_id": model_id,
            "name": registry_name(day.isoformat()),
            "round": 1,
            "status": "ready",
        },
    )
    rows = [
        prediction_row(
            shapely.to_wkb(g),
            model_id=model_id,
            round_no=1,
            cell=CELL,
            day=day,
            score=s,
            area_m2=float(shapely.area(g)),
            h3_resolution=H3_RES,
            metrics={"msi_pvi": -0.7},
        )
        for g, s in DETECTIONS.values()
    ]
    replace_predictions(con, model_id, CELL, day, rows)


def test_validated_backfill_records_candidates_once(lake, tmp_path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    _embed(db)
    world = tmp_path / "world"
    world.mkdir()
    gpd.GeoDataFrame({"install_date": ["2020-01-01"]}, geometry=TRUTH, crs=4326).to_parquet(
        world / "truth.parquet"
    )
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 1, 1)])
        for day in (JUNE, AUGUST):
            _prepare_lake(con, day)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(S2_CELLS_NAME, [CELL])
    resources = {
        "ducklake": DuckLakeResource(catalog=lake.catalog, data_path=lake.data_path),
        "imagery": ImageryResource.for_world(world, tmp_path),
        "lancedb": LanceDBResource(uri=str(tmp_path / "lancedb")),
        "gpu": GPUResource(),
    }

    def run(day: date):
        key = MultiPartitionKey({"cell": CELL, "date": day.isoformat()})
        out = materialize(
            [validated_backfill],
            partition_key=key,
            instance=instance,
            resources=resources,
            run_config={
                "ops": {"validated_backfill": {"config": {"hard_negative_k": K, "refine": False}}}
            },
        )
        assert out.success
        return out.asset_materializations_for_node("validated_backfill")[0].metadata

    meta = run(JUNE)
    assert meta["hard_negative_candidates"].value == 2 * K
    # truth.parquet sits beside the catalog, but mining never reads it: rule rejections only
    assert meta["hard_negatives"].value["reasons"] == {"rejected: score": 3}
    with lake_connection(lake) as con:
        n = con.execute("SELECT count(*) FROM hard_negatives").fetchone()[0]
    assert n == 2 * K
    again = run(JUNE)
    assert again["hard_negative_candidates"].value == 2 * K
    assert again["hard_negatives"].value["inserted"] == 0
    with lake_connection(lake) as con:
        assert con.execute("SELECT count(*) FROM hard_negatives").fetchone()[0] == n
    # August has predictions but no embeddings: the flywheel goes on, recording none.
    august = run(AUGUST)
    assert august["hard_negative_candidates"].value == 0
    assert august["hard_negatives"].value["no_embeddings"] is True
    assert august["detections"].value == len(DETECTIONS)  # the backfill itself ran
