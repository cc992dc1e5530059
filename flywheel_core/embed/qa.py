"""Quality of exported embeddings, measured by DuckDB over the Parquet files themselves.

Measuring the export (not the in-memory arrays) checks what downstream readers will actually get:
a vector lost or mangled on the way to the object store shows up here. What can go wrong with an
embedding run, and what each metric catches:

- coverage: tiles without a usable vector (a crash midway, a filter that dropped chips);
- NaN / inf: a numerically broken forward (fp16 overflow, a bad normalisation);
- zero vectors: dead inputs (an all-zero chip gives a zero CLS before normalisation);
- duplicates: identical vectors for different tiles (the same chip twice, or a model that
  ignores its input);
- norms: the CLS norm before normalisation, whose spread drifts when the inputs or the
  statistics are wrong.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb

from flywheel_core.lake.extensions import load_extension
from flywheel_core.lake.quote import string_literal
from flywheel_core.lake.secrets import create_s3_secret


def prepare_reader(con: duckdb.DuckDBPyConnection, uri: str) -> None:
    """Load httpfs and the S3 secret (from the environment) when `uri` is on S3."""
    if uri.startswith(("s3://", "s3a://")):
        load_extension(con, "httpfs")
        create_s3_secret(con)


def parquet_source(uri: str) -> str:
    """`read_parquet(...)` of a file or glob, columns from the files only (no hive columns)."""
    return f"read_parquet({string_literal(uri)}, hive_partitioning = false, union_by_name = true)"


_METRICS_SQL = """
WITH raw AS (
    SELECT uid, vector, norm, model_id, trained,
           len(list_filter(vector, lambda x: isnan(x) OR isinf(x))) > 0 AS non_finite,
           list_bool_and(list_transform(vector, lambda x: x = 0)) AS zero
    FROM {source}
), good AS (
    SELECT * FROM raw WHERE NOT non_finite AND NOT zero
)
SELECT
    (SELECT count(*) FROM raw) AS rows,
    (SELECT count(*) - count(DISTINCT uid) FROM raw) AS duplicate_uids,
    (SELECT count(*) FILTER (WHERE non_finite) FROM raw) AS nan_vectors,
    (SELECT count(*) FILTER (WHERE zero AND NOT non_finite) FROM raw) AS zero_vectors,
    (SELECT count(DISTINCT uid) FROM good) AS tiles_with_vector,
    (SELECT count(*) - count(DISTINCT vector) FROM good) AS duplicate_vectors,
    (SELECT max(len(vector)) FROM raw) AS dim,
    (SELECT min(len(vector)) FROM raw) AS dim_min,
    (SELECT min(norm) FILTER (WHERE isfinite(norm)) FROM raw) AS norm_min,
    (SELECT avg(norm) FILTER (WHERE isfinite(norm)) FROM raw) AS norm_mean,
    (SELECT max(norm) FILTER (WHERE isfinite(norm)) FROM raw) AS norm_max,
    (SELECT stddev_pop(norm) FILTER (WHERE isfinite(norm)) FROM raw) AS norm_std,
    (SELECT max(abs(sqrt(list_dot_product(vector, vector)) - 1)) FROM good) AS unit_norm_error,
    (SELECT string_agg(DISTINCT model_id, ',' ORDER BY model_id) FROM raw) AS model_ids,
    (SELECT bool_and(trained) FROM raw) AS trained
"""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def qa_metrics(
    con: duckdb.DuckDBPyConnection, parquet_glob: str, expected_tiles: int
) -> dict[str, Any]:
    """Coverage, NaN / zero / duplicate vectors and norm statistics of exported embeddings.

    `coverage` = distinct tiles with a finite, non-zero vector / `expected_tiles` (1.0 when
    nothing was expected and nothing is there). Works on local paths and s3:// URIs.
    """
    if expected_tiles < 0:
        raise ValueError(f"expected_tiles must be >= 0, got {expected_tiles}")
    prepare_reader(con, parquet_glob)
    try:
        cursor = con.execute(_METRICS_SQL.format(source=parquet_source(parquet_glob)))
    except duckdb.IOException as exc:
        raise FileNotFoundError(f"no embedding Parquet at {parquet_glob}: {exc}") from exc
    names = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    assert row is not None
    metrics = {name: _clean(value) for name, value in zip(names, row, strict=True)}
    for name in ("rows", "duplicate_uids", "nan_vectors", "zero_vectors", "duplicate_vectors"):
        metrics[name] = int(metrics[name] or 0)
    metrics["tiles_with_vector"] = int(metrics["tiles_with_vector"] or 0)
    metrics["dim"] = int(metrics["dim"] or 0)
    metrics["consistent_dim"] = metrics.pop("dim_min") in (None, metrics["dim"])
    metrics["expected_tiles"] = int(expected_tiles)
    # Above 1 when vectors exist for tiles that were not expected: that fails a == 1 check too.
    metrics["coverage"] = (
        metrics["tiles_with_vector"] / expected_tiles
        if expected_tiles
        else (1.0 if metrics["rows"] == 0 else float(metrics["rows"]))
    )
    metrics["duplicate_fraction"] = (
        metrics["duplicate_vectors"] / metrics["rows"] if metrics["rows"] else 0.0
    )
    return metrics
