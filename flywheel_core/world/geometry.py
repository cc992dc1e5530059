"""Small planar helpers for placing objects in a cell's UTM frame."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry


def to_world(geom: BaseGeometry, cx: float, cy: float, angle_deg: float) -> BaseGeometry:
    """Rotate a local-frame geometry about the origin, then move it to (cx, cy)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return affinity.affine_transform(geom, [c, -s, s, c, cx, cy])


def local_north(angle_deg: float, northern: bool) -> int:
    """+1 if local +y faces the pole, else -1 (for a frame rotated by `angle_deg`)."""
    pole_component = math.cos(math.radians(angle_deg))
    return 1 if (pole_component >= 0) == northern else -1


def cast_shadows(
    geoms: Sequence[BaseGeometry], heights: Sequence[float], direction: tuple[float, float]
) -> np.ndarray:
    """Ground shadows of flat-topped convex prisms, all at once (shapely's vectorised ops).

    Each shadow is the hull of the footprint and its copy moved by height x `direction` (the
    grid offset per metre of height, `sun.shadow_direction`), minus the footprint itself.
    """
    parts, index = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
    if len(parts) == 0:
        return np.empty(0, dtype=object)
    h = np.asarray(heights, dtype=np.float64)[index]
    coords, owner = shapely.get_coordinates(parts, return_index=True)
    moved = coords + np.column_stack([h * direction[0], h * direction[1]])[owner]
    both = np.concatenate([coords, moved])
    hull_of = np.concatenate([owner, owner])
    order = np.argsort(hull_of, kind="stable")
    points = shapely.multipoints(both[order], indices=hull_of[order])
    return shapely.difference(shapely.convex_hull(points), parts)


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
