"""The `raster_datasets` table in DuckLake: one row per dataset, written once per attempt.

Lifecycle. A registration attempt writes its row exactly once, at its end, in one transaction:
`ready` when every check passed, `failed` (with the error and the checks) when a step after the
input checks went wrong or a check failed. There is no in-between status, so a crash mid-way
leaves no row claiming anything, and input errors (not a raster, no CRS, truncated) are raised
before this module is called at all: no row. Allowed transitions:

    (none)  -> ready | failed
    failed  -> ready | failed      (a retry replaces the failed row)
    ready   -> ready | failed      only when replacing is asked for (`--force`, or the flywheel
                                   re-chipping a partition); otherwise ready is final

The id is derived from the file's SHA-256 and the tiling settings, so registering an unchanged
file again finds its ready row and writes nothing (no new DuckLake snapshot).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

import duckdb

from flywheel_core.errors import FlywheelError
from flywheel_core.lake.raster_datasets import replace_row, select_rows

READY, FAILED = "ready", "failed"
STATUSES = (READY, FAILED)
KIND_FILE = "raster"  # a file or URI registered by a user
KIND_VHR_SCENE = "vhr_scene"  # a flywheel VHR scene chipped for one (cell, date)


class TransitionError(FlywheelError, RuntimeError):
    """A write that would move a dataset along a transition the lifecycle does not allow."""


def make_dataset_id(checksum: str, params: dict[str, Any]) -> str:
    """`rd-` + 16 hex digits of SHA-256 over the file checksum and the tiling settings."""
    payload = json.dumps({"sha256": checksum, **params}, sort_keys=True, default=str)
    return "rd-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class RasterDataset:
    dataset_id: str
    name: str
    kind: str
    uri: str
    checksum_sha256: str
    status: str
    cog_uri: str | None = None
    converted: bool | None = None
    crs: str | None = None
    band_count: int | None = None
    band_names: list[str] = field(default_factory=list)
    dtype: str | None = None
    nodata: float | None = None
    res_x: float | None = None
    res_y: float | None = None
    gsd_m: float | None = None
    width: int | None = None
    height: int | None = None
    footprint: bytes | None = None
    bbox_xmin: float | None = None
    bbox_ymin: float | None = None
    bbox_xmax: float | None = None
    bbox_ymax: float | None = None
    acquired: datetime | None = None
    tile_date: date | None = None
    size_bytes: int | None = None
    tile_size: int | None = None
    tile_overlap: int | None = None
    tile_count: int | None = None
    tile_index_uri: str | None = None
    lance_table: str | None = None
    lance_version: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def ready(self) -> bool:
        return self.status == READY


COLUMNS = tuple(f.name for f in fields(RasterDataset))
_JSON = ("params", "checks")


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _to_sql(ds: RasterDataset) -> list[Any]:
    row = asdict(ds)
    for name in _JSON:
        row[name] = json.dumps(row[name], sort_keys=True, default=str)
    for name in ("acquired", "created_at", "updated_at"):
        row[name] = _naive_utc(row[name])
    return [row[c] for c in COLUMNS]


def _from_sql(names: list[str], values: tuple) -> RasterDataset:
    row = dict(zip(names, values, strict=True))
    for name in _JSON:
        row[name] = json.loads(row[name] or "{}")
    row["band_names"] = list(row["band_names"] or [])
    for name in ("acquired", "created_at", "updated_at"):
        if row[name] is not None:
            row[name] = row[name].replace(tzinfo=UTC)
    return RasterDataset(**{c: row[c] for c in COLUMNS})


def _rows(con: duckdb.DuckDBPyConnection, **filters: str | None) -> list[RasterDataset]:
    names, rows = select_rows(con, COLUMNS, **filters)
    return [_from_sql(names, r) for r in rows]


def get_dataset(con: duckdb.DuckDBPyConnection, dataset_id: str) -> RasterDataset | None:
    found = _rows(con, dataset_id=dataset_id)
    return found[0] if found else None


def find_datasets(con: duckdb.DuckDBPyConnection, id_or_prefix: str) -> list[RasterDataset]:
    """Datasets whose id starts with the given text (a full id matches exactly one)."""
    return _rows(con, prefix=id_or_prefix)


def list_datasets(
    con: duckdb.DuckDBPyConnection, status: str | None = None, kind: str | None = None
) -> list[RasterDataset]:
    return _rows(con, status=status, kind=kind)


def check_transition(current: str | None, new: str, replace_ready: bool) -> None:
    if new not in STATUSES:
        raise TransitionError(f"status must be one of {STATUSES}, got {new!r}")
    if current == READY and not replace_ready:
        raise TransitionError(
            "the dataset is already ready; re-registering an unchanged file changes nothing "
            "(force a rebuild to replace it)"
        )


def record_dataset(
    con: duckdb.DuckDBPyConnection, ds: RasterDataset, *, replace_ready: bool = False
) -> RasterDataset:
    """Write the attempt's one row (replacing a failed one) in one transaction."""
    now = datetime.now(UTC)

    def build(current: str | None, created: datetime | None) -> list[Any]:
        check_transition(current, ds.status, replace_ready)
        ds.created_at = created.replace(tzinfo=UTC) if created else now
        ds.updated_at = now
        return _to_sql(ds)

    replace_row(con, ds.dataset_id, COLUMNS, build)
    return ds
