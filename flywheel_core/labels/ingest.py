"""Import a label file into the lake: read, then insert in one transaction with its provenance.

Shared by `flywheel labels import` and the label-import asset so both record the same
label_imports row (file hash, counts, rejects) for the same file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from flywheel_core.labels.importer import LabelBatch, read_label_file, source_name
from flywheel_core.lake.labels import ImportResult, insert_labels

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


def import_label_file(
    con: duckdb.DuckDBPyConnection,
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
) -> tuple[LabelBatch, ImportResult]:
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
    return batch, insert_labels(con, batch.table, record)
