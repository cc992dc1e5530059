"""A run launcher whose run workers can be health-checked, so run monitoring can act on them.

Dagster's DefaultRunLauncher does not support `check_run_worker_health`, so with it the
monitoring daemon never looks at a STARTED run: a worker killed by `kill -9` or the OOM killer
leaves its run STARTED forever and keeps the pool slots it claimed (the `gpu` pool jammed for
every later `sam_masks`, `predictions`, ... run). Every run worker, whether started by the code
server (`dagster dev`) or by `dagster asset materialize` / `flywheel rounds` in the foreground,
writes its process id into an engine event; this launcher checks that the process is still
alive. The monitoring daemon then marks a dead worker's run FAILURE and, after
`free_slots_after_run_end_seconds`, frees its slots.

The check assumes the worker runs on this machine, as every run of this project's local
instance does (runs launched elsewhere need that platform's launcher).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

# Engine events a run worker writes about the process that orchestrates the run's steps.
_WORKER_MESSAGES = (
    "Started process for run (pid:",
    "Executing steps using multiprocess executor: parent process (pid:",
    "Executing steps in process (pid:",
)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def worker_pids(instance: DagsterInstance, run_id: str) -> list[tuple[int, float]]:
    """(pid, event timestamp) of each process that announced itself as the run's worker."""
    found = []
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        if event is None or not (record.user_message or "").startswith(_WORKER_MESSAGES):
            continue
        data = event.engine_event_data
        pid = data.metadata.get("pid") if data else None
        if pid is not None and str(pid.value).isdigit():
            found.append((int(str(pid.value)), record.timestamp))
    return found


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def process_alive(pid: int, seen_at: float) -> bool:
    """Whether `pid` is a live (not zombie) process that existed when it was seen at `seen_at`.

    A process started after `seen_at` only reuses the number: the worker is gone.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): signal 0 is all we can check
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return False
    boot = _boot_time()
    if boot is None:
        return True
    started = boot + int(fields[19]) / _CLOCK_TICKS
    return started <= seen_at + 1.0


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher plus a run worker health check by process id."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """FAILED once every process that announced itself as the run's worker is gone.

        A run that has announced no worker yet counts as RUNNING: it is still starting, which
        `start_timeout_seconds` bounds.
        """
        pids = worker_pids(self._instance, run.run_id)
        if not pids:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker process announced yet")
        alive = [pid for pid, seen in pids if process_alive(pid, seen)]
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker pid {alive[-1]} alive")
        listed = ", ".join(str(pid) for pid, _ in pids)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process (pid {listed}) is gone: killed or crashed"
        )
