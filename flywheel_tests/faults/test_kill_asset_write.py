"""`kill -9` of a real `vhr_chips` run inside its Lance write, then the re-run.

The run worker dies by SIGKILL while the chips stream into Lance, then (another run) right
after the Lance commit, before the raster dataset is recorded in the lake. Each time the Lance
table and the lake must open; the first kill must leave no chip of the partition, the second
all of them and no dataset row yet; the re-run must leave exactly the chips and the dataset of
a clean run in another folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from dagster import DagsterInstance

from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_tests.faults.conftest import CELL, DAYS, ROOT
from flywheel_tests.faults.partition_runs import chips_in, datasets_in, run_one

pytestmark = pytest.mark.slow

DAY = DAYS[0]


def _killed_run(world, root, home, fault: str) -> None:
    """The run in its own process, dying by SIGKILL at `fault`."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "FLYWHEEL_FAULT_POINT": fault}
    args = [sys.executable, "-m", "flywheel_tests.faults.partition_runs", "--one"]
    done = subprocess.run(
        [*args, str(world), str(root), CELL, DAY], env=env, capture_output=True, timeout=300
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-3000:]


def test_killed_vhr_chips_runs_leave_all_or_nothing_and_rerun_matches_clean(
    four_date_world, tmp_path, monkeypatch
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(S2_CELLS_NAME, [CELL])
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("FLYWHEEL_FAULT_POINT", raising=False)
    world, clean, faulty = four_date_world.catalog_path.parent, tmp_path / "clean", tmp_path / "f"
    assert run_one(world, clean, CELL, DAY)  # the clean run, in this process
    expected_chips, expected_sets = chips_in(clean), datasets_in(clean)
    assert expected_chips and len(expected_sets) == 1

    _killed_run(world, faulty, home, "lance.partition.streaming")
    assert chips_in(faulty) == [], "a run killed mid-write left chips"
    assert datasets_in(faulty) == []
    _killed_run(world, faulty, home, "lance.partition.after_commit")
    assert chips_in(faulty) == expected_chips, "the committed chips are not whole"
    assert datasets_in(faulty) == []  # recorded only after the Lance write returns

    assert run_one(world, faulty, CELL, DAY)  # the re-run
    assert chips_in(faulty) == expected_chips
    assert datasets_in(faulty) == expected_sets
