"""Sentinel-2 index values under a geometry, from the stored MSI chips of its partition."""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from shapely import wkb
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.projection import reproject
from flywheel_core.imagery.msi_chips import msi_arrays


def mean_index(
    geometry_lonlat: BaseGeometry, msi_rows: list[dict], name: str = "pvi"
) -> float | None:
    """Mean of an index over the 10 m pixels the geometry touches (valid pixels only)."""
    values: list[np.ndarray] = []
    for row in msi_rows:
        if not wkb.loads(row["footprint"]).intersects(geometry_lonlat):
            continue
        _, idx, _ = msi_arrays(row)
        band = idx[list(row["index_names"]).index(name)]
        valid = (
            np.frombuffer(row["valid"], np.uint8).reshape(row["height"], row["width"]).astype(bool)
        )
        local = reproject(geometry_lonlat, 4326, row["crs"])
        hit = rasterize(
            [(local, 1)],
            out_shape=band.shape,
            transform=Affine(*row["transform"]),
            all_touched=True,
        ).astype(bool)
        values.append(band[hit & valid])
    joined = np.concatenate(values) if values else np.zeros(0)
    return float(joined.mean()) if joined.size else None
