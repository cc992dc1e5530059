"""UTM choice, metric areas and metric buffers for lon/lat geometries.

Areas are computed on a Lambert azimuthal equal-area projection centred on each geometry: it is
exactly area-preserving, unlike Web Mercator (which inflates areas by sec²(latitude)) and unlike
UTM far from its central meridian.
"""

from __future__ import annotations

from functools import lru_cache

from pyproj import CRS, Transformer
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
