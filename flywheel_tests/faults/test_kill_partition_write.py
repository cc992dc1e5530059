"""`kill -9` at each stage of a Lance partition write leaves no partition half written.

Each write runs in its own process (`lance_writer`) and dies by SIGKILL at a fault point: before
the write, while the rows stream in, after the commit. After every kill the table must open,
the other partition must be untouched, the partition being rewritten must be either all old rows
or all new ones, and a plain re-run must leave exactly what a clean run leaves in another folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel_core.store.lance_tables import connect, replace_partition

pytestmark = pytest.mark.slow

TABLE = "vhr_chips"
CELL = "479e758c4"
KEEP, REWRITE = "2024-05-01", "2024-06-01"
POINTS = [
    "lance.partition.before_write",
    "lance.partition.streaming",
    "lance.partition.after_commit",
]


def _rows(day: str, n: int, version: int) -> pa.Table:
    """`n` chips of one partition; `version` changes every pixel, so old and new rows differ."""
    rng = np.random.default_rng(version * 1000 + n)
    return pa.table(
        {
            "uid": [f"{CELL}-{day}-{i:04d}" for i in range(n)],
            "cell": [CELL] * n,
            "date": [day] * n,
            "version": [version] * n,
            "image": [rng.integers(0, 255, 4096, dtype=np.uint8).tobytes() for _ in range(n)],
        }
    )


def _write(uri: Path, rows: pa.Table, day: str) -> None:
    """A write in this process (setting up, restoring, the re-run)."""
    replace_partition(connect(str(uri)), TABLE, rows, {"cell": CELL, "date": day})


def _killed_write(uri: Path, rows: pa.Table, day: str, fault: str) -> int:
    """The write in its own process, killed at `fault`; returns its exit code."""
    path = uri.parent / f"rows-{day}.parquet"
    pq.write_table(rows, path)
    env = {**os.environ, "FLYWHEEL_FAULT_POINT": fault}
    args = [sys.executable, "-m", "flywheel_tests.faults.lance_writer", str(uri), TABLE]
    done = subprocess.run(
        [*args, str(path), CELL, day], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr[-2000:]
    return done.returncode


def _partition(uri: Path, day: str) -> pa.Table:
    table = lancedb.connect(str(uri)).open_table(TABLE)
    rows = table.search().where(f"date = '{day}'").limit(None).to_arrow()
    return rows.sort_by("uid").select(["uid", "cell", "date", "version", "image"])


def test_killed_partition_writes_leave_old_or_new_never_half(tmp_path):
    old, new = _rows(REWRITE, 40, version=1), _rows(REWRITE, 57, version=2)
    kept = _rows(KEEP, 33, version=1)
    clean, faulty = tmp_path / "clean" / "lancedb", tmp_path / "faulty" / "lancedb"
    for uri in (clean, faulty):
        uri.parent.mkdir()
        _write(uri, kept, KEEP)
        _write(uri, old, REWRITE)
    _write(clean, new, REWRITE)
    expected = {day: _partition(clean, day) for day in (KEEP, REWRITE)}
    assert expected[REWRITE].num_rows == 57 and expected[KEEP].num_rows == 33

    for point in POINTS:
        _killed_write(faulty, new, REWRITE, point)
        assert _partition(faulty, KEEP).equals(expected[KEEP]), point
        seen = _partition(faulty, REWRITE)
        whole = seen.equals(expected[REWRITE]) or seen.equals(old.sort_by("uid"))
        assert whole, f"{point}: partition half written: {seen.num_rows} rows"
        if point == "lance.partition.after_commit":
            assert seen.equals(expected[REWRITE]), "a kill after the commit lost the commit"
        else:
            assert seen.equals(old.sort_by("uid")), f"{point}: a kill before commit wrote rows"
        _write(faulty, old, REWRITE)  # back to the old rows for the next kill

    _write(faulty, new, REWRITE)  # the re-run
    for day in (KEEP, REWRITE):
        assert _partition(faulty, day).equals(expected[day])
    assert lancedb.connect(str(faulty)).open_table(TABLE).count_rows() == 33 + 57
