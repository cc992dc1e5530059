"""The code location: every asset, check and resource of Lightning Lance."""

from __future__ import annotations

from dagster import Definitions, load_assets_from_modules

from flywheel_assets.embed import assets as embed
from flywheel_assets.ingest import imagery, labels
from flywheel_assets.loop import backfill, model, predictions
from flywheel_assets.masks import assets as masks
from flywheel_assets.resources import build_resources
from flywheel_assets.sensors import label_snapshot_sensor

defs = Definitions(
    assets=load_assets_from_modules([labels, imagery, masks, embed, model, predictions, backfill]),
    sensors=[label_snapshot_sensor],
    resources=build_resources(),
)
