"""Label reads and writes against the lake's `labels` and `label_imports` tables.

An import is one transaction, so it is one DuckLake snapshot: a training run that records the
snapshot id sees either all of an import or none of it. Inside it, in order: the file's SHA-256
is looked up in label_imports (a match, under any source, ends the import as a no-op naming the
earlier one, unless forced), the claim row is rewritten (so concurrent imports on optimistic
catalogs conflict; see label_imports), the labels whose ids are new go in as one bulk Arrow
insert, and the label_imports row is written. Label ids are content-derived (see
flywheel_core.labels.ids), so inserting only unseen ids makes forced re-imports harmless. A
failure at any point rolls the whole transaction back.
"""

from __future__ import annotations

import json
import logging
import time
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

from flywheel_core.faults import fault_point
from flywheel_core.geo.antimeridian import stored_bounds
from flywheel_core.geo.s2 import cell_footprint
from flywheel_core.labels.schema import (
    GEOMETRY_TYPES,
    LABEL_COLUMNS,
    LABELS_SCHEMA,
    SOURCE_KINDS,
    STATUSES,
)
from flywheel_core.lake.label_imports import (
    PriorImport,
    claim_import,
    find_import,
    is_commit_conflict,
)
from flywheel_core.lake.spatial_filters import bbox_meets_sql
from flywheel_core.lake.transaction import transaction

log = logging.getLogger(__name__)

_COMMIT_ATTEMPTS = 8
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
    # The earlier import of the same file bytes when this one was skipped (nothing written).
    duplicate_of: PriorImport | None = None

    @property
    def skipped(self) -> bool:
        return self.duplicate_of is not None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _conform(labels: pa.Table) -> pa.Table:
    """The batch in the table's column order, refusing values other code would misread."""
    missing = [c for c in LABEL_COLUMNS if c not in labels.column_names]
    if missing:
        raise ValueError(f"label batch lacks columns: {', '.join(missing)}")
    batch = labels.select(list(LABEL_COLUMNS)).cast(LABELS_SCHEMA)
    for column, allowed in _ALLOWED.items():
        values = set(pc.unique(batch.column(column)).to_pylist())
        if not values <= set(allowed):
            bad = sorted(str(v) for v in values - set(allowed))
            raise ValueError(f"label batch has {column} {bad}; allowed: {', '.join(allowed)}")
    return batch


def _fill(labels: pa.Table, name: str, value: Any, type_: pa.DataType) -> pa.Table:
    column = labels.column(name)
    filled = pc.fill_null(column, pa.scalar(value, type_))
    return labels.set_column(labels.schema.get_field_index(name), name, filled)


def _first_per_id(labels: pa.Table) -> pa.Table:
    if pc.count_distinct(labels.column("label_id")).as_py() == labels.num_rows:
        return labels
    ids = np.asarray(labels.column("label_id").to_pylist(), dtype=object)
    _, first = np.unique(ids, return_index=True)
    if len(first) == labels.num_rows:
        return labels
    return labels.take(pa.array(np.sort(first)))


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


def _new_rows(con: duckdb.DuckDBPyConnection, unique: pa.Table) -> pa.Table:
    """The rows whose label_id the lake does not hold yet (one SEMI JOIN, no per-row lookups)."""
    existing = _existing_ids(con, unique.select(["label_id"]), f"_flywheel_ids_{uuid.uuid4().hex}")
    if not existing:
        return unique
    is_new = [i not in existing for i in unique.column("label_id").to_pylist()]
    return unique.filter(pa.array(is_new, pa.bool_()))


def _append(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """Bulk-insert an Arrow table: DuckDB scans it as a relation, one statement for all rows."""
    if not rows.num_rows:
        return
    view = f"_flywheel_labels_{uuid.uuid4().hex}"
    con.register(view, rows)
    try:
        con.execute(f"INSERT INTO labels BY NAME SELECT * FROM {view}")
    finally:
        con.unregister(view)


def _skipped(
    con: duckdb.DuckDBPyConnection, prior: PriorImport, record: dict, n: int
) -> ImportResult:
    return ImportResult(
        import_id=prior.import_id,
        n_read=int(record.get("n_read", n)),
        n_inserted=0,
        n_duplicate=n,
        n_rejected=int(record.get("n_rejected", 0)),
        snapshot_id=current_snapshot_id(con),
        new_cells=(),
        duplicate_of=prior,
    )


def _insert_once(
    con: duckdb.DuckDBPyConnection, batch: pa.Table, unique: pa.Table, record: dict, force: bool
) -> ImportResult:
    """One attempt: check the file hash, claim, insert the new ids, log; one transaction."""
    sha = record.get("file_sha256")
    with transaction(con):
        prior = find_import(con, sha) if sha and not force else None
        if prior is not None:
            return _skipped(con, prior, record, batch.num_rows)  # read-only: no snapshot
        if sha:
            claim_import(con, sha, record["import_id"], record["created_at"])
        new = _new_rows(con, unique)
        _append(con, new)
        fault_point("labels.import.appended")
        record["n_read"] = int(record.get("n_read", batch.num_rows))
        record["n_inserted"] = new.num_rows
        record["n_duplicate"] = batch.num_rows - new.num_rows
        record["n_rejected"] = int(record.get("n_rejected", 0))
        _write_import_record(con, record)
        fault_point("labels.import.before_commit")
    fault_point("labels.import.after_commit")
    return ImportResult(
        import_id=record["import_id"],
        n_read=record["n_read"],
        n_inserted=record["n_inserted"],
        n_duplicate=record["n_duplicate"],
        n_rejected=record["n_rejected"],
        snapshot_id=current_snapshot_id(con),
        new_cells=_cells(new),
    )


def insert_labels(
    con: duckdb.DuckDBPyConnection,
    labels: pa.Table,
    import_record: Mapping[str, Any],
    *,
    force: bool = False,
) -> ImportResult:
    """Add the labels not yet in the lake and log the import, all in one transaction.

    `import_record` carries the label_imports fields known to the caller (file_name,
    file_sha256, source, doi, n_read, n_rejected, rejects, optionally import_id and created_at);
    counts of inserted and duplicate rows are filled in here.

    With a file_sha256 that an earlier import already recorded (under any source), nothing is
    written and the result's `duplicate_of` names that import, unless `force`. A COMMIT refused
    because a concurrent import committed first (optimistic catalogs; see label_imports) is
    retried from the start, so the retry sees that import. A failure leaves the lake as it was.
    """
    record = dict(import_record)
    record["import_id"] = record.get("import_id") or str(uuid.uuid4())
    record["created_at"] = record.get("created_at") or _now()
    batch = _conform(labels)
    batch = _fill(batch, "import_id", record["import_id"], pa.string())
    batch = _fill(batch, "created_at", record["created_at"], pa.timestamp("us"))
    unique = _first_per_id(batch)
    for attempt in range(1, _COMMIT_ATTEMPTS + 1):
        try:
            return _insert_once(con, batch, unique, record, force)
        except duckdb.Error as exc:
            if not is_commit_conflict(exc) or attempt == _COMMIT_ATTEMPTS:
                raise
            log.info(
                "label import conflicted with a concurrent one (attempt %d); retrying", attempt
            )
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def labels_for_cell(con: duckdb.DuckDBPyConnection, cell_token: str, as_of: date) -> pa.Table:
    """Active labels installed by `as_of` (or undated) whose prompt footprint meets the cell.

    The bbox columns bound the prompt footprint, so the SQL prefilter never drops a label whose
    buffered point or polygon reaches into the cell; shapely then does the exact test. Both the
    cell and a stored bbox may cross the antimeridian (bbox_xmin > bbox_xmax there; see
    flywheel_core.geo.antimeridian): the prefilter matches them the short way round, so a label
    at lon 179.9..-179.9 meets cells on the date line only, not every cell on its latitude.
    """
    footprint = cell_footprint(cell_token)  # parses the token, any level
    if isinstance(as_of, datetime):
        as_of = as_of.date()
    table = con.execute(
        f"SELECT {', '.join(LABEL_COLUMNS)} FROM labels "
        "WHERE status = 'active' AND (install_date IS NULL OR install_date <= ?) "
        f"AND {bbox_meets_sql(stored_bounds(np.array([footprint], dtype=object))[0])} "
        "ORDER BY label_id",
        [as_of],
    ).to_arrow_table()
    if table.num_rows:
        footprints = shapely.from_wkb(
            table.column("prompt_geometry").to_numpy(zero_copy_only=False)
        )
        mask = shapely.intersects(footprints, footprint)
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
