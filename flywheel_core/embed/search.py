"""Nearest chips by embedding: one search behind `flywheel search` and the hard-negative miner.

A query is a vector, a chip uid, or a lon/lat point (the chip whose footprint contains it, else
the chip with the nearest centre within `max_point_distance_m`). Distances are cosine (1 - cos),
the metric the embedding rows are normalised for. Filters are applied *before* the vector search
(a Lance prefilter), so asking for k hits in one cell returns k hits of that cell, not the cell's
share of a global top k.

Two filters are not columns of the embedding table and are resolved into a uid list first:
- `split`: the `training_data` row of the same uid (chips left out of the training data, as
  ambiguous or surplus negatives, have no split and never match);
- `label_status`: "labeled" when the chip footprint meets an active DuckLake label installed on or
  before the chip's date (undated labels count), as `seed_labels` reads labels; else "unlabeled".
Whichever side of that split is shorter goes into the SQL (`uid IN` or `uid NOT IN`), so the
common "unlabeled" filter costs a list of the few labeled chips.

When the vector column has a cosine ANN index the search uses it (with `refine_factor` exact
re-ranking); otherwise, or with `exact=True`, it is a brute-force scan, which is exact.

Chip and point queries search only rows of the query's embedding model: vectors of two models
(say the offline tiny config and the real SAT-493M ViT-L) share a width but not a space.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import lancedb
import numpy as np
import pyarrow as pa
import shapely

from flywheel_core.embed.schema import EMBEDDINGS_TABLE, VECTOR_COLUMNS
from flywheel_core.train.splits import SPLITS

log = logging.getLogger(__name__)

DEFAULT_K = 10
LABEL_STATUSES = ("labeled", "unlabeled")
MAX_POINT_DISTANCE_M = 500.0
TRAINING_TABLE = "training_data"
HIT_COLUMNS = [
    "uid",
    "dataset",
    "cell",
    "date",
    "footprint",
    "center_lon",
    "center_lat",
    "model_id",
    "trained",
]
_M_PER_DEG = 111_320.0


class SearchError(ValueError):
    """A search that cannot be answered; the message says why and what to do."""


class EmptyTableError(SearchError):
    pass


class UnknownChipError(SearchError):
    pass


class PointNotCoveredError(SearchError):
    pass


class VectorWidthError(SearchError):
    pass


def _iso(value: str | date | None, name: str) -> str | None:
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, date) else str(value)
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise SearchError(f"{name} must be an ISO date (YYYY-MM-DD), got {text!r}") from exc
    return text


@dataclass(frozen=True)
class SearchFilters:
    """Metadata every hit must match; None means no constraint."""

    cell: str | None = None
    date: str | None = None
    dataset: str | None = None
    split: str | None = None  # train / val / test
    label_status: str | None = None  # labeled / unlabeled
    until: str | None = None  # hits dated on or before (ISO, inclusive)
    model_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "date", _iso(self.date, "date"))
        object.__setattr__(self, "until", _iso(self.until, "until"))
        if self.split is not None and self.split not in SPLITS:
            raise SearchError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.label_status is not None and self.label_status not in LABEL_STATUSES:
            raise SearchError(
                f"label status must be one of {', '.join(LABEL_STATUSES)}, "
                f"got {self.label_status!r}"
            )

    def column_clauses(self) -> list[str]:
        clauses = []
        for column in ("cell", "date", "dataset", "model_id"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = {sql_str(value)}")
        if self.until is not None:
            clauses.append(f"date <= {sql_str(self.until)}")
        return clauses


@dataclass(frozen=True)
class Query:
    """What was searched for; for chip and point queries, the chip that supplied the vector."""

    kind: str  # vector / chip / point
    vector: np.ndarray = field(repr=False)
    uid: str | None = None
    dataset: str | None = None
    cell: str | None = None
    date: str | None = None
    footprint: bytes | None = field(default=None, repr=False)
    center_lon: float | None = None
    center_lat: float | None = None
    model_id: str | None = None
    trained: bool | None = None
    point: tuple[float, float] | None = None
    point_distance_m: float | None = None  # 0 when the point lies in the chip's footprint

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "uid": self.uid,
            "dataset": self.dataset,
            "cell": self.cell,
            "date": self.date,
            "center_lon": self.center_lon,
            "center_lat": self.center_lat,
            "footprint_wkt": _wkt(self.footprint),
            "model_id": self.model_id,
            "trained": self.trained,
            "point": list(self.point) if self.point else None,
            "point_distance_m": self.point_distance_m,
        }


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
        return _wkt(self.footprint)

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


def _wkt(footprint: bytes | None) -> str | None:
    return shapely.from_wkb(footprint).wkt if footprint else None


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def and_clauses(clauses: Iterable[str | None]) -> str | None:
    kept = [c for c in clauses if c]
    if not kept:
        return None
    return " AND ".join(f"({c})" for c in kept)


def in_list(column: str, values: Iterable[str], negate: bool = False) -> str:
    items = ", ".join(sql_str(v) for v in sorted(values))
    return f"{column} {'NOT IN' if negate else 'IN'} ({items})"


def open_embeddings(db: lancedb.DBConnection, table: str = EMBEDDINGS_TABLE) -> Any:
    """The embedding table, or a clear error when there is nothing to search."""
    if table not in db.table_names():
        raise EmptyTableError(
            f"no {table!r} table in the LanceDB database: materialize dinov3_embeddings first"
        )
    tbl = db.open_table(table)
    if tbl.count_rows() == 0:
        raise EmptyTableError(f"the {table!r} table is empty: materialize dinov3_embeddings first")
    return tbl


def vector_width(tbl: Any, column: str = "vector") -> int:
    if column not in tbl.schema.names:
        raise SearchError(f"{column!r} is not a vector column of the table ({VECTOR_COLUMNS})")
    kind = tbl.schema.field(column).type
    size = getattr(kind, "list_size", None)
    if not size or size < 0:
        raise SearchError(f"column {column!r} is not a fixed-width vector column ({kind})")
    return int(size)


def as_query_vector(values: Any, width: int) -> np.ndarray:
    """A finite, non-zero float32 vector of the table's width (a (1, d) array is accepted)."""
    vec = np.asarray(values, dtype=np.float32)
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.ndim != 1:
        raise VectorWidthError(f"a query vector must be 1-D, got shape {vec.shape}")
    if vec.shape[0] != width:
        raise VectorWidthError(
            f"the query vector has {vec.shape[0]} values; the embeddings have {width}"
        )
    if not np.all(np.isfinite(vec)):
        raise SearchError("the query vector contains NaN or infinite values")
    norm = float(np.linalg.norm(vec))
    if norm == 0.0:
        raise SearchError("the query vector is all zeros: cosine distance is undefined")
    return vec / norm


def read_vector_file(path: str | Path) -> np.ndarray:
    """A query vector from a .npy file or a JSON list of numbers."""
    path = Path(path)
    if not path.exists():
        raise SearchError(f"no vector file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise SearchError(f"{path} is not a readable .npy array: {exc}") from exc
    if suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SearchError(f"{path} is not valid JSON: {exc}") from exc
        if isinstance(data, dict) and "vector" in data:
            data = data["vector"]
        if not isinstance(data, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in data
        ):
            raise SearchError(f"{path} must hold a JSON list of numbers")
        return np.asarray(data, dtype=np.float32)
    raise SearchError(f"vector files are .npy or .json lists, got {path.name}")


def _rows(tbl: Any, where: str | None, columns: list[str]) -> pa.Table:
    query = tbl.search().select(columns)
    if where:
        query = query.where(where)
    return query.limit(None).to_arrow()


def _query_from_row(row: dict[str, Any], kind: str, column: str, width: int, **extra: Any) -> Query:
    vec = row.get(column)
    if vec is None:
        raise SearchError(f"chip {row['uid']!r} has no {column!r} vector")
    try:
        vector = as_query_vector(vec, width)
    except SearchError as exc:
        raise SearchError(f"chip {row['uid']!r} cannot be a query: {exc}") from exc
    return Query(
        kind=kind,
        vector=vector,
        uid=row["uid"],
        dataset=row["dataset"],
        cell=row["cell"],
        date=row["date"],
        footprint=row["footprint"],
        center_lon=row["center_lon"],
        center_lat=row["center_lat"],
        model_id=row["model_id"],
        trained=row["trained"],
        **extra,
    )


def chip_query(tbl: Any, uid: str, column: str = "vector") -> Query:
    """The query made of a stored chip's own vector."""
    width = vector_width(tbl, column)
    rows = _rows(tbl, f"uid = {sql_str(uid)}", [*HIT_COLUMNS, column]).to_pylist()
    if not rows:
        tail = uid.rsplit("|", 1)[-1].replace("'", "''").replace("%", "")
        near = _rows(tbl, f"uid LIKE '%{tail}%'", ["uid"]).column("uid").to_pylist()[:5]
        hint = f"; similar uids: {', '.join(near)}" if near and tail else ""
        raise UnknownChipError(f"no embedding for chip {uid!r}{hint}")
    return _query_from_row(rows[0], "chip", column, width)


def _metres(lon0: float, lat0: float, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Equirectangular distance in metres: exact enough at chip-to-cell scales."""
    dx = (lon - lon0) * math.cos(math.radians(lat0)) * _M_PER_DEG
    dy = (lat - lat0) * _M_PER_DEG
    return np.hypot(dx, dy)


def point_query(
    tbl: Any,
    lon: float,
    lat: float,
    *,
    where: str | None = None,
    column: str = "vector",
    max_distance_m: float = MAX_POINT_DISTANCE_M,
) -> Query:
    """The chip (among rows matching `where`) whose footprint contains the point, else the chip
    with the nearest centre within `max_distance_m`.

    The same place has a chip per date: the latest date wins (give a date filter to pick one),
    then the nearest centre, then the uid, so the choice is deterministic.
    """
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise SearchError(f"({lon}, {lat}) is not a lon/lat point (lon first, then lat)")
    width = vector_width(tbl, column)
    # Chips are far smaller than this window, so any chip containing the point has its centre
    # inside it; Lance evaluates the range on the centre columns without touching vectors.
    radius = max(max_distance_m, 2_000.0)
    dlat = radius / _M_PER_DEG
    dlon = radius / (_M_PER_DEG * max(math.cos(math.radians(lat)), 1e-6))
    box = (
        f"center_lon >= {lon - dlon!r} AND center_lon <= {lon + dlon!r} AND "
        f"center_lat >= {lat - dlat!r} AND center_lat <= {lat + dlat!r}"
    )
    near = _rows(
        tbl, and_clauses([where, box]), ["uid", "date", "footprint", "center_lon", "center_lat"]
    )
    if near.num_rows == 0:
        raise PointNotCoveredError(
            f"no chip within {radius:.0f} m of ({lon}, {lat})"
            + (f" among rows matching {where}" if where else "")
        )
    geoms = shapely.from_wkb(near.column("footprint").to_numpy(zero_copy_only=False))
    inside = shapely.intersects_xy(geoms, lon, lat)
    dist = _metres(
        lon,
        lat,
        near.column("center_lon").to_numpy(),
        near.column("center_lat").to_numpy(),
    )
    uids = near.column("uid").to_pylist()
    dates = near.column("date").to_pylist()
    if inside.any():
        pool = np.flatnonzero(inside)
        gap = 0.0
    else:
        pool = np.flatnonzero(dist <= max_distance_m)
        if pool.size == 0:
            j = int(np.argmin(dist))
            raise PointNotCoveredError(
                f"({lon}, {lat}) lies in no chip footprint and the nearest chip centre "
                f"({uids[j]}) is {dist[j]:.0f} m away (limit {max_distance_m:.0f} m)"
            )
        gap = None
    best = min(pool.tolist(), key=lambda i: (_neg_date(dates[i]), dist[i], uids[i]))
    if gap is None:
        scale = np.array([math.cos(math.radians(lat)) * _M_PER_DEG, _M_PER_DEG])
        local = shapely.transform(geoms[best], lambda xy: (xy - [lon, lat]) * scale)
        gap = float(shapely.distance(local, shapely.Point(0.0, 0.0)))
    row = _rows(tbl, f"uid = {sql_str(uids[best])}", [*HIT_COLUMNS, column]).to_pylist()[0]
    return _query_from_row(
        row, "point", column, width, point=(float(lon), float(lat)), point_distance_m=gap
    )


def _neg_date(value: str) -> int:
    return -date.fromisoformat(value).toordinal()


def vector_query(tbl: Any, values: Any, column: str = "vector") -> Query:
    return Query(kind="vector", vector=as_query_vector(values, vector_width(tbl, column)))


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


def labeled_uids(con: duckdb.DuckDBPyConnection, chips: pa.Table) -> set[str]:
    """Uids of `chips` (uid, date, footprint) whose footprint meets an active label dated by then.

    Labels are read once for the chips' overall bounds; an STRtree pairs them with footprints.
    """
    if chips.num_rows == 0:
        return set()
    geoms = shapely.from_wkb(chips.column("footprint").to_numpy(zero_copy_only=False))
    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms)
    rows = con.execute(
        "SELECT prompt_geometry, install_date FROM labels WHERE status = 'active' "
        "AND bbox_xmax >= ? AND bbox_xmin <= ? AND bbox_ymax >= ? AND bbox_ymin <= ?",
        [xmin, xmax, ymin, ymax],
    ).fetchall()
    if not rows:
        return set()
    labels = shapely.from_wkb([r[0] for r in rows])
    installed = [r[1] for r in rows]
    tree = shapely.STRtree(labels)
    chip_idx, label_idx = tree.query(geoms, predicate="intersects")
    uids = chips.column("uid").to_pylist()
    days = [date.fromisoformat(d) for d in chips.column("date").to_pylist()]
    out = set()
    for c, lab in zip(chip_idx.tolist(), label_idx.tolist(), strict=True):
        when = installed[lab]
        if when is None or when <= days[c]:
            out.add(uids[c])
    return out


def _split_uids(db: lancedb.DBConnection, split: str, filters: SearchFilters) -> set[str]:
    if TRAINING_TABLE not in db.table_names():
        raise SearchError(
            f"a split filter needs the {TRAINING_TABLE!r} table: materialize training_data first"
        )
    clauses = [f"split = {sql_str(split)}"]
    for column in ("cell", "date"):
        if getattr(filters, column) is not None:
            clauses.append(f"{column} = {sql_str(getattr(filters, column))}")
    if filters.until is not None:
        clauses.append(f"date <= {sql_str(filters.until)}")
    rows = _rows(db.open_table(TRAINING_TABLE), and_clauses(clauses), ["uid"])
    return set(rows.column("uid").to_pylist())


def _restriction(
    db: lancedb.DBConnection,
    tbl: Any,
    base: str | None,
    filters: SearchFilters,
    lake: duckdb.DuckDBPyConnection | None,
) -> str | None:
    """The uid clause for the split and label-status filters; "FALSE"-like when none qualify."""
    if filters.split is None and filters.label_status is None:
        return None
    if filters.label_status is not None and lake is None:
        raise SearchError("a label-status filter needs a DuckLake connection (the labels)")
    columns = ["uid", "date", "footprint"] if filters.label_status else ["uid"]
    chips = _rows(tbl, base, columns)
    keep = np.ones(chips.num_rows, dtype=bool)
    uids = chips.column("uid").to_pylist()
    if filters.split is not None:
        in_split = _split_uids(db, filters.split, filters)
        keep &= np.fromiter((u in in_split for u in uids), dtype=bool, count=len(uids))
    if filters.label_status is not None:
        assert lake is not None
        labeled = labeled_uids(lake, chips)
        want = filters.label_status == "labeled"
        keep &= np.fromiter((((u in labeled) == want) for u in uids), bool, count=len(uids))
    allowed = [u for u, k in zip(uids, keep.tolist(), strict=True) if k]
    denied = [u for u, k in zip(uids, keep.tolist(), strict=True) if not k]
    log.debug("filters keep %d of %d candidate chips", len(allowed), len(uids))
    if not allowed:
        return "uid IS NULL"  # uid is never null: nothing qualifies
    if not denied:
        return None
    return (
        in_list("uid", allowed)
        if len(allowed) <= len(denied)
        else in_list("uid", denied, negate=True)
    )


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
) -> SearchResult:
    """The k chips nearest the query that match `filters`, nearest first.

    Give one of `vector`, `chip` (a uid), `point` (lon, lat) or a prepared `query`. `lake` is
    needed only for the label-status filter. The query chip itself is left out unless
    `include_query`. `where` is an extra SQL predicate on the embedding rows (a caller that runs
    many searches over one pool can resolve an expensive filter once and pass it here).
    """
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    filters = filters or SearchFilters()
    tbl = open_embeddings(db, table)
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
    prefilter = and_clauses([base, _restriction(db, tbl, base, filters, lake)])
    index = None if exact else _cosine_index(tbl, column)
    if filters.model_id is None:
        _warn_if_mixed(tbl)
    builder = (
        tbl.search(query.vector, vector_column_name=column)
        .distance_type("cosine")
        .select([*HIT_COLUMNS, "_distance"])
        .limit(k)
    )
    if prefilter:
        builder = builder.where(prefilter, prefilter=True)
    builder = (
        builder.refine_factor(refine_factor) if index is not None else builder.bypass_vector_index()
    )
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
    return SearchResult(
        query=query,
        hits=tuple(hits),
        k=k,
        column=column,
        exact=index is None,
        table_version=int(tbl.version),
        where=prefilter,
    )


def _warn_if_mixed(tbl: Any) -> None:
    models = set(_rows(tbl, None, ["model_id"]).column("model_id").to_pylist())
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
