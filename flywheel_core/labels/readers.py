"""Read any label file into a GeoDataFrame in EPSG:4326.

GeoParquet goes through geopandas (it carries its CRS in the Parquet metadata); everything else
(GeoJSON, GeoPackage, Shapefile, zipped Shapefile, FlatGeobuf...) through pyogrio/GDAL.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from pyproj import CRS

from flywheel_core.labels.errors import LabelFileError

_PARQUET_SUFFIXES = (".parquet", ".geoparquet", ".pq")
# Share of geometries that must lie in lon/lat range before a CRS-less file is taken as lon/lat.
_LONLAT_SHARE = 0.9


def read_frame(path: Path, layer: str | None = None) -> gpd.GeoDataFrame:
    if not path.exists():
        raise LabelFileError(f"{path}: no such file")
    if path.is_dir():
        raise LabelFileError(f"{path} is a folder; give the label file itself")
    try:
        if path.suffix.lower() in _PARQUET_SUFFIXES:
            return gpd.read_parquet(path)
        if layer is None:
            layer = _only_layer(path)
        return pyogrio.read_dataframe(path, layer=layer)
    except LabelFileError:
        raise
    except Exception as exc:
        raise LabelFileError(f"{path.name} is not a readable label file: {exc}") from exc


def _only_layer(path: Path) -> str | None:
    layers = pyogrio.list_layers(path)
    spatial = [str(name) for name, geometry_type in layers if geometry_type is not None]
    if len(spatial) > 1:
        raise LabelFileError(
            f"{path.name} has {len(spatial)} layers ({', '.join(spatial)}); choose one with --layer"
        )
    return spatial[0] if spatial else None


def _lonlat_share(geometries: gpd.GeoSeries) -> float:
    bounds = shapely.bounds(np.asarray(geometries.values))
    usable = np.isfinite(bounds).all(axis=1)
    if not usable.any():
        return 1.0
    b = bounds[usable]
    inside = (b[:, 0] >= -180) & (b[:, 2] <= 180) & (b[:, 1] >= -90) & (b[:, 3] <= 90)
    return float(inside.mean())


def to_wgs84(frame: gpd.GeoDataFrame, name: str, warnings: list[str]) -> gpd.GeoDataFrame:
    """Reproject to EPSG:4326; a CRS-less file is accepted only if it is plainly lon/lat."""
    if frame.crs is None:
        if _lonlat_share(frame.geometry) < _LONLAT_SHARE:
            xmin, ymin, xmax, ymax = frame.geometry.total_bounds
            raise LabelFileError(
                f"{name} has no CRS and its coordinates (x {xmin:.6g}..{xmax:.6g}, "
                f"y {ymin:.6g}..{ymax:.6g}) are not longitude/latitude; add the CRS to the file "
                "(e.g. a .prj next to a shapefile) and import again"
            )
        message = f"{name} has no CRS; its coordinates look like lon/lat, assuming EPSG:4326"
        warnings.append(message)
        return frame.set_crs(4326)
    if CRS.from_user_input(frame.crs).equals(CRS.from_epsg(4326)):
        return frame
    return frame.to_crs(4326)
