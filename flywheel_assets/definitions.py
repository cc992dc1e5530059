"""The code location: every asset, check and resource of Lightning Lance.

Every Dagster process imports this module (the UI, the daemon, each run, and each step when a
run asks for the multiprocess executor), so it imports no heavy stack: torch, lightning,
lancedb, geopandas and scipy are imported inside the assets and resources that use them
(flywheel_tests/test_import_cost.py). Steps run in the run's process unless the run config
chooses `multiprocess` (flywheel_assets/executor.py says why).
"""

from __future__ import annotations

from dagster import Definitions, load_assets_from_modules

from flywheel_assets.embed import assets as embed
from flywheel_assets.executor import in_process_or_multiprocess_executor
from flywheel_assets.ingest import imagery, labels
from flywheel_assets.loop import backfill, model, predictions
from flywheel_assets.masks import assets as masks
from flywheel_assets.resources import build_resources
from flywheel_assets.sensors import label_snapshot_sensor

defs = Definitions(
    assets=load_assets_from_modules([labels, imagery, masks, embed, model, predictions, backfill]),
    sensors=[label_snapshot_sensor],
    resources=build_resources(),
    executor=in_process_or_multiprocess_executor,
)
