"""Scene lookup in a static STAC catalog.

The synthetic world and any folder of real GeoTIFFs/COGs are both reached through a static STAC
catalog, so one code path finds the scene that covers a cell in a date window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pystac
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from flywheel_core.errors import FlywheelError

log = logging.getLogger(__name__)


class CatalogError(FlywheelError, RuntimeError):
    """A catalog that cannot be read, with what to do about it."""


@dataclass(frozen=True)
class SceneRef:
    item_id: str
    collection: str
    acquired: datetime
    footprint: BaseGeometry
    assets: dict[str, str]
    cloud_cover: float | None
    epsg: int | None
    coverage: float  # fraction of the requested area the scene covers


class StacCatalog:
    """Items of a static catalog, indexed once per process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._items: list[tuple[str, pystac.Item]] | None = None

    def _load(self) -> list[tuple[str, pystac.Item]]:
        if self._items is None:
            if not self.path.exists():
                raise CatalogError(
                    f"no STAC catalog at {self.path}: run `flywheel world generate` for the "
                    "synthetic world, or point FLYWHEEL_WORLD_DIR / the imagery resource at yours"
                )
            root = pystac.Catalog.from_file(str(self.path))
            self._items = [
                (item.collection_id or "", item) for item in root.get_items(recursive=True)
            ]
            log.info("STAC catalog %s: %d items", self.path, len(self._items))
        return self._items

    def candidates(
        self, collection: str | None, area: BaseGeometry, start: date, end: date
    ) -> list[tuple[SceneRef, pystac.Item]]:
        """Items (of `collection`, or any) over `area` acquired in [start, end), with refs."""
        t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
        t1 = datetime(end.year, end.month, end.day, tzinfo=UTC)
        found: list[tuple[SceneRef, pystac.Item]] = []
        for coll, item in self._load():
            if collection is not None and coll != collection:
                continue
            if item.datetime is None or item.geometry is None:
                continue
            when = item.datetime if item.datetime.tzinfo else item.datetime.replace(tzinfo=UTC)
            if not t0 <= when < t1:
                continue
            footprint = shape(item.geometry)
            if not footprint.intersects(area):
                continue
            coverage = footprint.intersection(area).area / area.area if area.area else 0.0
            epsg = item.properties.get("proj:epsg")
            code = item.properties.get("proj:code")
            if epsg is None and isinstance(code, str) and code.upper().startswith("EPSG:"):
                epsg = int(code.split(":", 1)[1])
            ref = SceneRef(
                item_id=item.id,
                collection=coll,
                acquired=when,
                footprint=footprint,
                assets={k: a.get_absolute_href() or a.href for k, a in item.assets.items()},
                cloud_cover=item.properties.get("eo:cloud_cover"),
                epsg=epsg,
                coverage=coverage,
            )
            found.append((ref, item))
        return found

    def find(self, collection: str, area: BaseGeometry, start: date, end: date) -> SceneRef | None:
        """Best scene of `collection` over `area` in [start, end): most coverage, fewest clouds."""
        best: SceneRef | None = None
        for ref, _ in self.candidates(collection, area, start, end):
            if best is None or _rank(ref) > _rank(best):
                best = ref
        return best


def _rank(ref: SceneRef) -> tuple[float, float]:
    return (round(ref.coverage, 3), -(ref.cloud_cover if ref.cloud_cover is not None else 100.0))
