"""A tiny code location for the pool tests: two assets in the `gpu` pool, nothing else.

`hold_gpu` takes the pool slot and sleeps (long enough to be killed while it holds it);
`use_gpu` needs the same slot and returns at once. Both run in the run worker's own process
(in-process executor), so killing that one process is killing the run worker that holds the
slot. FLYWHEEL_TEST_PID_FILE is where `hold_gpu` writes its pid once it holds the slot.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dagster import Definitions, asset, in_process_executor


@asset(pool="gpu")
def hold_gpu() -> int:
    Path(os.environ["FLYWHEEL_TEST_PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("FLYWHEEL_TEST_HOLD_S", "300")))
    return 1


@asset(pool="gpu")
def use_gpu() -> int:
    return 2


defs = Definitions(assets=[hold_gpu, use_gpu], executor=in_process_executor)
