"""A static STAC catalog of the synthetic scenes, so they load like any local STAC imagery.

Layout (SELF_CONTAINED, every href relative): catalog.json, then one collection per sensor
(`synthetic-vhr`, `synthetic-s2-l2a`) with one item per cell and date, ids `vhr-<cell>-<date>`
and `s2-<cell>-<date>`. The rasters stay where the generator wrote them; asset hrefs point there.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pystac
from shapely.geometry import mapping

from flywheel_core.world.grid import SceneGrid

VHR_COLLECTION = "synthetic-vhr"
S2_COLLECTION = "synthetic-s2-l2a"
CATALOG_ID = "flywheel-synthetic-world"
# The projection fields (`proj:epsg`, `proj:shape`, `proj:transform`, v1 names, which readers of
# this project use) are written without declaring the projection extension on purpose: when it
# is declared, pystac migrates `proj:epsg` to v2's `proj:code` on load, and
# `item.properties["proj:epsg"]` disappears from under those readers.
EO_EXT = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


@dataclass(frozen=True)
class AssetSpec:
    path: Path
    title: str
    roles: tuple[str, ...] = ("data",)
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class SceneRecord:
    """What the catalog needs to know about one written scene."""

    collection: str
    item_id: str
    cell: str
    day: date
    grid: SceneGrid
    gsd: float
    cloud_cover: float
    assets: dict[str, AssetSpec]
    extra: dict[str, object] = field(default_factory=dict)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _item(rec: SceneRecord) -> pystac.Item:
    footprint = rec.grid.footprint_lonlat()
    item = pystac.Item(
        id=rec.item_id,
        geometry=mapping(footprint),
        bbox=list(footprint.bounds),
        datetime=_midnight(rec.day),
        properties={
            "proj:epsg": rec.grid.epsg,
            "gsd": rec.gsd,
            "eo:cloud_cover": round(rec.cloud_cover, 2),
            "flywheel:cell": rec.cell,
            "flywheel:synthetic": True,
            **rec.extra,
        },
        stac_extensions=[EO_EXT, RASTER_EXT],
    )
    for key, spec in rec.assets.items():
        item.add_asset(
            key,
            pystac.Asset(
                href=str(spec.path.resolve()),
                title=spec.title,
                media_type=pystac.MediaType.COG,
                roles=list(spec.roles),
                extra_fields=dict(spec.extra),
            ),
        )
    return item


def _collection(cid: str, description: str, records: Sequence[SceneRecord]) -> pystac.Collection:
    items = [_item(r) for r in records]
    bounds = [i.bbox for i in items if i.bbox]
    bbox = [
        min(b[0] for b in bounds),
        min(b[1] for b in bounds),
        max(b[2] for b in bounds),
        max(b[3] for b in bounds),
    ]
    days = sorted(r.day for r in records)
    collection = pystac.Collection(
        id=cid,
        description=description,
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]),
            pystac.TemporalExtent([[_midnight(days[0]), _midnight(days[-1])]]),
        ),
        license="CC0-1.0",
        extra_fields={"flywheel:synthetic": True},
    )
    for item in items:
        collection.add_item(item)
    return collection


def write_catalog(out_dir: Path, vhr: Sequence[SceneRecord], s2: Sequence[SceneRecord]) -> Path:
    """Write catalog.json and its collections/items under `out_dir`; returns the catalog path."""
    out_dir = out_dir.resolve()
    for stale in (VHR_COLLECTION, S2_COLLECTION):  # items of cells/dates no longer in the world
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    catalog = pystac.Catalog(
        id=CATALOG_ID,
        description="Deterministic synthetic world of Lightning Lance (VHR and Sentinel-2 L2A).",
    )
    catalog.add_child(
        _collection(
            VHR_COLLECTION, "Synthetic VHR scenes: 0.3125 m, 8-bit red, green, blue, nir.", vhr
        )
    )
    catalog.add_child(
        _collection(
            S2_COLLECTION,
            "Synthetic Sentinel-2 L2A scenes: 10/20 m bands as DN with BOA_ADD_OFFSET, plus SCL.",
            s2,
        )
    )
    # The catalog file, not the folder: pystac takes a root with a dot in its last name
    # ("world.v2") for a file and would write the catalog beside the folder instead.
    catalog.normalize_hrefs(str(out_dir / "catalog.json"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
