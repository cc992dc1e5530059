"""The code location's default executor: Dagster's in-process/multiprocess selector, in process
unless the run config says otherwise.

Dagster's default (`multi_or_in_process_executor`) starts a subprocess per step. Each of those
imports the code location again, then its own heavy stack (torch, lancedb), and starts with an
empty GPU resource cache, so sam_masks and validated_backfill cannot share a loaded model. On
this project's machines (two cores, the `gpu` pool at one slot) steps seldom run side by side
anyway: a one-partition `seed_labels,vhr_chips` run spent about twice as long in wall time with
the multiprocess executor as in process (bench/run_overhead.py). The schema is Dagster's own, so
the launchpad and `-c` run config can still choose, per run:

    execution:
      config:
        multiprocess:
          max_concurrent: 2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import Field, Selector, executor
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from dagster import Executor, InitExecutorContext
    from dagster._core.definitions.executor_definition import ExecutorRequirement

DEFAULT_EXECUTION: dict[str, dict] = {"in_process": {}}


def _requirements(config: Mapping[str, object]) -> Sequence[ExecutorRequirement]:
    """Multiprocess needs a reconstructable job and a persistent instance; in process, nothing."""
    return multiple_process_executor_requirements() if "multiprocess" in config else []


@executor(
    name="in_process_or_multiprocess_executor",
    config_schema=Field(
        Selector({"in_process": IN_PROC_CONFIG, "multiprocess": MULTI_PROC_CONFIG}),
        default_value=DEFAULT_EXECUTION,
    ),
    requirements=_requirements,
)
def in_process_or_multiprocess_executor(init_context: InitExecutorContext) -> Executor:
    """Steps in the run's own process, or one subprocess per step when the run config asks."""
    config = init_context.executor_config
    if "multiprocess" in config:
        return _core_multiprocess_executor_creation(config["multiprocess"])  # type: ignore[arg-type]
    return _core_in_process_executor_creation(config["in_process"])  # type: ignore[arg-type]
