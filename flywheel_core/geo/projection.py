"""UTM choice, metric areas and metric buffers for lon/lat geometries.

Areas are computed on a Lambert azimuthal equal-area projection centred on each geometry: it is
exactly area-preserving, unlike Web Mercator (which inflates areas by sec²(latitude)) and unlike
UTM far from its central meridian.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform

WGS84 = CRS.from_epsg(4326)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone containing the point (WGS84 datum, N or S)."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    # Norway and Svalbard exceptions of the UTM grid.
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        zone = 32
    if 72.0 <= lat < 84.0:
        for lo, hi, z in ((0.0, 9.0, 31), (9.0, 21.0, 33), (21.0, 33.0, 35), (33.0, 42.0, 37)):
            if lo <= lon < hi:
                zone = z
    return (32600 if lat >= 0 else 32700) + zone


@lru_cache(maxsize=256)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def reproject(geometry: BaseGeometry, src: str | int, dst: str | int) -> BaseGeometry:
    """Reproject a shapely geometry between any two CRSs (x/y order always lon/lat first)."""
    s, d = _crs_key(src), _crs_key(dst)
    if s == d:
        return geometry
    return transform(_transformer(s, d).transform, geometry)


def _crs_key(crs: str | int) -> str:
    return f"EPSG:{crs}" if isinstance(crs, int) else str(crs)


def _laea(lon: float, lat: float) -> str:
    return f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs"


def area_m2(geometry_lonlat: BaseGeometry) -> float:
    """Area in m² of a lon/lat geometry, on an equal-area projection centred on it."""
    if geometry_lonlat.is_empty:
        return 0.0
    c = geometry_lonlat.centroid
    return float(reproject(geometry_lonlat, 4326, _laea(c.x, c.y)).area)


def buffer_m(geometry_lonlat: BaseGeometry, metres: float) -> BaseGeometry:
    """Buffer a lon/lat geometry by a distance in metres (computed in a local metric CRS)."""
    c = geometry_lonlat.centroid
    local = _laea(c.x, c.y)
    return reproject(reproject(geometry_lonlat, 4326, local).buffer(metres), local, 4326)


# WGS84 and its authalic sphere: mapping geodetic latitude to authalic latitude is equal-area, so
# a Lambert azimuthal equal-area projection of the authalic sphere preserves ellipsoidal areas.
_A = 6_378_137.0
_E2 = 6.69437999014e-3
_E = math.sqrt(_E2)


def _q(sin_phi: np.ndarray) -> np.ndarray:
    es = _E * sin_phi
    return (1 - _E2) * (sin_phi / (1 - es * es) - np.log((1 - es) / (1 + es)) / (2 * _E))


_QP = float(_q(np.array(1.0)))
_RQ = _A * math.sqrt(_QP / 2)


def _authalic(lat_deg: np.ndarray) -> np.ndarray:
    return np.arcsin(np.clip(_q(np.sin(np.radians(lat_deg))) / _QP, -1.0, 1.0))


def areas_m2(geometries: np.ndarray, centre_lon: np.ndarray, centre_lat: np.ndarray) -> np.ndarray:
    """Areas in m² of many lon/lat geometries, each on an equal-area projection at its centre.

    The vectorized form of `area_m2` (one numpy pass instead of one pyproj transformer per
    geometry); longitudes enter only through sin/cos of their offset from the centre, so a shape
    unwrapped past 180 or split at ±180 measures the same.
    """
    geometries = np.asarray(geometries, dtype=object)
    if geometries.size == 0:
        return np.zeros(0)
    coords, index = shapely.get_coordinates(geometries, return_index=True)
    lam = np.radians(coords[:, 0] - np.asarray(centre_lon, dtype=float)[index])
    beta = _authalic(coords[:, 1])
    beta0 = _authalic(np.asarray(centre_lat, dtype=float))[index]
    cos_b, sin_b, cos_b0, sin_b0 = np.cos(beta), np.sin(beta), np.cos(beta0), np.sin(beta0)
    k = np.sqrt(2.0 / np.maximum(1.0 + sin_b0 * sin_b + cos_b0 * cos_b * np.cos(lam), 1e-12))
    x = _RQ * k * cos_b * np.sin(lam)
    y = _RQ * k * (cos_b0 * sin_b - sin_b0 * cos_b * np.cos(lam))
    projected = shapely.set_coordinates(geometries.copy(), np.column_stack([x, y]))
    return np.asarray(shapely.area(projected), dtype=float)


_GEOD = Geod(ellps="WGS84")


def point_buffers_m(
    lon: np.ndarray, lat: np.ndarray, metres: float, segments: int = 32
) -> np.ndarray:
    """Geodesic circles of `metres` radius around many points, as lon/lat polygons.

    The vectorized form of `buffer_m` for points: every vertex is a geodesic forward step on the
    WGS84 ellipsoid, so the circle is round on the ground at any latitude. Circles that reach
    over lon ±180 come back with their longitudes folded into [-180, 180] (a ring that jumps
    across the line; see flywheel_core.geo.antimeridian).
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    if lon.size == 0:
        return np.array([], dtype=object)
    azimuths = np.linspace(0.0, 360.0, segments, endpoint=False)
    n = lon.size
    lons, lats, _ = _GEOD.fwd(
        np.repeat(lon, segments),
        np.repeat(lat, segments),
        np.tile(azimuths, n),
        np.full(n * segments, float(metres)),
    )
    ring = np.stack(
        [np.asarray(lons).reshape(n, segments), np.asarray(lats).reshape(n, segments)], axis=2
    )
    return shapely.polygons(ring[:, ::-1, :])  # counter-clockwise
