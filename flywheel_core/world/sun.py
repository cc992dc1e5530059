"""The sun of a scene: where it stands at the overpass, how long shadows are, how bright it is.

Both sensors are imagined on sun-synchronous morning orbits (Sentinel-2 and most VHR satellites
cross at about 10:30 local mean solar time), so the sun of a scene follows from its latitude,
longitude and date: solar declination and the equation of time from Spencer's (1971) Fourier
series, the hour angle at the overpass, then the usual spherical-astronomy elevation and azimuth.
Longitude only sets the overpass in UTC (recorded for information); at a fixed local solar time
the sun's position depends on latitude and date.

Shadows: length = height / tan(elevation), with the elevation floored at 8° so a polar-winter
scene gets long (7x height), not infinite, shadows. Illumination: the VHR scene's brightness
scales with the square root of sin(elevation) relative to a 50° sun (between ~0.4 and ~1.1): a
camera's exposure control takes up part of the change, the rest shows as darker winter scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from pyproj import Transformer

OVERPASS_LOCAL_SOLAR_HOUR = 10.5
SHADOW_ELEVATION_FLOOR_DEG = 8.0
REFERENCE_ELEVATION_DEG = 50.0
ILLUMINATION_RANGE = (0.35, 1.15)


@dataclass(frozen=True)
class Sun:
    elevation_deg: float  # above the horizon (may be below the floor, or negative)
    azimuth_deg: float  # clockwise from true north
    overpass_utc_hour: float

    @property
    def shadow_elevation_deg(self) -> float:
        return max(self.elevation_deg, SHADOW_ELEVATION_FLOOR_DEG)

    @property
    def shadow_length_per_m(self) -> float:
        """Ground length of the shadow of a 1 m tall object."""
        return 1.0 / math.tan(math.radians(self.shadow_elevation_deg))

    @property
    def illumination(self) -> float:
        """Relative scene brightness from the sun's elevation (1 at 50°)."""
        rel = math.sin(math.radians(self.shadow_elevation_deg)) / math.sin(
            math.radians(REFERENCE_ELEVATION_DEG)
        )
        lo, hi = ILLUMINATION_RANGE
        return float(min(hi, max(lo, math.sqrt(rel))))


def _fractional_year(day: date, utc_hour: float) -> float:
    return 2.0 * math.pi / 365.0 * (day.timetuple().tm_yday - 1 + (utc_hour - 12.0) / 24.0)


def declination_deg(day: date, utc_hour: float = 12.0) -> float:
    g = _fractional_year(day, utc_hour)
    rad = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    return math.degrees(rad)


def equation_of_time_min(day: date, utc_hour: float = 12.0) -> float:
    g = _fractional_year(day, utc_hour)
    return 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )


@lru_cache(maxsize=4096)
def sun_at(lon: float, lat: float, day: date, local_hour: float = OVERPASS_LOCAL_SOLAR_HOUR) -> Sun:
    """The sun at `local_hour` local mean solar time on `day` at (lon, lat)."""
    utc_hour = (local_hour - lon / 15.0) % 24.0
    dec = math.radians(declination_deg(day, utc_hour))
    true_solar_hour = local_hour + equation_of_time_min(day, utc_hour) / 60.0
    h = math.radians(15.0 * (true_solar_hour - 12.0))
    phi = math.radians(lat)
    sin_el = math.sin(phi) * math.sin(dec) + math.cos(phi) * math.cos(dec) * math.cos(h)
    el = math.asin(max(-1.0, min(1.0, sin_el)))
    az = math.atan2(
        -math.sin(h) * math.cos(dec),
        math.sin(dec) * math.cos(phi) - math.cos(dec) * math.sin(phi) * math.cos(h),
    )
    return Sun(
        elevation_deg=round(math.degrees(el), 6),
        azimuth_deg=round(math.degrees(az) % 360.0, 6),
        overpass_utc_hour=round(utc_hour, 6),
    )


@lru_cache(maxsize=4096)
def true_north_in_grid_deg(lon: float, lat: float, epsg: int) -> float:
    """Direction of true north at (lon, lat) in a projected grid, clockwise from grid +y."""
    t = Transformer.from_crs(4326, epsg, always_xy=True)
    x0, y0 = t.transform(lon, lat)
    x1, y1 = t.transform(lon, min(lat + 1e-4, 89.9999))
    return math.degrees(math.atan2(x1 - x0, y1 - y0))


def shadow_direction(sun: Sun, north_deg: float = 0.0) -> tuple[float, float]:
    """Grid offset (dx, dy) of the shadow of a point 1 m above the ground.

    `north_deg` is true north's direction in the grid (`true_north_in_grid_deg`).
    """
    away = math.radians(sun.azimuth_deg + 180.0 + north_deg)
    length = sun.shadow_length_per_m
    return length * math.sin(away), length * math.cos(away)
