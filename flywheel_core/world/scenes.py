"""Writing one scene's files: the VHR COG and the Sentinel-2 L2A band COGs with their metadata.

S2 bands are stored the way real L2A products are, as DN = reflectance * 10000 - BOA_ADD_OFFSET
with the offset in each file's tags, so the code that loads them is the code real data needs.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np

from flywheel_core.imagery.cog import write_cog
from flywheel_core.world import paths
from flywheel_core.world.render import SceneLayers
from flywheel_core.world.sentinel2 import S2Scene
from flywheel_core.world.spectra import S2_BANDS, VHR_BANDS
from flywheel_core.world.stac import S2_COLLECTION, VHR_COLLECTION, AssetSpec, SceneRecord
from flywheel_core.world.vhr import render_vhr, vhr_cloud_cover

GENERATOR_VERSION = "2.0.0"
BASELINE_0400 = date(2022, 1, 25)  # processing baseline 04.00 introduced BOA_ADD_OFFSET
QUANTIFICATION = 10_000


def boa_add_offset(day: date) -> int:
    """BOA_ADD_OFFSET of an L2A product acquired on `day` (-1000 from baseline 04.00, else 0)."""
    return -1000 if day >= BASELINE_0400 else 0


def _scene_tags(cell: str, day: date, seed: int) -> dict[str, object]:
    return {
        "FLYWHEEL_CELL": cell,
        "FLYWHEEL_DATE": day.isoformat(),
        "FLYWHEEL_SYNTHETIC": 1,
        "FLYWHEEL_SEED": seed,
        "FLYWHEEL_GENERATOR_VERSION": GENERATOR_VERSION,
    }


def _condition_tags(properties: dict[str, object]) -> dict[str, object]:
    """STAC-style `flywheel:sun_elevation` -> GeoTIFF tag `FLYWHEEL_SUN_ELEVATION`."""
    out = {}
    for key, value in properties.items():
        if key.startswith("flywheel:"):
            text = ",".join(str(v) for v in value) if isinstance(value, list) else value
            out["FLYWHEEL_" + key.split(":", 1)[1].upper()] = text
    return out


def write_vhr_scene(out_dir: Path, layers: SceneLayers) -> tuple[Path, SceneRecord, np.ndarray]:
    """The VHR COG at the settings' GSD; returns its path, its record and the array written."""
    day, seed, gsd = layers.day, layers.settings.seed, layers.settings.gsd_m
    image, g = render_vhr(layers)
    properties = layers.own.properties("vhr")
    path = write_cog(
        paths.vhr_path(out_dir, g.cell, day),
        image,
        epsg=g.epsg,
        transform=g.transform(gsd),
        descriptions=VHR_BANDS,
        tags={
            **_scene_tags(g.cell, day, seed),
            "FLYWHEEL_GSD_M": gsd,
            **_condition_tags(properties),
        },
    )
    rows, cols = g.shape(gsd)
    record = SceneRecord(
        collection=VHR_COLLECTION,
        item_id=f"vhr-{g.cell}-{day.isoformat()}",
        cell=g.cell,
        day=day,
        grid=g,
        gsd=gsd,
        cloud_cover=vhr_cloud_cover(layers),
        assets={
            "image": AssetSpec(
                path,
                "VHR red, green, blue, nir (8-bit)",
                extra={
                    "gsd": gsd,
                    "eo:bands": [{"name": b, "common_name": b} for b in VHR_BANDS],
                    "proj:shape": [rows, cols],
                    "proj:transform": list(g.transform(gsd))[:6],
                },
            )
        },
        extra=properties,
    )
    return path, record, image


def write_s2_scene(
    out_dir: Path, layers: SceneLayers, s2: S2Scene
) -> tuple[list[Path], SceneRecord]:
    g, day, seed = layers.grid, layers.day, layers.settings.seed
    offset = boa_add_offset(day)
    properties = layers.own.properties("s2")
    tags = {
        **_scene_tags(g.cell, day, seed),
        **_condition_tags(properties),
        "BOA_ADD_OFFSET": offset,
        "BOA_QUANTIFICATION_VALUE": QUANTIFICATION,
        "PROCESSING_BASELINE": "04.00" if offset else "03.01",
    }
    written, assets = [], {}
    for band in S2_BANDS:
        dn = np.rint(s2.reflectance[band.name] * QUANTIFICATION) - offset
        path = write_cog(
            paths.s2_band_path(out_dir, g.cell, day, band.name),
            np.clip(dn, 1, 65535).astype(np.uint16),
            epsg=g.epsg,
            transform=g.transform(band.resolution_m),
            descriptions=[band.name],
            tags={**tags, "FLYWHEEL_BAND": band.name},
            nodata=0,
            scales=[1.0 / QUANTIFICATION],
            offsets=[offset / QUANTIFICATION],
        )
        written.append(path)
        assets[band.name] = AssetSpec(
            path,
            f"{band.name} ({band.resolution_m} m)",
            ("data", "reflectance"),
            {
                "gsd": band.resolution_m,
                "eo:bands": [
                    {
                        "name": band.name,
                        "common_name": band.common_name,
                        "center_wavelength": band.center_nm / 1000.0,
                    }
                ],
                "proj:shape": list(g.shape(band.resolution_m)),
                "proj:transform": list(g.transform(band.resolution_m))[:6],
                "raster:bands": [
                    {
                        "nodata": 0,
                        "data_type": "uint16",
                        "scale": 1.0 / QUANTIFICATION,
                        "offset": offset / QUANTIFICATION,
                    }
                ],
            },
        )
    path = write_cog(
        paths.s2_band_path(out_dir, g.cell, day, paths.SCL_BAND),
        s2.scl,
        epsg=g.epsg,
        transform=g.transform(20.0),
        descriptions=[paths.SCL_BAND],
        tags={**_scene_tags(g.cell, day, seed), "FLYWHEEL_BAND": paths.SCL_BAND},
        nodata=0,
        resampling="nearest",
    )
    written.append(path)
    assets[paths.SCL_BAND] = AssetSpec(
        path,
        "Scene classification (20 m)",
        ("data", "classification"),
        {
            "gsd": 20,
            "proj:shape": list(g.shape(20.0)),
            "proj:transform": list(g.transform(20.0))[:6],
        },
    )
    record = SceneRecord(
        collection=S2_COLLECTION,
        item_id=f"s2-{g.cell}-{day.isoformat()}",
        cell=g.cell,
        day=day,
        grid=g,
        gsd=10.0,
        cloud_cover=s2.cloud_cover,
        assets=assets,
        extra={
            **properties,
            "s2:boa_add_offset": offset,
            "s2:processing_baseline": tags["PROCESSING_BASELINE"],
            "platform": "sentinel-2-synthetic",
        },
    )
    return written, record
