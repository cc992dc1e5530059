"""`ImageryResource`: the VHR and the MSI imagery source of the assets, by configuration.

A thin layer over `flywheel_core.imagery.sources`: each kind is a source name, a root and the
source's options (JSON, so any source's settings fit one field). No source is a default of the
class; `from_env` builds it from FLYWHEEL_VHR_SOURCE / _ROOT / _OPTIONS and FLYWHEEL_MSI_...
and, where those are unset on a local (non-production) deployment, the synthetic world.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from flywheel_core.imagery.sources.registry import SOURCES, make_source
from flywheel_core.imagery.sources.types import ImagerySource, Kind, SourceError
from flywheel_core.settings import Settings

PRODUCTION = "production"


class ImageryResource(ConfigurableResource):
    """Where the partitions' scenes come from: one source for VHR, one for Sentinel-2."""

    vhr_source: str = Field(description=f"VHR source: one of {', '.join(SOURCES)}.")
    vhr_root: str = Field(default="", description="Where the VHR source's data lives.")
    vhr_options: str = Field(default="{}", description="The VHR source's options, as JSON.")
    msi_source: str = Field(description=f"Sentinel-2 source: one of {', '.join(SOURCES)}.")
    msi_root: str = Field(default="", description="Where the MSI source's data lives.")
    msi_options: str = Field(default="{}", description="The MSI source's options, as JSON.")
    cache_dir: str = Field(description="Folder for windows written by sources (window.py).")
    previews_dir: str = Field(description="Folder for PNG previews of materializations.")
    truth_path: str = Field(
        default="",
        description="The synthetic world's hidden truth, read for figures only (never rules).",
    )

    def source(self, kind: Kind) -> ImagerySource:
        name, root, options = (
            (self.vhr_source, self.vhr_root, self.vhr_options)
            if kind == "vhr"
            else (self.msi_source, self.msi_root, self.msi_options)
        )
        if not name:
            raise SourceError(
                f"{kind} imagery",
                f"no source configured: set FLYWHEEL_{kind.upper()}_SOURCE (one of "
                f"{', '.join(SOURCES)}) or the imagery resource's {kind}_source",
            )
        try:
            parsed: dict[str, Any] = json.loads(options or "{}")
        except json.JSONDecodeError as exc:
            raise SourceError(name, f"{kind}_options is not JSON: {exc}") from None
        return make_source(name, kind, root, parsed)

    def vhr(self) -> ImagerySource:
        return self.source("vhr")

    def msi(self) -> ImagerySource:
        return self.source("msi")

    @classmethod
    def for_world(cls, world_dir: str | Path, work_dir: str | Path) -> ImageryResource:
        """Both kinds from a synthetic world folder; caches and previews under `work_dir`."""
        world, work = Path(world_dir), Path(work_dir)
        return cls(
            vhr_source="synthetic",
            vhr_root=str(world),
            msi_source="synthetic",
            msi_root=str(world),
            cache_dir=str(work / "imagery"),
            previews_dir=str(work / "previews"),
            truth_path=str(world / "truth.parquet"),
        )

    @classmethod
    def from_env(cls) -> ImageryResource:
        settings = Settings.from_env()
        local = os.environ.get("FLYWHEEL_DEPLOYMENT", "local") != PRODUCTION
        world = str(settings.world_dir)
        fallback = "synthetic" if local else ""
        vhr = os.environ.get("FLYWHEEL_VHR_SOURCE", fallback)
        msi = os.environ.get("FLYWHEEL_MSI_SOURCE", fallback)
        truth = Path(world) / "truth.parquet"
        return cls(
            vhr_source=vhr,
            vhr_root=os.environ.get("FLYWHEEL_VHR_ROOT", world if vhr == "synthetic" else ""),
            vhr_options=os.environ.get("FLYWHEEL_VHR_OPTIONS", "{}"),
            msi_source=msi,
            msi_root=os.environ.get("FLYWHEEL_MSI_ROOT", world if msi == "synthetic" else ""),
            msi_options=os.environ.get("FLYWHEEL_MSI_OPTIONS", "{}"),
            cache_dir=str(settings.data_dir / "imagery"),
            previews_dir=str(settings.data_dir / "previews"),
            truth_path=str(truth) if vhr == "synthetic" else "",
        )
