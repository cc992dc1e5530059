"""Two, then four `vhr_chips` partitions materialized at once on one lake and one Lance store.

Every run must succeed and leave exactly the chips (and one raster dataset per partition) that
the same partitions materialized one at a time leave in another folder; the second wave also
rewrites the first wave's partitions, which must not duplicate a chip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from flywheel_tests.faults.conftest import CELL, DAYS, ROOT
from flywheel_tests.faults.partition_runs import chips_in, datasets_in

pytestmark = pytest.mark.slow


def test_two_then_four_partitions_at_once(four_date_world, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    world = four_date_world.catalog_path.parent
    waves = [",".join(DAYS[:2]), ",".join(DAYS)]
    args = [sys.executable, "-m", "flywheel_tests.faults.partition_runs", str(world), str(tmp_path)]
    done = subprocess.run(
        [*args, CELL, *waves], env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["waves"] == [{d: True for d in DAYS[:2]}, {d: True for d in DAYS}]
    assert report["clean"] == {d: True for d in DAYS}
    concurrent, clean = tmp_path / "concurrent", tmp_path / "clean"
    expected = chips_in(clean)
    assert {c[2] for c in expected} == set(DAYS) and len(expected) >= 4
    assert chips_in(concurrent) == expected
    assert datasets_in(concurrent) == datasets_in(clean)
    assert len(datasets_in(clean)) == len(DAYS)
