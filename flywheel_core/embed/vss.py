"""Nearest neighbours over the Parquet export with DuckDB's vss extension (HNSW).

The export is loaded into a TEMP table (in memory even on a file-backed connection, so no
experimental HNSW persistence is needed) with `vector` cast to the fixed-size `FLOAT[dim]` the
index requires, and an HNSW index with the requested metric is built on it. Rows with a NaN or
zero vector are left out: their cosine distance is undefined and they would poison the graph (QA
counts them separately).

Two behaviours of vss shape `nearest`, both measured on DuckDB 1.5:
- the index is used only when the query vector is a constant in the SQL text, not a bound
  parameter, so the vector is spelled out as a literal (finite floats only);
- a WHERE clause is applied after the index returns its k rows, so a filtered query could get
  fewer than k neighbours (3 of 10 in a 1-in-5 filter). Filtered queries therefore scan exactly;
  the extra `uid` sort key is what keeps the planner from rewriting them into the index scan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np

from flywheel_core.embed.qa import parquet_source, prepare_reader
from flywheel_core.lake.extensions import load_extension
from flywheel_core.lake.quote import literal, string_literal

DISTANCE_FUNCTIONS = {
    "cosine": "array_cosine_distance",
    "l2sq": "array_distance",
    "ip": "array_negative_inner_product",
}
META_COLUMNS = (
    "uid",
    "dataset",
    "tile_id",
    "cell",
    "date",
    "center_lon",
    "center_lat",
    "footprint",
    "model_id",
    "trained",
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier")
    return name


def vector_widths(con: duckdb.DuckDBPyConnection, parquet_glob: str) -> list[int]:
    """The distinct widths of `vector` in the export, sorted (one value for a sound export)."""
    prepare_reader(con, parquet_glob)
    try:
        widths = con.execute(
            f"SELECT DISTINCT len(vector) FROM {parquet_source(parquet_glob)} "
            "WHERE vector IS NOT NULL"
        ).fetchall()
    except duckdb.IOException as exc:
        raise FileNotFoundError(f"no embedding Parquet at {parquet_glob}: {exc}") from exc
    return sorted(int(w[0]) for w in widths)


def build_hnsw(
    con: duckdb.DuckDBPyConnection,
    parquet_glob: str,
    dim: int,
    metric: str = "cosine",
    *,
    name: str = "embeddings_vss",
    m: int = 16,
    ef_construction: int = 128,
    ef_search: int = 64,
) -> str:
    """Load the export into TEMP table `name` with an HNSW index on `vector`; returns `name`."""
    if metric not in DISTANCE_FUNCTIONS:
        raise ValueError(f"metric must be one of {', '.join(DISTANCE_FUNCTIONS)}; got {metric!r}")
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    table = _ident(name)
    load_extension(con, "vss")
    found = vector_widths(con, parquet_glob)
    source = parquet_source(parquet_glob)
    if found and found != [dim]:
        raise ValueError(f"{parquet_glob} holds vectors of width {found}, expected {dim}")
    columns = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    present = {c[0] for c in columns}
    meta = ", ".join(c for c in META_COLUMNS if c in present)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT {meta}, vector::FLOAT[{dim}] AS vector
        FROM {source}
        WHERE vector IS NOT NULL
          AND len(list_filter(vector, lambda x: isnan(x) OR isinf(x))) = 0
          AND NOT list_bool_and(list_transform(vector, lambda x: x = 0))
        """
    )
    con.execute(
        f"CREATE INDEX {table}_hnsw ON {table} USING HNSW (vector) WITH "
        f"(metric = {string_literal(metric)}, M = {int(m)}, "
        f"ef_construction = {int(ef_construction)}, ef_search = {int(ef_search)})"
    )
    con.execute(f"COMMENT ON TABLE {table} IS {string_literal(f'metric={metric};dim={dim}')}")
    return table


def vector_of(con: duckdb.DuckDBPyConnection, table: str, uid: str) -> list[float] | None:
    """The vector of chip `uid` in a table `build_hnsw` made, None if the export lacks it."""
    row = con.execute(f"SELECT vector FROM {_ident(table)} WHERE uid = ?", [uid]).fetchone()
    return None if row is None else [float(x) for x in row[0]]


def _table_meta(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str, int]:
    row = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE table_name = ? ORDER BY temporary DESC LIMIT 1",
        [table],
    ).fetchone()
    if row is None or not row[0] or "metric=" not in row[0]:
        raise ValueError(f"{table!r} is not a table made by build_hnsw on this connection")
    parts = dict(p.split("=", 1) for p in str(row[0]).split(";"))
    return parts["metric"], int(parts["dim"])


def _literal(vector: Sequence[float] | np.ndarray, dim: int) -> str:
    values = np.asarray(vector, dtype=np.float64).ravel()
    if values.size != dim:
        raise ValueError(f"query vector has {values.size} values, the index {dim}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("query vector has NaN or inf values")
    return "[" + ", ".join(literal(float(v)) for v in values) + f"]::FLOAT[{dim}]"


def nearest_sql(
    con: duckdb.DuckDBPyConnection,
    table: str,
    vector: Sequence[float] | np.ndarray,
    k: int,
    where: str | None = None,
    columns: Sequence[str] = (),
) -> str:
    """The SQL `nearest` runs (EXPLAIN it to see HNSW_INDEX_SCAN in the unfiltered plan)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    name = _ident(table)
    metric, dim = _table_meta(con, name)
    fn = DISTANCE_FUNCTIONS[metric]
    extra = "".join(f", {_ident(c)}" for c in columns if c not in ("uid", "distance"))
    select = f"SELECT uid{extra}, {fn}(vector, {_literal(vector, dim)}) AS distance FROM {name}"
    if where:
        return f"{select} WHERE ({where}) ORDER BY distance, uid LIMIT {int(k)}"
    return f"{select} ORDER BY distance LIMIT {int(k)}"


def nearest(
    con: duckdb.DuckDBPyConnection,
    table: str,
    vector: Sequence[float] | np.ndarray,
    k: int,
    where: str | None = None,
    columns: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The k nearest rows to `vector` as dicts of uid, distance (and `columns`), nearest first.

    `where` is trusted SQL over the table's columns (e.g. "cell = 'abc' AND date = '2024-06-01'");
    with it the search is exact, without it the HNSW index answers.
    """
    cursor = con.execute(nearest_sql(con, table, vector, k, where, columns))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
