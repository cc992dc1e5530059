"""One transaction helper for every DuckLake write.

`with transaction(con):` runs the block between BEGIN and COMMIT and rolls back on any exception
(KeyboardInterrupt included), so a failure leaves the lake as it was before the block. A failed
COMMIT has already ended the transaction in DuckDB; the rollback after it is quiet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb

__all__ = ["rollback_quietly", "transaction"]


def rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    """ROLLBACK if a transaction is still open (a failed COMMIT has already ended it)."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN, yield the connection, COMMIT; ROLLBACK and re-raise if anything fails."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        rollback_quietly(con)
        raise
