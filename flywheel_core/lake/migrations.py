"""Versioned schema of the lake, applied in order, each version in its own transaction.

The applied versions are recorded in the lake itself (`flywheel_migrations`), so any process that
opens the lake brings it to the same schema, and re-running is a no-op. Migrations are frozen once
released: change the schema by appending a new version, never by editing an old one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from flywheel_core.lake.transaction import rollback_quietly, transaction

log = logging.getLogger(__name__)

# Re-exported: older callers import rollback_quietly from here.
__all__ = ["MIGRATIONS", "Migration", "applied_versions", "migrate", "rollback_quietly"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_LABELS = """
CREATE TABLE labels (
    label_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    source_kind VARCHAR NOT NULL,
    source_id VARCHAR,
    doi VARCHAR,
    geometry BLOB NOT NULL,
    geometry_type VARCHAR NOT NULL,
    prompt_geometry BLOB NOT NULL,
    area_m2 DOUBLE,
    reported_area_m2 DOUBLE,
    centroid_lon DOUBLE,
    centroid_lat DOUBLE,
    bbox_xmin DOUBLE,
    bbox_ymin DOUBLE,
    bbox_xmax DOUBLE,
    bbox_ymax DOUBLE,
    s2_level INTEGER,
    s2_cell VARCHAR,
    s2_cells VARCHAR[],
    h3_cell VARCHAR,
    install_date DATE,
    confidence DOUBLE,
    round INTEGER,
    model_id VARCHAR,
    status VARCHAR NOT NULL,
    import_id VARCHAR,
    created_at TIMESTAMP,
    properties VARCHAR
)
"""

_LABEL_IMPORTS = """
CREATE TABLE label_imports (
    import_id VARCHAR NOT NULL,
    file_name VARCHAR,
    file_sha256 VARCHAR,
    source VARCHAR,
    doi VARCHAR,
    n_read INTEGER,
    n_inserted INTEGER,
    n_duplicate INTEGER,
    n_rejected INTEGER,
    rejects VARCHAR,
    created_at TIMESTAMP
)
"""

_MODELS = """
CREATE TABLE models (
    model_id VARCHAR NOT NULL,
    name VARCHAR,
    round INTEGER,
    architecture VARCHAR,
    parent_model_id VARCHAR,
    checkpoint_uri VARCHAR,
    training_snapshot_id BIGINT,
    training_label_count BIGINT,
    params VARCHAR,
    metrics VARCHAR,
    status VARCHAR,
    created_at TIMESTAMP
)
"""

_PREDICTIONS = """
CREATE TABLE predictions (
    prediction_id VARCHAR NOT NULL,
    model_id VARCHAR NOT NULL,
    round INTEGER,
    s2_cell VARCHAR,
    partition_date DATE,
    chip_id VARCHAR,
    geometry BLOB,
    score DOUBLE,
    area_m2 DOUBLE,
    centroid_lon DOUBLE,
    centroid_lat DOUBLE,
    bbox_xmin DOUBLE,
    bbox_ymin DOUBLE,
    bbox_xmax DOUBLE,
    bbox_ymax DOUBLE,
    h3_cell VARCHAR,
    label_id VARCHAR,
    metrics VARCHAR,
    created_at TIMESTAMP
)
"""

_BACKFILL_LOG = """
CREATE TABLE backfill_log (
    log_id VARCHAR NOT NULL,
    asset VARCHAR,
    s2_cell VARCHAR,
    partition_date DATE,
    round INTEGER,
    model_id VARCHAR,
    decision VARCHAR,
    reason VARCHAR,
    metrics VARCHAR,
    run_id VARCHAR,
    snapshot_id BIGINT,
    created_at TIMESTAMP
)
"""

# One row per raster dataset (a registered file, or a flywheel VHR scene chipped for one cell and
# date). Written once per registration attempt, at its end: status 'ready' (every check passed)
# or 'failed' (with `error` and the `checks`), never an in-between state.
_RASTER_DATASETS = """
CREATE TABLE raster_datasets (
    dataset_id VARCHAR NOT NULL,
    name VARCHAR,
    kind VARCHAR NOT NULL,
    uri VARCHAR NOT NULL,
    cog_uri VARCHAR,
    converted BOOLEAN,
    crs VARCHAR,
    band_count INTEGER,
    band_names VARCHAR[],
    dtype VARCHAR,
    nodata DOUBLE,
    res_x DOUBLE,
    res_y DOUBLE,
    gsd_m DOUBLE,
    width INTEGER,
    height INTEGER,
    footprint BLOB,
    bbox_xmin DOUBLE,
    bbox_ymin DOUBLE,
    bbox_xmax DOUBLE,
    bbox_ymax DOUBLE,
    acquired TIMESTAMP,
    tile_date DATE,
    checksum_sha256 VARCHAR NOT NULL,
    size_bytes BIGINT,
    tile_size INTEGER,
    tile_overlap INTEGER,
    tile_count INTEGER,
    tile_index_uri VARCHAR,
    lance_table VARCHAR,
    lance_version BIGINT,
    params VARCHAR,
    status VARCHAR NOT NULL,
    checks VARCHAR,
    error VARCHAR,
    created_at TIMESTAMP,
    updated_at TIMESTAMP
)
"""

_HARD_NEGATIVES = """
CREATE TABLE hard_negatives (
    candidate_id VARCHAR NOT NULL,
    s2_cell VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    round INTEGER NOT NULL,
    model_id VARCHAR,
    prediction_id VARCHAR,
    reason VARCHAR NOT NULL,
    query_uid VARCHAR NOT NULL,
    neighbour_uid VARCHAR NOT NULL,
    neighbour_dataset VARCHAR,
    neighbour_cell VARCHAR,
    neighbour_date DATE,
    distance DOUBLE,
    rank INTEGER,
    embedding_model_id VARCHAR,
    trained BOOLEAN,
    status VARCHAR NOT NULL,
    run_id VARCHAR,
    created_at TIMESTAMP
)
"""

# One row, rewritten by every label import (flywheel_core.lake.label_imports): two imports
# committing at once on an optimistic catalog both delete it, so DuckLake refuses one COMMIT.
_LABEL_IMPORT_CLAIMS = """
CREATE TABLE label_import_claims (
    claim_id VARCHAR NOT NULL,
    file_sha256 VARCHAR,
    import_id VARCHAR,
    claimed_at TIMESTAMP
)
"""
_FIRST_CLAIM = "INSERT INTO label_import_claims (claim_id) VALUES ('initial')"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "labels and label imports", (_LABELS, _LABEL_IMPORTS)),
    Migration(2, "models, predictions and backfill log", (_MODELS, _PREDICTIONS, _BACKFILL_LOG)),
    Migration(3, "raster datasets", (_RASTER_DATASETS,)),
    Migration(4, "hard negatives", (_HARD_NEGATIVES,)),
    Migration(5, "label import claim row", (_LABEL_IMPORT_CLAIMS, _FIRST_CLAIM)),
)

_LEDGER = (
    "CREATE TABLE IF NOT EXISTS flywheel_migrations "
    "(version INTEGER NOT NULL, name VARCHAR, applied_at TIMESTAMP)"
)


def applied_versions(con: duckdb.DuckDBPyConnection) -> set[int]:
    rows = con.execute("SELECT version FROM flywheel_migrations").fetchall()
    return {int(r[0]) for r in rows}


def _apply(con: duckdb.DuckDBPyConnection, migration: Migration) -> bool:
    """Apply one migration; False if another connection applied it first."""
    try:
        with transaction(con):
            if migration.version in applied_versions(con):
                return False
            for statement in migration.statements:
                con.execute(statement)
            con.execute(
                "INSERT INTO flywheel_migrations VALUES (?, ?, ?)",
                [migration.version, migration.name, datetime.now(UTC).replace(tzinfo=None)],
            )
    except duckdb.Error:
        # A concurrent writer may have won the race; only then is the failure harmless.
        if migration.version in applied_versions(con):
            return False
        raise
    return True


def migrate(
    con: duckdb.DuckDBPyConnection, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[int]:
    """Bring the lake in use on `con` up to date; returns the versions applied now."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"migration versions must be unique and ascending, got {versions}")
    con.execute(_LEDGER)
    done = applied_versions(con)
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        if _apply(con, migration):
            log.info("lake migration %d applied: %s", migration.version, migration.name)
            applied.append(migration.version)
    return applied
