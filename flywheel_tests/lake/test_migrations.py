from __future__ import annotations

import duckdb
import pytest

from flywheel_core.labels.schema import LABEL_COLUMNS
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.lake.migrations import MIGRATIONS, Migration, applied_versions, migrate


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [r[0] for r in rows]


def test_migrations_recorded_and_second_run_is_a_no_op(lake: LakeConfig) -> None:
    with lake_connection(lake) as con:
        recorded = con.execute(
            "SELECT version, name, applied_at FROM flywheel_migrations ORDER BY version"
        ).fetchall()
        versions = [m.version for m in MIGRATIONS]
        assert [r[0] for r in recorded] == versions == list(range(1, len(MIGRATIONS) + 1))
        assert all(r[1] and r[2] is not None for r in recorded)
        snapshot = current_snapshot_id(con)
        assert migrate(con) == []  # same connection, again
    with lake_connection(lake) as con:  # a second connection, in turn
        assert applied_versions(con) == set(versions)
        recorded_now = con.execute("SELECT count(*) FROM flywheel_migrations").fetchone()[0]
        assert recorded_now == len(versions)
        assert current_snapshot_id(con) == snapshot  # nothing was written


def test_schema_matches_the_label_batch_schema(lake: LakeConfig) -> None:
    with lake_connection(lake) as con:
        assert tuple(_columns(con, "labels")) == LABEL_COLUMNS
        assert _columns(con, "label_imports") == [
            "import_id", "file_name", "file_sha256", "source", "doi", "n_read", "n_inserted",
            "n_duplicate", "n_rejected", "rejects", "created_at",
        ]  # fmt: skip
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_catalog = current_database() AND table_name = 'labels'"
            ).fetchall()
        )
        assert types["s2_cells"] == "VARCHAR[]"
        assert types["geometry"] == "BLOB"
        for table in ("models", "predictions", "backfill_log"):
            assert "created_at" in _columns(con, table)
        assert {"decision", "reason"} <= set(_columns(con, "backfill_log"))
        assert {"geometry", "score", "model_id", "s2_cell"} <= set(_columns(con, "predictions"))


def test_failed_migration_leaves_nothing_behind(lake: LakeConfig) -> None:
    nxt = MIGRATIONS[-1].version + 1
    broken = Migration(nxt, "broken", ("CREATE TABLE half_done (x INTEGER)", "SELECT * FROM nope"))
    with lake_connection(lake) as con:
        with pytest.raises(duckdb.Error):
            migrate(con, (*MIGRATIONS, broken))
        assert applied_versions(con) == {m.version for m in MIGRATIONS}
        assert _columns(con, "half_done") == []
        # The connection is usable afterwards (the transaction was rolled back).
        good = Migration(nxt, "fixed", ("CREATE TABLE half_done (x INTEGER)",))
        assert migrate(con, (*MIGRATIONS, good)) == [nxt]
        assert _columns(con, "half_done") == ["x"]


def test_versions_must_ascend(lake: LakeConfig) -> None:
    with lake_connection(lake) as con, pytest.raises(ValueError, match="ascending"):
        migrate(con, (MIGRATIONS[1], MIGRATIONS[0]))
