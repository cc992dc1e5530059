"""S2 cell ids, tokens and cell polygons for whole arrays of points at once.

`flywheel_core.geo.s2` answers one point at a time through s2sphere (pure Python, tens of
microseconds a call); a 50,000-label import needs the same answers for every label in well under
a second. This module does the same arithmetic as s2sphere (quadratic projection, Hilbert-curve
lookup table) in numpy, so its cells are bit-for-bit the ones `s2.cell_from_lonlat` returns (the
tests compare them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from s2sphere.sphere import LOOKUP_POS

from flywheel_core.geo.antimeridian import normalize_rings

MAX_LEVEL = 30
_MAX_SIZE = 1 << MAX_LEVEL
_LOOKUP_BITS = 4
_SWAP_MASK = 0x01
_INVERT_MASK = 0x02
_LOOKUP = np.asarray(LOOKUP_POS, dtype=np.int64)


def _face_uv(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    theta, phi = np.radians(lon), np.radians(lat)
    cos_phi = np.cos(phi)
    xyz = np.stack([np.cos(theta) * cos_phi, np.sin(theta) * cos_phi, np.sin(phi)], axis=1)
    axis = np.argmax(np.abs(xyz), axis=1)
    rows = np.arange(len(axis))
    face = np.where(xyz[rows, axis] < 0, axis + 3, axis)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.select(
            [face == 0, face == 1, face == 2, face == 3, face == 4],
            [y / x, -x / y, -x / z, z / x, z / y],
            -y / z,
        )
        v = np.select(
            [face == 0, face == 1, face == 2, face == 3, face == 4],
            [z / x, z / y, -y / z, y / x, -x / y],
            -x / z,
        )
    return face, u, v


def _uv_to_st(u: np.ndarray) -> np.ndarray:
    return np.where(u >= 0, 0.5 * np.sqrt(1 + 3 * np.abs(u)), 1 - 0.5 * np.sqrt(1 + 3 * np.abs(u)))


def _st_to_uv(s: np.ndarray) -> np.ndarray:
    return np.where(s >= 0.5, (4 * s * s - 1) / 3.0, (1 - 4 * (1 - s) * (1 - s)) / 3.0)


def _st_to_ij(s: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(_MAX_SIZE * s), 0, _MAX_SIZE - 1).astype(np.int64)


def leaf_face_ij(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face, i, j) of the leaf cell holding each lon/lat point."""
    face, u, v = _face_uv(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return face.astype(np.int64), _st_to_ij(_uv_to_st(u)), _st_to_ij(_uv_to_st(v))


def cell_ids(face: np.ndarray, i: np.ndarray, j: np.ndarray, level: int) -> np.ndarray:
    """uint64 ids of the level-`level` cells holding leaf coordinates (face, i, j)."""
    n = face.astype(np.uint64) << np.uint64(60)
    bits = face & _SWAP_MASK
    mask = (1 << _LOOKUP_BITS) - 1
    for k in range(7, -1, -1):
        bits = bits + (((i >> (k * _LOOKUP_BITS)) & mask) << (_LOOKUP_BITS + 2))
        bits = bits + (((j >> (k * _LOOKUP_BITS)) & mask) << 2)
        bits = _LOOKUP[bits]
        n |= (bits >> 2).astype(np.uint64) << np.uint64(k * 2 * _LOOKUP_BITS)
        bits = bits & (_SWAP_MASK | _INVERT_MASK)
    leaf = n * np.uint64(2) + np.uint64(1)
    lsb = np.uint64(1 << (2 * (MAX_LEVEL - level)))
    return (leaf & ~(lsb - np.uint64(1))) | lsb


def tokens(ids: np.ndarray) -> np.ndarray:
    """S2 tokens (hex id without trailing zeros) of uint64 ids, as an object array of str."""
    unique, inverse = np.unique(ids, return_inverse=True)
    text = np.array([format(int(v), "016x").rstrip("0") for v in unique], dtype=object)
    return text[inverse]


def cells_from_lonlat(lon: np.ndarray, lat: np.ndarray, level: int) -> np.ndarray:
    """Token of the level-`level` cell holding each point (as `s2.cell_from_lonlat`)."""
    if len(lon) == 0:
        return np.array([], dtype=object)
    face, i, j = leaf_face_ij(lon, lat)
    return tokens(cell_ids(face, i, j, level))


def _uv_to_lonlat(face: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    one = np.ones_like(u)
    x = np.select(
        [face == 0, face == 1, face == 2, face == 3, face == 4], [one, -u, -u, -one, v], v
    )
    y = np.select(
        [face == 0, face == 1, face == 2, face == 3, face == 4], [u, one, -v, -v, -one], u
    )
    z = np.select(
        [face == 0, face == 1, face == 2, face == 3, face == 4], [v, v, one, -u, -u], -one
    )
    lon = np.degrees(np.arctan2(y, x))
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return lon, lat


def cell_polygons(face: np.ndarray, ci: np.ndarray, cj: np.ndarray, level: int) -> np.ndarray:
    """Lon/lat polygons of level cells given by face and level coordinates (ci, cj).

    Vertices in s2sphere's order (SW, SE, NE, NW in (u, v)); a cell on the antimeridian comes
    back as a MultiPolygon split at ±180 (see flywheel_core.geo.antimeridian), never as a
    polygon that spans the globe.
    """
    scale = 1.0 / (1 << level)
    s0, s1 = ci * scale, (ci + 1) * scale
    t0, t1 = cj * scale, (cj + 1) * scale
    us = _st_to_uv(np.stack([s0, s1, s1, s0], axis=1))
    vs = _st_to_uv(np.stack([t0, t0, t1, t1], axis=1))
    lon, lat = _uv_to_lonlat(np.repeat(face, 4).reshape(-1, 4), us, vs)
    ring = np.stack([lon, lat], axis=2)
    return normalize_rings(shapely.polygons(ring))


def _edge_m(level: int) -> float:
    return math.sqrt(4 * math.pi * 6_371_008.8**2 / (6 * 4**level))


# A box whose half-diagonal is under this share of the mean cell edge can only meet the cell of
# its centre and that cell's eight neighbours: the narrowest S2 cell is 0.64 mean edges wide.
_SMALL_SHARE = 0.3


def _small_rows(bounds: np.ndarray, level: int) -> np.ndarray:
    width = bounds[:, 2] - bounds[:, 0]
    lat = np.radians((bounds[:, 1] + bounds[:, 3]) / 2)
    dx = width * 111_320.0 * np.cos(lat)
    dy = (bounds[:, 3] - bounds[:, 1]) * 111_320.0
    return (width >= 0) & (width <= 180) & (np.hypot(dx, dy) / 2 < _SMALL_SHARE * _edge_m(level))


def _neighbourhoods(lon: np.ndarray, lat: np.ndarray, level: int) -> tuple[np.ndarray, ...]:
    """Face and level (i, j) of each point's cell and its 8 neighbours, shape (n, 9)."""
    face, i, j = leaf_face_ij(lon, lat)
    shift = MAX_LEVEL - level
    offsets = np.array([(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)])
    ci = (i >> shift)[:, None] + offsets[:, 0]
    cj = (j >> shift)[:, None] + offsets[:, 1]
    return np.repeat(face[:, None], 9, axis=1), ci, cj


def _hits(
    geometries: np.ndarray,
    bounds: np.ndarray,
    rows: np.ndarray,
    cand: tuple[np.ndarray, ...],
    level: int,
) -> list[tuple[int, str]]:
    """(row, token) for every candidate cell a row's geometry meets, sorted by row and token."""
    face, ci, cj = (a.ravel() for a in cand)
    if rows.size == 0:
        return []
    size = np.int64(1 << level)
    pair_row = np.repeat(rows, cand[0].shape[1])
    keys, inverse = np.unique((face * size + ci) * size + cj, return_inverse=True)
    uface, uci, ucj = keys // (size * size), (keys // size) % size, keys % size
    polygons = cell_polygons(uface, uci, ucj, level)
    shift = MAX_LEVEL - level
    names = tokens(cell_ids(uface, uci << shift, ucj << shift, level))
    rank = np.argsort(np.argsort(names))
    cell_bounds = shapely.bounds(polygons)[inverse]
    row_bounds = bounds[pair_row]
    near = (cell_bounds[:, 2] - cell_bounds[:, 0] > 180) | (
        (cell_bounds[:, 0] <= row_bounds[:, 2])
        & (cell_bounds[:, 2] >= row_bounds[:, 0])
        & (cell_bounds[:, 1] <= row_bounds[:, 3])
        & (cell_bounds[:, 3] >= row_bounds[:, 1])
    )
    pick = np.flatnonzero(near)
    meets = shapely.intersects(geometries[pair_row[pick]], polygons[inverse[pick]])
    pick = pick[meets]
    order = np.lexsort((rank[inverse[pick]], pair_row[pick]))
    pick = pick[order]
    return list(zip(pair_row[pick].tolist(), names[inverse[pick]].tolist(), strict=True))


def coverings(
    geometries: np.ndarray, level: int, fallback: Callable[[Any, int], list[str]]
) -> list[list[str]]:
    """Tokens of every level cell each geometry meets (as `s2.covering`, for many at once).

    A geometry small next to a cell is tested against the 3 × 3 cells around its bbox centre in
    one vectorized intersects call; a large one, one on a face edge, or one split at ±180 goes to
    `fallback(geometry, level)` (the exact one-at-a-time covering).
    """
    geometries = np.asarray(geometries, dtype=object)
    result: list[list[str]] = [[] for _ in range(len(geometries))]
    if len(geometries) == 0:
        return result
    bounds = shapely.bounds(geometries)
    small = _small_rows(bounds, level)
    rows = np.flatnonzero(small)
    centre_lon = (bounds[rows, 0] + bounds[rows, 2]) / 2
    centre_lat = (bounds[rows, 1] + bounds[rows, 3]) / 2
    face, ci, cj = _neighbourhoods(centre_lon, centre_lat, level)
    inside = ((ci >= 0) & (ci < (1 << level)) & (cj >= 0) & (cj < (1 << level))).all(axis=1)
    small[rows[~inside]] = False
    rows = rows[inside]
    for row, token in _hits(
        geometries, bounds, rows, (face[inside], ci[inside], cj[inside]), level
    ):
        result[row].append(token)
    own = cells_from_lonlat(centre_lon[inside], centre_lat[inside], level)
    for row, token in zip(rows.tolist(), own, strict=True):
        if not result[row]:  # a sliver that meets no cell polygon: its centre's cell
            result[row] = [token]
    for k in np.flatnonzero(~small):
        result[k] = list(fallback(geometries[k], level))
    return result
