"""Peak memory of replacing one LanceDB partition: `merge_insert` (the old way) vs fragments + one
`Update` commit (`lance_tables.replace_partition`, the new way).

Both ways replace the same partition of the same table with the same bytes: 256 x 256 x 4 uint8
chip rows like `vhr_chips`, next to another partition that must stay as it is. Each way runs in
a fresh subprocess (so one way's freed-but-kept heap cannot flatter the other), with Lance's
threads pinned. The peak is Linux's VmHWM, reset through /proc/self/clear_refs right before the
rows are made, so "peak over data" counts the rows themselves plus whatever the write adds:

- `table` input: the rows exist as one pyarrow Table (what most assets return); 1.0x is the
  floor, the data itself.
- `stream` input: the rows are made batch by batch while Lance pulls them (a RecordBatchReader);
  the floor is about one batch.

    python bench/partition_write.py [--small] [--rows 1200] [--workdir bench/out/partition_write]

Prints one line per (way, input) with peak RSS over the data size, then the ratio old/new.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from bench_summary import Figure, record

from flywheel_core.store import lance_tables
from flywheel_core.store.lance_tables import pixels_field

CHIP_BYTES = 256 * 256 * 4
BATCH_ROWS = 32
THREADS = "2"
CELL, KEEP, REWRITE = "479e758c4", "2024-05-01", "2024-06-01"
SCHEMA = pa.schema(
    [("uid", pa.string()), ("cell", pa.string()), ("date", pa.string()), pixels_field("image")]
)
WAYS = ("merge_insert", "fragments")
INPUTS = ("table", "stream")


def _batches(day: str, rows: int, seed: int) -> Iterator[pa.RecordBatch]:
    """The partition's rows, made `BATCH_ROWS` at a time (random pixels: nothing compresses)."""
    rng = np.random.default_rng(seed)
    for start in range(0, rows, BATCH_ROWS):
        n = min(BATCH_ROWS, rows - start)
        pixels = rng.integers(0, 255, (n, CHIP_BYTES), dtype=np.uint8)
        yield pa.record_batch(
            [
                pa.array([f"{CELL}-{day}-{start + i:05d}" for i in range(n)]),
                pa.array([CELL] * n),
                pa.array([day] * n),
                pa.array([p.tobytes() for p in pixels], pa.binary()),
            ],
            schema=SCHEMA,
        )


def _merge_insert(db, name: str, data, partition: dict[str, str]) -> None:
    """The replaced write path, verbatim in effect: one merge_insert keyed on uid."""
    table = db.open_table(name)
    (
        table.merge_insert("uid")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .when_not_matched_by_source_delete(lance_tables.partition_filter(partition))
        .execute(data)
    )


def _write(way: str, db, name: str, data, partition: dict[str, str]) -> None:
    if isinstance(data, Iterator):
        data = pa.RecordBatchReader.from_batches(SCHEMA, data)
    if way == "merge_insert" and name in db.table_names():
        _merge_insert(db, name, data, partition)
    else:  # the new way, and the first write of a table either way (it creates the table)
        lance_tables.replace_partition(db, name, data, partition)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def setup(rows: int, workdir: Path) -> None:
    """The table before the measured write: a kept partition and the old rows of the other.

    Runs in its own process: Arrow's allocator keeps freed memory, which would hide the
    measured write's own peak inside the setup's leftovers.
    """
    db = lance_tables.connect(str(workdir))
    keep = pa.Table.from_batches(list(_batches(KEEP, max(rows // 4, 1), seed=1)))
    lance_tables.replace_partition(db, "chips", keep, {"cell": CELL, "date": KEEP})
    old = pa.RecordBatchReader.from_batches(SCHEMA, _batches(REWRITE, rows, seed=2))
    lance_tables.replace_partition(db, "chips", old, {"cell": CELL, "date": REWRITE})


def child(way: str, source: str, rows: int, workdir: Path) -> dict[str, float]:
    """One write in this (fresh) process; returns its peak RSS over the data's bytes."""
    db = lance_tables.connect(str(workdir))
    partition = {"cell": CELL, "date": REWRITE}
    _write(way, db, "warmup", _batches(REWRITE, 8, seed=4), partition)  # load code, pools
    _write(way, db, "warmup", _batches(REWRITE, 8, seed=5), partition)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base_kib = _status_kib("VmRSS")
    data_bytes = rows * CHIP_BYTES  # the pixel bytes; keys add < 0.1 %
    started = time.perf_counter()
    reader = pa.RecordBatchReader.from_batches(SCHEMA, _batches(REWRITE, rows, seed=3))
    data = reader.read_all() if source == "table" else reader
    _write(way, db, "chips", data, partition)
    seconds = time.perf_counter() - started
    peak = (_status_kib("VmHWM") - base_kib) * 1024
    table = db.open_table("chips")
    assert table.count_rows() == rows + max(rows // 4, 1), "the write lost or duplicated rows"
    return {"peak_over_data": peak / data_bytes, "peak_mb": peak / 1e6, "seconds": seconds}


def run_one(way: str, source: str, rows: int, workdir: Path) -> dict[str, float]:
    folder = workdir / f"{way}-{source}"
    shutil.rmtree(folder, ignore_errors=True)
    env = {
        **os.environ,
        "LANCE_CPU_THREADS": THREADS,
        "LANCE_IO_THREADS": THREADS,
        "OMP_NUM_THREADS": "1",
    }
    for step in (["setup", "-"], [way, source]):
        args = [sys.executable, __file__, "--child", *step, "--rows", str(rows)]
        done = subprocess.run(
            [*args, "--workdir", str(folder)], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"{way}/{source} {step[0]} failed:\n{done.stderr[-3000:]}")
    shutil.rmtree(folder, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1200, help="rows of the replaced partition")
    parser.add_argument("--small", action="store_true", help="96 rows, for development")
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/partition_write"))
    parser.add_argument("--child", nargs=2, metavar=("WAY", "INPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = 96 if args.small else args.rows
    if args.child and args.child[0] == "setup":
        setup(rows, args.workdir)
        return
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], rows, args.workdir)))
        return
    print(
        f"partition of {rows} rows x {CHIP_BYTES} B = {rows * CHIP_BYTES / 1e6:.0f} MB; "
        f"LANCE_CPU_THREADS=LANCE_IO_THREADS={THREADS}; target: fragments peak <= 1.5x data"
    )
    results = {(w, s): run_one(w, s, rows, args.workdir) for s in INPUTS for w in WAYS}
    for (way, source), r in results.items():
        print(
            f"{way:>12} {source:>6} input: peak {r['peak_mb']:8.1f} MB over baseline = "
            f"{r['peak_over_data']:.2f}x data, {r['seconds']:.2f} s"
        )
    figures = []
    for source in INPUTS:
        old = results[("merge_insert", source)]["peak_over_data"]
        new = results[("fragments", source)]["peak_over_data"]
        figures += [
            Figure(f"replace partition, {source} input: peak RSS / data", new, 1.5, "<="),
            Figure(f"merge_insert (former), {source} input: peak RSS / data", old),
        ]
        ok = "meets" if new <= 1.5 else "MISSES"
        print(
            f"{source} input: fragments peak {new:.2f}x vs merge_insert {old:.2f}x "
            f"(old/new {old / new:.2f}); {ok} <= 1.5x"
        )

    record("partition_write", figures)


if __name__ == "__main__":
    main()
