"""Parquet export to a folder and to S3 (moto), and DuckDB QA that catches broken vectors."""

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel_core.embed.export import export_glob, export_key, export_parquet
from flywheel_core.embed.qa import qa_metrics
from flywheel_core.embed.schema import embedding_schema
from flywheel_core.store.objects import LocalStore, S3Store, split_s3
from flywheel_tests.embed.vectors import embedding_rows, unit_vectors

CELL, DAY = "479e758c4", "2024-06-01"


def test_one_file_per_partition_at_a_fixed_key(tmp_path):
    store = LocalStore(tmp_path / "objects")
    first = embedding_rows(unit_vectors(6, 8, seed=1))
    uri = export_parquet(first, store, "vhr_chips", CELL, DAY)
    key = f"embeddings/vhr_chips/cell={CELL}/date={DAY}/part-0.parquet"
    assert export_key("vhr_chips", CELL, DAY) == key
    assert uri == str((tmp_path / "objects" / key).resolve())
    second = embedding_rows(unit_vectors(4, 8, seed=2))
    assert export_parquet(second, store, "vhr_chips", CELL, DAY) == uri
    files = list((tmp_path / "objects").rglob("*.parquet"))
    assert files == [tmp_path / "objects" / key]
    assert pq.read_table(uri).equals(second)
    assert export_glob(store, "vhr_chips").endswith("embeddings/vhr_chips/cell=*/date=*/*.parquet")


def test_export_refuses_rows_of_another_partition_and_odd_names(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(ValueError, match="date"):
        export_parquet(embedding_rows(unit_vectors(2, 8)), store, "vhr_chips", CELL, "2024-07-01")
    with pytest.raises(ValueError, match="path segment"):
        export_key("../etc", CELL, DAY)


def _planted(dim: int = 8) -> pa.Table:
    vectors = unit_vectors(10, dim, seed=3)
    vectors[1] = np.nan  # a broken forward
    vectors[2] = 0.0  # a dead input
    vectors[3] = vectors[0]  # the same vector for two other chips
    vectors[4] = vectors[0]
    return embedding_rows(vectors)


def test_qa_finds_planted_nan_zero_and_duplicate_vectors(tmp_path):
    uri = export_parquet(_planted(), LocalStore(tmp_path), "vhr_chips", CELL, DAY)
    m = qa_metrics(duckdb.connect(), uri, expected_tiles=12)
    assert m["rows"] == 10 and m["dim"] == 8 and m["consistent_dim"]
    assert m["nan_vectors"] == 1
    assert m["zero_vectors"] == 1
    assert m["duplicate_vectors"] == 2 and m["duplicate_fraction"] == pytest.approx(0.2)
    assert m["tiles_with_vector"] == 8
    assert m["coverage"] == pytest.approx(8 / 12)
    assert m["duplicate_uids"] == 0
    # Stored CLS norms: 3 for the 8 good rows, 0 for the dead one, NaN (left out) for the broken.
    assert (m["norm_min"], m["norm_max"]) == (0.0, pytest.approx(3.0))
    assert m["norm_mean"] == pytest.approx(24 / 9, abs=1e-5)
    assert m["unit_norm_error"] < 1e-5
    assert m["model_ids"] == "test-vectors" and m["trained"] is True


def test_qa_of_clean_vectors_and_of_an_empty_partition(tmp_path):
    store = LocalStore(tmp_path)
    clean = export_parquet(embedding_rows(unit_vectors(5, 8)), store, "vhr_chips", CELL, DAY)
    m = qa_metrics(duckdb.connect(), clean, expected_tiles=5)
    assert (m["coverage"], m["nan_vectors"], m["zero_vectors"], m["duplicate_vectors"]) == (
        1.0,
        0,
        0,
        0,
    )
    empty = export_parquet(
        embedding_schema(8).empty_table(), store, "vhr_chips", CELL, "2024-07-01"
    )
    assert qa_metrics(duckdb.connect(), empty, expected_tiles=0)["coverage"] == 1.0
    assert qa_metrics(duckdb.connect(), empty, expected_tiles=3)["coverage"] == 0.0
    both = qa_metrics(duckdb.connect(), export_glob(store, "vhr_chips"), expected_tiles=5)
    assert both["rows"] == 5
    with pytest.raises(FileNotFoundError):
        qa_metrics(duckdb.connect(), str(tmp_path / "nothing" / "*.parquet"), expected_tiles=1)


def test_export_to_s3_and_qa_over_s3(s3_env, s3_server):
    bucket, prefix = split_s3(s3_env)
    store = S3Store(bucket, prefix, s3_server.client())
    uri = export_parquet(_planted(), store, "vhr_chips", CELL, DAY)
    assert uri == f"s3://{bucket}/{prefix.strip('/')}/{export_key('vhr_chips', CELL, DAY)}"
    assert s3_server.keys(prefix.strip("/")) == [
        f"{prefix.strip('/')}/{export_key('vhr_chips', CELL, DAY)}"
    ]
    export_parquet(_planted(), store, "vhr_chips", CELL, DAY)  # rerun: same single object
    assert len(s3_server.keys(prefix.strip("/"))) == 1
    m = qa_metrics(duckdb.connect(), export_glob(store, "vhr_chips"), expected_tiles=10)
    assert (m["rows"], m["nan_vectors"], m["zero_vectors"], m["duplicate_vectors"]) == (10, 1, 1, 2)
    assert m["coverage"] == pytest.approx(0.8)
