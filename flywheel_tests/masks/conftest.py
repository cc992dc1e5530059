"""Label rows and chips built by hand, in the stored schemas, for prompt and QA tests."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from shapely import wkb
from shapely.geometry import box

from flywheel_core.geo.projection import buffer_m
from flywheel_core.masks.prompts import to_lonlat

GSD = 0.3125
ORIGIN = (691_000.0, 5_335_000.0)  # UTM 32N, near Munich
CRS = "EPSG:32632"


@pytest.fixture
def chip() -> dict:
    t = Affine(GSD, 0, ORIGIN[0], 0, -GSD, ORIGIN[1])
    footprint = to_lonlat(box(0, 0, 256, 256), CRS, t)
    return {
        "chip_id": "c|2024-06-01|r00000c00000",
        "cell": "c",
        "date": "2024-06-01",
        "crs": CRS,
        "transform": list(t)[:6],
        "height": 256,
        "width": 256,
        "footprint": wkb.dumps(footprint),
    }


def label_row(label_id: str, px_geom, chip: dict, point_buffer_m: float = 5.0) -> dict:
    """A label in the DuckLake schema from a pixel-space geometry of `chip`."""
    geom = to_lonlat(px_geom, chip["crs"], Affine(*chip["transform"]))
    is_point = geom.geom_type == "Point"
    prompt = buffer_m(geom, point_buffer_m) if is_point else geom
    x0, y0, x1, y1 = prompt.bounds
    return {
        "label_id": label_id,
        "geometry_type": "point" if is_point else "polygon",
        "geometry": wkb.dumps(geom),
        "prompt_geometry": wkb.dumps(prompt),
        "bbox_xmin": x0,
        "bbox_ymin": y0,
        "bbox_xmax": x1,
        "bbox_ymax": y1,
    }


def scene(panel_px: tuple[int, int, int, int], mono: bool = False) -> np.ndarray:
    """(256, 256, 4) RGBN: grass, a red roof under a panel array with frame lines, noise."""
    rng = np.random.default_rng(0)
    img = np.empty((256, 256, 4), np.float32)
    img[:] = (60, 110, 50, 180)
    img[60:200, 40:220] = (150, 80, 70, 120)  # roof
    x0, y0, x1, y1 = panel_px
    img[y0:y1, x0:x1] = (55, 58, 66, 47) if mono else (57, 70, 82, 45)
    img[y0:y1:4, x0:x1] += 25  # frame lines every ~1.2 m
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
