"""glibc allocator tuning, measured the way it matters: batched Lance takes of chip-sized rows
stop page-faulting every row buffer (counted in page faults by the kernel, not timed)."""

from __future__ import annotations

import os
import subprocess
import sys

import lance
import numpy as np
import pyarrow as pa
import pytest

from flywheel_core.store import allocator
from flywheel_core.store.lance_tables import pixels_field

ROWS, ROW_BYTES = 64, 320 << 10  # 4 x 256 x 256 + mask, as a chip row

# 40 batched takes of 16 sorted rows; the minor page faults per row of the last 35.
TAKES = """
import resource, sys
import lance
import numpy as np
from flywheel_core.store.allocator import tune_allocator
tune_allocator()
ds = lance.dataset(sys.argv[1])
rng = np.random.default_rng(1)
batches = [np.sort(rng.choice(ds.count_rows(), 16, replace=False)).tolist() for _ in range(40)]
for b in batches[:5]:
    ds.take(b, columns=["image"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for b in batches[5:]:
    ds.take(b, columns=["image"])
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (35 * 16))
"""


def _faults_per_row(uri: str, tuning: str) -> float:
    env = os.environ | {"FLYWHEEL_MALLOC_TUNING": tuning}
    out = subprocess.run(
        [sys.executable, "-c", TAKES, uri], env=env, check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._libc() is None, reason="not glibc: tune_allocator is a no-op")
def test_tuned_allocator_stops_refaulting_row_buffers(tmp_path) -> None:
    rng = np.random.default_rng(0)
    schema = pa.schema([pixels_field("image")])
    rows = [rng.integers(0, 255, ROW_BYTES, dtype=np.uint8).tobytes() for _ in range(ROWS)]
    uri = str(tmp_path / "chips.lance")
    lance.write_dataset(pa.table({"image": rows}, schema=schema), uri, schema=schema)
    untuned, tuned = _faults_per_row(uri, "0"), _faults_per_row(uri, "1")
    assert untuned > 40  # a 320 KiB row is 80 pages: most are faulted in again on every take
    assert tuned < untuned / 4


def test_tuning_can_be_switched_off(monkeypatch) -> None:
    monkeypatch.setenv("FLYWHEEL_MALLOC_TUNING", "0")
    assert allocator.tune_allocator() is False
