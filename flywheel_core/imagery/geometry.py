"""Small planar helpers for placing objects in a cell's UTM frame."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

# Sun for every scene: mid-morning, elevation 50°, azimuth 155° (north) / 25° (south). Fixed so
# shadows, like all land cover, stay the same between dates.
SUN_ELEVATION_DEG = 50.0
SUN_AZIMUTH_NORTH_DEG = 155.0


def to_world(geom: BaseGeometry, cx: float, cy: float, angle_deg: float) -> BaseGeometry:
    """Rotate a local-frame geometry about the origin, then move it to (cx, cy)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return affinity.affine_transform(geom, [c, -s, s, c, cx, cy])


def local_north(angle_deg: float, northern: bool) -> int:
    """+1 if local +y faces the pole, else -1 (for a frame rotated by `angle_deg`)."""
    pole_component = math.cos(math.radians(angle_deg))
    return 1 if (pole_component >= 0) == northern else -1


def shadow_vector(height_m: float, northern: bool) -> tuple[float, float]:
    """Ground offset of the shadow of a point `height_m` above ground."""
    length = height_m / math.tan(math.radians(SUN_ELEVATION_DEG))
    azimuth = SUN_AZIMUTH_NORTH_DEG if northern else 180.0 - SUN_AZIMUTH_NORTH_DEG
    away = math.radians(azimuth + 180.0)
    return length * math.sin(away), length * math.cos(away)


def cast_shadow(geom: BaseGeometry, vector: tuple[float, float]) -> BaseGeometry:
    """Ground shadow of a flat-topped prism: hull of footprint and its offset copy, minus it."""
    parts = getattr(geom, "geoms", [geom])
    hulls = [shapely.convex_hull(shapely.union(p, affinity.translate(p, *vector))) for p in parts]
    return shapely.difference(shapely.union_all(hulls), geom)


def blob(
    cx: float, cy: float, radius: float, rng: np.random.Generator, roughness: float = 0.25
) -> Polygon:
    """An irregular round shape (ponds, clouds): a circle with a few random harmonics."""
    theta = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += roughness / k * rng.uniform(0.5, 1.0) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    return Polygon(
        np.column_stack([cx + radius * r * np.cos(theta), cy + radius * r * np.sin(theta)])
    )
