"""Choosing an imagery source by name: one module per source, imported when first asked for.

Importing lazily keeps each source's own dependencies (xarray for Core-Five, pystac-client for
STAC APIs, boto3 for S3) out of the processes that never use them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from flywheel_core.imagery.sources.types import KINDS, ImagerySource, Kind, SourceError

# name -> "module:Class"; every module is flywheel_core.imagery.sources.<module>
SOURCES: dict[str, str] = {
    "synthetic": "synthetic:SyntheticSource",
    "local": "local:LocalSource",
    "core-five": "core_five:CoreFiveSource",
    "earthview": "earthview:EarthViewSource",
    "stac-api": "stac_api:StacApiSource",
}


def source_class(name: str) -> type[ImagerySource]:
    if name not in SOURCES:
        raise SourceError(name, f"unknown imagery source; choose one of {', '.join(SOURCES)}")
    module, cls = SOURCES[name].split(":")
    loaded: type[ImagerySource] = getattr(
        importlib.import_module(f"flywheel_core.imagery.sources.{module}"), cls
    )
    return loaded


def make_source(
    name: str, kind: str, root: str = "", options: Mapping[str, Any] | None = None
) -> ImagerySource:
    """The source `name` giving `kind` imagery from `root`, with its own `options`."""
    if kind not in KINDS:
        raise SourceError(name, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    checked: Kind = "vhr" if kind == "vhr" else "msi"
    return source_class(name)(checked, root, options)
