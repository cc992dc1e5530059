"""Label reads and writes against the lake's `labels` and `label_imports` tables.

An import is one transaction, so it is one DuckLake snapshot: a training run that records the
snapshot id sees either all of an import or none of it. Label ids are content-derived (see
flywheel_core.labels.ids), so inserting only unseen ids makes re-imports harmless.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.labels.schema import (
    GEOMETRY_TYPES,
    LABEL_COLUMNS,
    LABELS_SCHEMA,
    SOURCE_KINDS,
    STATUSES,
)
from flywheel_core.lake.migrations import rollback_quietly

_ALLOWED = {"source_kind": SOURCE_KINDS, "geometry_type": GEOMETRY_TYPES, "status": STATUSES}


@dataclass(frozen=True)
class ImportResult:
    import_id: str
    n_read: int
    n_inserted: int
    n_duplicate: int
    n_rejected: int
    snapshot_id: int
    new_cells: tuple[str, ...]  # S2 cells covered by the labels this import added


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _conform(labels: pa.Table) -> pa.Table:
    """The batch in the table's column order, refusing values other code would misread."""
    missing = [c for c in LABEL_COLUMNS if c not in labels.column_names]
    if missing:
        raise ValueError(f"label batch lacks columns: {', '.join(missing)}")
    batch = labels.select(list(LABEL_COLUMNS)).cast(LABELS_SCHEMA)
    for column, allowed in _ALLOWED.items():
        values = set(batch.column(column).to_pylist())
        if not values <= set(allowed):
            bad = sorted(str(v) for v in values - set(allowed))
            raise ValueError(f"label batch has {column} {bad}; allowed: {', '.join(allowed)}")
    return batch


def _fill(labels: pa.Table, name: str, value: Any, type_: pa.DataType) -> pa.Table:
    column = labels.column(name)
    filled = pc.fill_null(column, pa.scalar(value, type_))
    return labels.set_column(labels.schema.get_field_index(name), name, filled)


def _first_per_id(labels: pa.Table) -> pa.Table:
    seen: set[str] = set()
    keep = []
    for i, label_id in enumerate(labels.column("label_id").to_pylist()):
        if label_id not in seen:
            seen.add(label_id)
            keep.append(i)
    return labels if len(keep) == labels.num_rows else labels.take(keep)


def _rejects_json(rejects: Any) -> str:
    if isinstance(rejects, str):
        return rejects
    rows = []
    for r in rejects or ():
        if isinstance(r, Mapping):
            rows.append({"row": r.get("row"), "reason": r.get("reason")})
        else:
            rows.append({"row": r.row, "reason": r.reason})
    return json.dumps(rows)


def _write_import_record(con: duckdb.DuckDBPyConnection, record: Mapping[str, Any]) -> None:
    con.execute(
        "INSERT INTO label_imports (import_id, file_name, file_sha256, source, doi, n_read, "
        "n_inserted, n_duplicate, n_rejected, rejects, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            record["import_id"],
            record.get("file_name"),
            record.get("file_sha256"),
            record.get("source"),
            record.get("doi"),
            record["n_read"],
            record["n_inserted"],
            record["n_duplicate"],
            record["n_rejected"],
            _rejects_json(record.get("rejects")),
            record["created_at"],
        ],
    )


def _existing_ids(con: duckdb.DuckDBPyConnection, ids: pa.Table, view: str) -> set[str]:
    con.register(view, ids)
    try:
        rows = con.execute(
            f"SELECT l.label_id FROM labels l SEMI JOIN {view} i ON l.label_id = i.label_id"
        ).fetchall()
    finally:
        con.unregister(view)
    return {r[0] for r in rows}


def _cells(labels: pa.Table) -> tuple[str, ...]:
    cells = pc.list_flatten(labels.column("s2_cells")).to_pylist() if labels.num_rows else []
    return tuple(sorted({c for c in cells if c}))


def insert_labels(
    con: duckdb.DuckDBPyConnection, labels: pa.Table, import_record: Mapping[str, Any]
) -> ImportResult:
    """Add the labels not yet in the lake and log the import, all in one transaction.

    `import_record` carries the label_imports fields known to the caller (file_name,
    file_sha256, source, doi, n_read, n_rejected, rejects, optionally import_id and created_at);
    counts of inserted and duplicate rows are filled in here.
    """
    record = dict(import_record)
    record["import_id"] = record.get("import_id") or str(uuid.uuid4())
    record["created_at"] = record.get("created_at") or _now()
    batch = _conform(labels)
    batch = _fill(batch, "import_id", record["import_id"], pa.string())
    batch = _fill(batch, "created_at", record["created_at"], pa.timestamp("us"))
    unique = _first_per_id(batch)
    token = uuid.uuid4().hex
    con.execute("BEGIN TRANSACTION")
    try:
        existing = _existing_ids(con, unique.select(["label_id"]), f"_flywheel_ids_{token}")
        if existing:
            is_new = [i not in existing for i in unique.column("label_id").to_pylist()]
            new = unique.filter(pa.array(is_new, pa.bool_()))
        else:
            new = unique
        if new.num_rows:
            view = f"_flywheel_labels_{token}"
            con.register(view, new)
            try:
                con.execute(f"INSERT INTO labels BY NAME SELECT * FROM {view}")
            finally:
                con.unregister(view)
        record["n_read"] = int(record.get("n_read", batch.num_rows))
        record["n_inserted"] = new.num_rows
        record["n_duplicate"] = batch.num_rows - new.num_rows
        record["n_rejected"] = int(record.get("n_rejected", 0))
        _write_import_record(con, record)
        con.execute("COMMIT")
    except BaseException:
        rollback_quietly(con)
        raise
    return ImportResult(
        import_id=record["import_id"],
        n_read=record["n_read"],
        n_inserted=record["n_inserted"],
        n_duplicate=record["n_duplicate"],
        n_rejected=record["n_rejected"],
        snapshot_id=current_snapshot_id(con),
        new_cells=_cells(new),
    )


def labels_for_cell(con: duckdb.DuckDBPyConnection, cell_token: str, as_of: date) -> pa.Table:
    """Active labels installed by `as_of` (or undated) whose prompt footprint meets the cell.

    The bbox columns bound the prompt footprint, so the SQL prefilter never drops a label whose
    buffered point or polygon reaches into the cell; shapely then does the exact test.
    """
    polygon = cell_polygon(cell_token)  # parses the token, any level
    xmin, ymin, xmax, ymax = polygon.bounds
    if isinstance(as_of, datetime):
        as_of = as_of.date()
    table = con.execute(
        f"SELECT {', '.join(LABEL_COLUMNS)} FROM labels "
        "WHERE status = 'active' AND (install_date IS NULL OR install_date <= ?) "
        "AND bbox_xmax >= ? AND bbox_xmin <= ? AND bbox_ymax >= ? AND bbox_ymin <= ? "
        "ORDER BY label_id",
        [as_of, xmin, xmax, ymin, ymax],
    ).to_arrow_table()
    if table.num_rows:
        footprints = shapely.from_wkb(
            table.column("prompt_geometry").to_numpy(zero_copy_only=False)
        )
        mask = shapely.intersects(footprints, polygon)
        table = table.filter(pa.array(np.asarray(mask, dtype=bool)))
    return table.cast(LABELS_SCHEMA)


def current_snapshot_id(con: duckdb.DuckDBPyConnection, alias: str | None = None) -> int:
    """Latest DuckLake snapshot of the lake in use (or of `alias`): what a training run records."""
    if alias is None:
        row = con.execute("SELECT current_database()").fetchone()
        alias = str(row[0]) if row else "lake"
    row = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots(?)", [alias]).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(f"{alias!r} has no DuckLake snapshots; is it a DuckLake catalog?")
    return int(row[0])


def label_counts(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """Label counts as {source: {status: n}}."""
    rows = con.execute(
        "SELECT source, status, count(*) FROM labels GROUP BY ALL ORDER BY source, status"
    ).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for source, status, n in rows:
        counts.setdefault(source, {})[status] = int(n)
    return counts
