"""Fault points: places where the fault suite kills the process on purpose.

`fault_point("lance.partition.after_write")` does nothing unless the environment variable
FLYWHEEL_FAULT_POINT names that point; then the process dies by SIGKILL on the spot, as it
would under `kill -9` or the OOM killer. The suite (flywheel_tests/faults/) uses this to prove
that a write interrupted at any of its stages leaves every table readable and no partition half
written. The check is one dictionary look-up, so the calls stay in production code at no cost.
"""

from __future__ import annotations

import os
import signal

ENV = "FLYWHEEL_FAULT_POINT"


def fault_point(name: str) -> None:
    """Die by SIGKILL here when FLYWHEEL_FAULT_POINT is `name`: no cleanup, no finally blocks."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
