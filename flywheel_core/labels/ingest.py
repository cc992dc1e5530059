"""Import a label file into the lake: parse with the lake closed, then one short write.

Shared by `flywheel labels import`, the demo and the tests, so all record the same label_imports
row (file hash, counts, rejects) for the same file. The steps, in order:

1. hash the file (SHA-256; for a bare .shp, of its sidecar files too);
2. read, reproject, validate and index every feature (`read_label_file`: vectorized geometry
   checks, areas, S2/H3 cells, coverings, bboxes, antimeridian splits). The lake is not open: a
   50,000-polygon file parses in seconds while readers and runs use the lake freely;
3. open the lake and, in ONE transaction, check the file hash against earlier imports (a match
   under any source name makes the import a no-op that names the earlier import, unless
   `force`), claim the import, insert the labels whose ids are new (a bulk Arrow insert) and log
   the label_imports row; then close the lake.

What a failure leaves behind: a bad file or a failure in steps 1-2 leaves the lake untouched (it
was never opened); a failure or a kill in step 3 rolls the transaction back, so the lake holds
all of the import (labels and its label_imports row, one DuckLake snapshot) or none of it, and
running the same import again is safe.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from flywheel_core.faults import fault_point
from flywheel_core.labels.importer import LabelBatch, read_label_file, source_name
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import ImportResult, insert_labels

__all__ = [
    "LabelImport",
    "PreparedImport",
    "file_sha256",
    "import_label_file",
    "import_label_file_into",
    "prepare_label_import",
    "write_label_import",
]

log = logging.getLogger(__name__)

_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def file_sha256(path: Path) -> str:
    """Digest of the file; for a bare .shp, of all its sidecar files (they hold the attributes)."""
    digest = hashlib.sha256()
    parts = [path]
    if path.suffix.lower() == ".shp":
        parts = [p for ext in _SHAPEFILE_PARTS if (p := path.with_suffix(ext)).exists()]
    for part in parts:
        with part.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class PreparedImport:
    """A parsed, validated and indexed file, ready for its one write transaction."""

    batch: LabelBatch
    record: dict[str, Any] = field(default_factory=dict)  # the label_imports fields
    parse_s: float = 0.0


@dataclass(frozen=True)
class LabelImport:
    batch: LabelBatch
    result: ImportResult
    parse_s: float  # hashing and parsing, lake closed
    lake_s: float  # lake open: attach, migrations check, the write transaction, close


def prepare_label_import(
    path: str | Path,
    *,
    source: str | None = None,
    doi: str | None = None,
    id_column: str | None = None,
    date_column: str | None = None,
    layer: str | None = None,
    point_buffer_m: float = 5.0,
    s2_level: int,
    h3_resolution: int,
) -> PreparedImport:
    """Steps 1-2: hash and parse the file; touches no lake. Raises LabelFileError on a bad file."""
    started = time.perf_counter()
    path = Path(path)
    batch = read_label_file(
        path,
        source=source,
        doi=doi,
        id_column=id_column,
        date_column=date_column,
        layer=layer,
        point_buffer_m=point_buffer_m,
        s2_level=s2_level,
        h3_resolution=h3_resolution,
    )
    record = {
        "file_name": path.name,
        "file_sha256": file_sha256(path),
        "source": source or source_name(path),
        "doi": doi,
        "n_read": batch.n_read,
        "n_rejected": len(batch.rejects),
        "rejects": batch.rejects,
    }
    return PreparedImport(batch, record, time.perf_counter() - started)


def write_label_import(
    con: duckdb.DuckDBPyConnection, prepared: PreparedImport, *, force: bool = False
) -> ImportResult:
    """Step 3 on an open lake: the hash check and the write, one transaction."""
    return insert_labels(con, prepared.batch.table, prepared.record, force=force)


def import_label_file_into(
    config: LakeConfig,
    path: str | Path,
    *,
    force: bool = False,
    lock_timeout_s: float = 60.0,
    **options: Any,
) -> LabelImport:
    """Parse `path` with the lake closed, then open the lake only for the write.

    `options` are those of `prepare_label_import` (s2_level and h3_resolution required). This is
    what the CLI runs: a DuckDB-file catalog's lock is held for the write alone.
    """
    prepared = prepare_label_import(path, **options)
    fault_point("labels.import.parsed")
    opened = time.perf_counter()
    with lake_connection(config, lock_timeout_s=lock_timeout_s) as con:
        result = write_label_import(con, prepared, force=force)
    lake_s = time.perf_counter() - opened
    log.info(
        "%s: parsed in %.2f s with the lake closed; lake held %.2f s",
        Path(path).name,
        prepared.parse_s,
        lake_s,
    )
    return LabelImport(prepared.batch, result, prepared.parse_s, lake_s)


def import_label_file(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    *,
    force: bool = False,
    **options: Any,
) -> tuple[LabelBatch, ImportResult]:
    """Parse and write on a lake the caller already holds open (tests, the demo).

    The parse runs while `con` is open, so a DuckDB-file catalog stays locked meanwhile; code
    that opens the lake just for the import should use `import_label_file_into`.
    """
    prepared = prepare_label_import(path, **options)
    return prepared.batch, write_label_import(con, prepared, force=force)
