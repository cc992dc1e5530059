"""Helpers of the fault suite: processes started, watched and always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flywheel_core.geo.s2 import cell_from_lonlat

ROOT = Path(__file__).resolve().parents[2]
CELL = cell_from_lonlat(11.58, 48.14, 15)
DAYS = ["2024-05-01", "2024-06-01", "2024-07-01", "2024-08-01"]
BIN = Path(sys.executable).parent


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.5):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers, and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start processes in their own group; every one is stopped when the test ends."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT):
        out = log.open("wb")
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop(proc)


@pytest.fixture(scope="session")
def four_date_world(tmp_path_factory):
    """One cell with VHR on four monthly dates inside the default partitions."""
    from datetime import date

    from flywheel_core.world.synthetic import generate_world

    out = tmp_path_factory.mktemp("four_dates")
    return generate_world(out, [CELL], [date.fromisoformat(d) for d in DAYS], seed=44)
