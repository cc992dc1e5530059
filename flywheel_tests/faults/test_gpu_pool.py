"""A run worker killed while it holds the `gpu` pool slot must not jam the pool.

A real instance with the project's dagster.yaml and a real monitoring daemon: `hold_gpu` takes
the slot, its run worker (the `dagster asset materialize` process) is killed by SIGKILL, and a
`use_gpu` run, blocked on the slot meanwhile, must then run and succeed. Without run monitoring
and the health-checking launcher the killed run stays STARTED with the slot claimed, and
`use_gpu` waits "blocked by limit for pool gpu" forever.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from flywheel_tests.faults.conftest import BIN, ROOT, wait_for

pytestmark = pytest.mark.slow

LOCATION = Path(__file__).with_name("gpu_location.py")
RECOVERY_S = 150  # poll 10 s + slot freeing 10 s + claim back-off up to 15 s, on a busy machine


def _materialize(asset: str) -> list[str]:
    return [str(BIN / "dagster"), "asset", "materialize", "-f", str(LOCATION), "--select", asset]


def _runs(home: Path, asset: str) -> list:
    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(RunsFilter(job_name="__ASSET_JOB"))
        return [r for r in runs if asset in {k.to_user_string() for k in r.asset_selection or ()}]


def test_killed_worker_frees_the_gpu_pool(tmp_path, spawn):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    pid_file = tmp_path / "hold.pid"
    env = {**os.environ, "DAGSTER_HOME": str(home), "FLYWHEEL_TEST_PID_FILE": str(pid_file)}
    with DagsterInstance.from_config(str(home)):
        pass  # create the storage once: processes racing to create it break its migrations
    daemon = spawn(
        [str(BIN / "dagster-daemon"), "run", "-f", str(LOCATION)], env, tmp_path / "daemon.log"
    )
    holder = spawn(_materialize("hold_gpu"), env, tmp_path / "hold.log")
    wait_for(pid_file.exists, 120, "hold_gpu to take the gpu slot")
    blocked = spawn(_materialize("use_gpu"), env, tmp_path / "use.log")
    wait_for(
        lambda: "blocked by limit for pool gpu" in (tmp_path / "use.log").read_text(),
        120,
        "use_gpu to wait for the slot",
    )
    os.kill(holder.pid, signal.SIGKILL)  # the run worker itself, as `kill -9 <pid>` does
    holder.wait(timeout=30)
    try:
        code = blocked.wait(timeout=RECOVERY_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"use_gpu still blocked {RECOVERY_S} s after the holder died:\n"
            + (tmp_path / "daemon.log").read_text()[-3000:]
        )
    assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
    assert code == 0, (tmp_path / "use.log").read_text()[-3000:]
    [killed] = _runs(home, "hold_gpu")
    assert killed.status == DagsterRunStatus.FAILURE
    [used] = _runs(home, "use_gpu")
    assert used.status == DagsterRunStatus.SUCCESS
    with DagsterInstance.from_config(str(home)) as instance:
        pool = instance.event_log_storage.get_concurrency_info("gpu")
        assert pool.slot_count == 1 and pool.active_slot_count == 0
