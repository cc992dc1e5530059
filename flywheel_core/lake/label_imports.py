"""The `label_imports` ledger as a guard: one file (by SHA-256) is imported once, even under races.

`flywheel labels import` of a file already imported, under any source name, must change nothing
and say which import it matches. The check runs inside the import's write transaction:

- DuckDB-file catalogs admit one process at a time, so the check and the write cannot interleave
  with another importer's.
- PostgreSQL and SQLite catalogs let writers run at once and settle at COMMIT (DuckLake's
  optimistic concurrency). Two imports of the same new file would both find no earlier row and
  both commit, unless their changes conflict. So every import also rewrites the one row of
  `label_import_claims` (delete + insert): two transactions that both delete from that table
  conflict, DuckLake refuses the later COMMIT, and `insert_labels` retries it; the retry sees the
  first import's row and is a no-op. Imports of different files merely queue behind each other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import duckdb

__all__ = ["PriorImport", "claim_import", "find_import", "is_commit_conflict"]

_CONFLICT_MARKERS = ("transaction conflict", "conflict")


@dataclass(frozen=True)
class PriorImport:
    """An earlier import of the same file bytes."""

    import_id: str
    file_name: str | None
    source: str | None
    n_inserted: int | None
    created_at: datetime | None

    def describe(self) -> str:
        when = f" on {self.created_at:%Y-%m-%d %H:%M:%S} UTC" if self.created_at else ""
        inserted = "" if self.n_inserted is None else f", {self.n_inserted} labels inserted"
        return (
            f"import {self.import_id} of {self.file_name or '?'} as source "
            f"{self.source or '?'!r}{when}{inserted}"
        )


def find_import(con: duckdb.DuckDBPyConnection, file_sha256: str) -> PriorImport | None:
    """The first import of a file with this SHA-256, if any (run inside the write transaction)."""
    row = con.execute(
        "SELECT import_id, file_name, source, n_inserted, created_at FROM label_imports "
        "WHERE file_sha256 = ? ORDER BY created_at NULLS LAST, import_id LIMIT 1",
        [file_sha256],
    ).fetchone()
    if row is None:
        return None
    return PriorImport(str(row[0]), row[1], row[2], row[3], row[4])


def claim_import(
    con: duckdb.DuckDBPyConnection, file_sha256: str, import_id: str, at: datetime
) -> None:
    """Rewrite the claim row, so a concurrent import's COMMIT conflicts with this one."""
    con.execute("DELETE FROM label_import_claims")
    con.execute(
        "INSERT INTO label_import_claims (claim_id, file_sha256, import_id, claimed_at) "
        "VALUES (?, ?, ?, ?)",
        [str(uuid.uuid4()), file_sha256, import_id, at],
    )


def is_commit_conflict(exc: BaseException) -> bool:
    """True for DuckLake refusing a COMMIT because a concurrent one changed the same data."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.TransactionException) and any(
        marker in text for marker in _CONFLICT_MARKERS
    )
