"""What a search asks: a stored chip, the chip at a point, or a vector; and the errors it gives.

A chip or point query borrows the stored chip's own vector and remembers the chip (its uid,
footprint, dataset and embedding model), so the search can leave it out of its hits and keep to
its model. A point picks the chip whose footprint contains it, else the chip whose centre is
nearest within `max_distance_m`; the same place has a chip per date, and the latest date wins.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import shapely

from flywheel_core.embed.schema import EMBEDDINGS_TABLE, VECTOR_COLUMNS
from flywheel_core.errors import FlywheelError
from flywheel_core.lake.quote import sql_in, sql_range, string_literal
from flywheel_core.lake.spatial_filters import lon_in_range_sql, padded_box

MAX_POINT_DISTANCE_M = 500.0


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


class SearchError(FlywheelError, ValueError):
    """A search that cannot be answered; the message says why and what to do."""


class EmptyTableError(SearchError):
    pass


class UnknownChipError(SearchError):
    pass


class PointNotCoveredError(SearchError):
    pass


class VectorWidthError(SearchError):
    pass


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
            "footprint_wkt": wkb_to_wkt(self.footprint),
            "model_id": self.model_id,
            "trained": self.trained,
            "point": list(self.point) if self.point else None,
            "point_distance_m": self.point_distance_m,
        }


def wkb_to_wkt(footprint: bytes | None) -> str | None:
    return shapely.from_wkb(footprint).wkt if footprint else None


def sql_str(value: str) -> str:
    """`value` as a quoted SQL string (flywheel_core.lake.quote, the one quoting helper)."""
    return string_literal(str(value))


def and_clauses(clauses: Iterable[str | None]) -> str | None:
    kept = [c for c in clauses if c]
    if not kept:
        return None
    return " AND ".join(f"({c})" for c in kept)


def in_list(column: str, values: Iterable[str], negate: bool = False) -> str:
    clause = sql_in(column, sorted(values))  # "FALSE" for no values
    if not negate:
        return clause
    return "TRUE" if clause == "FALSE" else clause.replace(" IN (", " NOT IN (", 1)


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


def read_rows(tbl: Any, where: str | None, columns: list[str]) -> pa.Table:
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
    rows = read_rows(tbl, f"uid = {sql_str(uid)}", [*HIT_COLUMNS, column]).to_pylist()
    if not rows:
        tail = uid.rsplit("|", 1)[-1].replace("%", "").replace("_", "")
        like = f"uid LIKE {string_literal(f'%{tail}%')}"
        near = read_rows(tbl, like, ["uid"]).column("uid").to_pylist()[:5]
        hint = f"; similar uids: {', '.join(near)}" if near and tail else ""
        raise UnknownChipError(f"no embedding for chip {uid!r}{hint}")
    return _query_from_row(rows[0], "chip", column, width)


def _metres(lon0: float, lat0: float, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Equirectangular distance in metres: exact enough at chip-to-cell scales."""
    dlon = (lon - lon0 + 180.0) % 360.0 - 180.0  # the short way, across ±180 if need be
    dx = dlon * math.cos(math.radians(lat0)) * _M_PER_DEG
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
    west, south, east, north = padded_box((lon, lat, lon, lat), dlon, dlat)  # date line aware
    box = [lon_in_range_sql("center_lon", west, east), sql_range("center_lat", south, north)]
    near = read_rows(
        tbl, and_clauses([where, *box]), ["uid", "date", "footprint", "center_lon", "center_lat"]
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
        local = shapely.transform(geoms[best], lambda xy: _offsets(xy, lon, lat) * scale)
        gap = float(shapely.distance(local, shapely.Point(0.0, 0.0)))
    row = read_rows(tbl, f"uid = {sql_str(uids[best])}", [*HIT_COLUMNS, column]).to_pylist()[0]
    return _query_from_row(
        row, "point", column, width, point=(float(lon), float(lat)), point_distance_m=gap
    )


def _offsets(xy: np.ndarray, lon: float, lat: float) -> np.ndarray:
    """Degrees from (lon, lat), longitudes the short way round (across ±180 if need be)."""
    out = xy - [lon, lat]
    out[:, 0] = (out[:, 0] + 180.0) % 360.0 - 180.0
    return out


def _neg_date(value: str) -> int:
    return -date.fromisoformat(value).toordinal()


def vector_query(tbl: Any, values: Any, column: str = "vector") -> Query:
    return Query(kind="vector", vector=as_query_vector(values, vector_width(tbl, column)))
