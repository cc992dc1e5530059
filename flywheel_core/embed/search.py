"""Nearest chips by embedding: one search behind `flywheel search` and the hard-negative miner.

A query is a vector, a chip uid, or a lon/lat point (the chip whose footprint contains it, else
the chip with the nearest centre within `max_point_distance_m`). Distances are cosine (1 - cos),
the metric the embedding rows are normalised for. Filters are applied *before* the vector search
(a Lance prefilter), so asking for k hits in one cell returns k hits of that cell, not the cell's
share of a global top k.

`split` and `label_status` are not columns of the embedding table; search_filters resolves them
into a uid list first.

When the vector column has a cosine ANN index the search uses it: an IVF_FLAT index (the
project's, flywheel_core.embed.table) with `default_nprobes` probes, a quantised one (IVF_PQ,
IVF_HNSW_SQ) with `refine_factor` exact re-ranking; otherwise, or with `exact=True`, it is a
brute-force scan, which is exact.

`search_many` answers many prepared queries of one pool in a single multi-vector LanceDB query
(the hard-negative miner's path): one plan, one prefilter evaluation and one pass over the
probed partitions for the whole batch instead of one round trip per query.

Chip and point queries search only rows of the query's embedding model: vectors of two models
(say the offline tiny config and the real SAT-493M ViT-L) share a width but not a space.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import lancedb
import pyarrow as pa

from flywheel_core.embed.schema import EMBEDDINGS_TABLE
from flywheel_core.embed.search_filters import (
    LABEL_STATUSES,
    SearchFilters,
    labeled_uids,
    restriction,
)
from flywheel_core.embed.search_queries import (
    HIT_COLUMNS,
    MAX_POINT_DISTANCE_M,
    EmptyTableError,
    PointNotCoveredError,
    Query,
    SearchError,
    UnknownChipError,
    VectorWidthError,
    and_clauses,
    as_query_vector,
    chip_query,
    in_list,
    open_embeddings,
    point_query,
    read_rows,
    read_vector_file,
    sql_str,
    vector_query,
    vector_width,
    wkb_to_wkt,
)
from flywheel_core.embed.table import default_nprobes

__all__ = [
    "DEFAULT_K",
    "LABEL_STATUSES",
    "EmptyTableError",
    "Hit",
    "PointNotCoveredError",
    "Query",
    "SearchError",
    "SearchFilters",
    "SearchResult",
    "UnknownChipError",
    "VectorWidthError",
    "and_clauses",
    "chip_query",
    "in_list",
    "labeled_uids",
    "point_query",
    "read_vector_file",
    "search",
    "search_many",
    "sql_str",
    "uid_tail",
    "vector_query",
]

log = logging.getLogger(__name__)

DEFAULT_K = 10


@dataclass(frozen=True)
class Hit:
    rank: int  # 1 = nearest
    uid: str
    dataset: str
    cell: str
    date: str
    distance: float  # cosine distance, 1 - cos
    footprint: bytes = field(repr=False)  # WKB polygon, EPSG:4326
    center_lon: float
    center_lat: float
    model_id: str | None = None
    trained: bool | None = None

    @property
    def footprint_wkt(self) -> str | None:
        return wkb_to_wkt(self.footprint)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "uid": self.uid,
            "dataset": self.dataset,
            "cell": self.cell,
            "date": self.date,
            "distance": self.distance,
            "center_lon": self.center_lon,
            "center_lat": self.center_lat,
            "footprint_wkt": self.footprint_wkt,
            "model_id": self.model_id,
            "trained": self.trained,
        }


@dataclass(frozen=True)
class SearchResult:
    query: Query
    hits: tuple[Hit, ...]
    k: int
    column: str
    exact: bool  # brute force (no usable index, or asked for)
    table_version: int
    where: str | None  # the prefilter actually used

    @property
    def untrained(self) -> bool:
        """True when any vector involved came from random weights: plumbing, not evidence."""
        flags = [self.query.trained, *(h.trained for h in self.hits)]
        return any(f is False for f in flags)

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query.as_dict(),
            "k": self.k,
            "column": self.column,
            "exact": self.exact,
            "table_version": self.table_version,
            "where": self.where,
            "untrained": self.untrained,
            "hits": [h.as_dict() for h in self.hits],
        }


def _cosine_index(tbl: Any, column: str) -> Any | None:
    """The table's ANN index on `column` if it measures cosine distance (else it cannot serve)."""
    for index in tbl.list_indices():
        if column not in list(index.columns):
            continue
        details = getattr(index, "index_details", None) or {}
        metric = str(details.get("metric_type", "cosine")).lower()
        if metric == "cosine":
            return index
        log.info(
            "index %s on %s measures %s, not cosine: searching exactly", index.name, column, metric
        )
    return None


def _resolve(
    tbl: Any,
    column: str,
    vector: Any,
    chip: str | None,
    point: tuple[float, float] | None,
    filters: SearchFilters,
    max_point_distance_m: float,
) -> Query:
    given = sum(x is not None for x in (vector, chip, point))
    if given != 1:
        raise SearchError("give exactly one of a vector, a chip uid or a point")
    if chip is not None:
        return chip_query(tbl, chip, column)
    if point is not None:
        scope = SearchFilters(
            dataset=filters.dataset,
            date=filters.date,
            until=filters.until,
            model_id=filters.model_id,
        )
        return point_query(
            tbl,
            float(point[0]),
            float(point[1]),
            where=and_clauses(scope.column_clauses()),
            column=column,
            max_distance_m=max_point_distance_m,
        )
    return vector_query(tbl, vector, column)


def search(
    db: lancedb.DBConnection,
    *,
    vector: Any | None = None,
    chip: str | None = None,
    point: tuple[float, float] | None = None,
    query: Query | None = None,
    k: int = DEFAULT_K,
    filters: SearchFilters | None = None,
    lake: duckdb.DuckDBPyConnection | None = None,
    column: str = "vector",
    include_query: bool = False,
    exact: bool = False,
    refine_factor: int = 10,
    max_point_distance_m: float = MAX_POINT_DISTANCE_M,
    table: str = EMBEDDINGS_TABLE,
    where: str | None = None,
    opened: Any | None = None,
) -> SearchResult:
    """The k chips nearest the query that match `filters`, nearest first.

    Give one of `vector`, `chip` (a uid), `point` (lon, lat) or a prepared `query`. `lake` is
    needed only for the label-status filter. The query chip itself is left out unless
    `include_query`. `where` is an extra SQL predicate on the embedding rows (a caller that runs
    many searches over one pool can resolve an expensive filter once and pass it here, and
    pass the embedding table it already has open as `opened`).
    """
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    filters = filters or SearchFilters()
    tbl = opened if opened is not None else open_embeddings(db, table)
    if query is None:
        query = _resolve(tbl, column, vector, chip, point, filters, max_point_distance_m)
    else:
        query = replace(query, vector=as_query_vector(query.vector, vector_width(tbl, column)))
    if filters.model_id is None and query.model_id is not None:
        filters = replace(filters, model_id=query.model_id)
    clauses = [*filters.column_clauses(), where]
    if query.uid is not None and not include_query:
        clauses.append(f"uid != {sql_str(query.uid)}")
    base = and_clauses(clauses)
    prefilter = and_clauses([base, restriction(db, tbl, base, filters, lake)])
    index = None if exact else _cosine_index(tbl, column)
    if filters.model_id is None:
        _warn_if_mixed(tbl)
    builder = _builder(tbl, query.vector, column, k, prefilter, index, refine_factor)
    found = builder.to_arrow()
    hits = _hits(found)
    log.info(
        "search (%s%s): %d hit(s) of k=%d, %s, table version %d",
        query.kind,
        f" {query.uid}" if query.uid else "",
        len(hits),
        k,
        f"index {index.name}" if index is not None else "exact scan",
        tbl.version,
    )
    return _result(query, hits, k, column, index, tbl, prefilter)


def _result(
    query: Any, hits: Sequence[Any], k: int, column: str, index: Any, tbl: Any, where: str | None
) -> SearchResult:
    """What `search` and `search_many` return for one query: its hits and how they were found."""
    return SearchResult(
        query=query,
        hits=tuple(hits),
        k=k,
        column=column,
        exact=index is None,
        table_version=int(tbl.version),
        where=where,
    )


def _builder(
    tbl: Any, vectors: Any, column: str, k: int, prefilter: str | None, index: Any, refine: int
) -> Any:
    """The LanceDB query for one vector or a list of them, tuned for the index that serves it."""
    builder = (
        tbl.search(vectors, vector_column_name=column)
        .distance_type("cosine")
        .select([*HIT_COLUMNS, "_distance"])
        .limit(k)
    )
    if prefilter:
        builder = builder.where(prefilter, prefilter=True)
    if index is None:
        return builder.bypass_vector_index()
    if "flat" in str(getattr(index, "index_type", "")).lower():  # exact distances already
        return builder.nprobes(default_nprobes(int(getattr(index, "num_indexed_rows", 0) or 1)))
    return builder.refine_factor(refine)


def search_many(
    db: lancedb.DBConnection,
    queries: Sequence[Query],
    *,
    k: int = DEFAULT_K,
    filters: SearchFilters | None = None,
    lake: duckdb.DuckDBPyConnection | None = None,
    column: str = "vector",
    exact: bool = False,
    refine_factor: int = 10,
    table: str = EMBEDDINGS_TABLE,
    where: str | None = None,
    opened: Any | None = None,
) -> list[SearchResult]:
    """`search(query=q, ...)` for every prepared query, answered by ONE LanceDB query.

    The queries share `filters` and `where` (one pool) and one embedding model. Each query's own
    chip is left out as `search` does, but after the search rather than in the prefilter, which
    is shared: the batch asks for k + 1 hits and drops the query's uid, which leaves the same k
    hits a per-query `uid != ...` prefilter would.
    """
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    if not queries:
        return []
    filters = filters or SearchFilters()
    tbl = opened if opened is not None else open_embeddings(db, table)
    width = vector_width(tbl, column)
    queries = [replace(q, vector=as_query_vector(q.vector, width)) for q in queries]
    models = {q.model_id for q in queries}
    if filters.model_id is None and len(models) == 1 and None not in models:
        filters = replace(filters, model_id=next(iter(models)))
    elif filters.model_id is None and len(models) > 1:
        raise SearchError(f"one batch searches one embedding model; got {sorted(map(str, models))}")
    base = and_clauses([*filters.column_clauses(), where])
    prefilter = and_clauses([base, restriction(db, tbl, base, filters, lake)])
    index = None if exact else _cosine_index(tbl, column)
    vectors = [q.vector for q in queries]
    found = _builder(tbl, vectors, column, k + 1, prefilter, index, refine_factor).to_arrow()
    # LanceDB tags rows with `query_index` only when it was given more than one vector
    if "query_index" in found.schema.names:
        which = found.column("query_index").to_pylist()
    else:
        which = [0] * found.num_rows
    log.info("search_many: %d queries in one batch, %d rows", len(queries), found.num_rows)
    results = []
    for i, q in enumerate(queries):
        mine = found.filter(pa.array([w == i for w in which], pa.bool_()))
        hits = [h for h in _hits(mine) if h.uid != q.uid][:k]
        hits = [replace(h, rank=r) for r, h in enumerate(hits, start=1)]
        results.append(_result(q, hits, k, column, index, tbl, prefilter))
    return results


def _warn_if_mixed(tbl: Any) -> None:
    models = set(read_rows(tbl, None, ["model_id"]).column("model_id").to_pylist())
    if len(models) > 1:
        log.warning(
            "the table holds vectors of %d models (%s) and the query names none: distances "
            "across models are meaningless; filter by model_id",
            len(models),
            ", ".join(sorted(str(m) for m in models)),
        )


def _hits(found: pa.Table) -> list[Hit]:
    rows = [r for r in found.to_pylist() if r["_distance"] is not None]
    rows = [r for r in rows if math.isfinite(r["_distance"])]
    rows.sort(key=lambda r: (r["_distance"], r["uid"]))
    return [
        Hit(
            rank=i,
            uid=r["uid"],
            dataset=r["dataset"],
            cell=r["cell"],
            date=r["date"],
            distance=float(r["_distance"]),
            footprint=r["footprint"],
            center_lon=float(r["center_lon"]),
            center_lat=float(r["center_lat"]),
            model_id=r["model_id"],
            trained=r["trained"],
        )
        for i, r in enumerate(rows, start=1)
    ]


def uid_tail(uid: str, parts: int = 2) -> str:
    """The distinguishing end of a uid (`<cell>|<date>|r..c..` -> `<date>|r..c..`)."""
    return "|".join(uid.split("|")[-parts:])
