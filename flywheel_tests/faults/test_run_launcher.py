"""The launcher's health check: which run worker processes count as alive."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, asset, materialize
from dagster._core.launcher import WorkerStatus

from flywheel_assets.run_launcher import LocalRunLauncher, process_alive, worker_pids


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_live_dead_zombie_and_reused_pids():
    assert process_alive(os.getpid(), time.time())
    seen = time.time() + 60  # a time after both children started
    done = subprocess.Popen(["true"])
    done.wait()
    assert not process_alive(done.pid, seen)  # gone and reaped
    zombie = subprocess.Popen(["true"])
    try:
        # exited, not yet reaped: a zombie still answers signal 0, but is no worker
        deadline = time.monotonic() + 30
        while _state(zombie.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(zombie.pid) == "Z"
        os.kill(zombie.pid, 0)
        assert not process_alive(zombie.pid, seen)
    finally:
        zombie.wait()
    # a live process that started after the worker was seen only reuses its number
    assert not process_alive(os.getpid(), seen_at=0.0)


@asset
def tiny() -> int:
    return 1


def test_finished_in_process_run_reports_its_worker_and_is_checked_by_pid():
    with DagsterInstance.ephemeral() as instance:
        result = materialize([tiny], instance=instance)
        pids = worker_pids(instance, result.run_id)
        assert pids and {pid for pid, _ in pids} == {os.getpid()}
        launcher = LocalRunLauncher()
        launcher.register_instance(instance)
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
