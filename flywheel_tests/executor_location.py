"""Two trivial assets on the code location's executor, for real runs in test_definitions.py."""

from dagster import Definitions, asset

from flywheel_assets.executor import in_process_or_multiprocess_executor


@asset
def first() -> int:
    return 1


@asset
def second(first: int) -> int:
    return first + 1


defs = Definitions(assets=[first, second], executor=in_process_or_multiprocess_executor)
