"""H3 ids, kept beside S2 ids so labels and chips join with H3-indexed datasets."""

from __future__ import annotations

import h3


def h3_cell(lon: float, lat: float, resolution: int) -> str:
    return h3.latlng_to_cell(lat, lon, resolution)
