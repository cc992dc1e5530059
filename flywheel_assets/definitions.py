"""The code location: every asset, check and resource of Lightning Lance."""

from __future__ import annotations

from dagster import Definitions, load_assets_from_modules

from flywheel_assets.ingest import imagery, labels
from flywheel_assets.masks import assets as masks
from flywheel_assets.resources import build_resources

defs = Definitions(
    assets=load_assets_from_modules([labels, imagery, masks]),
    resources=build_resources(),
)
