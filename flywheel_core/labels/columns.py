"""Find and parse the attribute columns that label datasets name in many different ways.

Consolidated public PV datasets call the same thing `id`, `FID` or `OBJECTID`, give install dates
as dates or bare years, and areas in m², km² or hectares; this module maps them onto the label
schema and leaves every other attribute to the `properties` JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from json.encoder import encode_basestring_ascii as _encode_str
from typing import Any

import numpy as np
import pandas as pd

from flywheel_core.labels.errors import LabelFileError

ID_COLUMNS = ("source_id", "id", "fid", "uid", "objectid")
# "install_da" is "install_date" after a shapefile's 10-character field-name limit.
DATE_COLUMNS = (
    "install_date",
    "installation_date",
    "install_da",
    "install_year",
    "installation_year",
    "date",
    "year",
)
DOI_COLUMNS = ("doi",)
# Area column names, in order of preference, with the factor that turns their unit into m².
AREA_COLUMNS: tuple[tuple[str, float], ...] = (
    ("area_m2", 1.0),
    ("area_sqm", 1.0),
    ("area_sq_m", 1.0),
    ("area_km2", 1e6),
    ("area_sqkm", 1e6),
    ("area_sq_km", 1e6),
    ("area_ha", 1e4),
    ("area", 1.0),
)
_YEAR = re.compile(r"^\s*(\d{4})(?:\.0+)?\s*$")


def find_column(columns: Iterable[str], candidates: Sequence[str]) -> str | None:
    """First column whose name matches a candidate (case-insensitive, in candidate order)."""
    by_lower = {c.lower(): c for c in columns}
    for candidate in candidates:
        if candidate in by_lower:
            return by_lower[candidate]
    return None


def require_column(columns: Sequence[str], name: str, option: str) -> str:
    found = find_column(columns, [name.lower()])
    if found is None:
        raise LabelFileError(
            f"{option} {name!r} is not a column of the file; columns: {', '.join(columns)}"
        )
    return found


def area_column(columns: Sequence[str]) -> tuple[str, float] | None:
    by_lower = {c.lower(): c for c in columns}
    for name, factor in AREA_COLUMNS:
        if name in by_lower:
            return by_lower[name], factor
    return None


def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def id_value(value: Any) -> str | None:
    """A source id as text: 17.0 becomes '17', blanks become None."""
    if _missing(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value).strip()


def date_value(value: Any) -> date | None:
    """An install date from a date, a timestamp, a year (→ 1 January) or a date string."""
    if _missing(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float | np.integer | np.floating):
        year = float(value)
        return date(int(year), 1, 1) if year.is_integer() and 1800 <= year <= 2200 else None
    text = str(value).strip()
    match = _YEAR.match(text)
    if match:
        return date(int(match.group(1)), 1, 1)
    parsed = pd.to_datetime(text, errors="coerce")
    return None if pd.isna(parsed) else parsed.date()


def area_value(value: Any, factor: float) -> float | None:
    if _missing(value):
        return None
    try:
        area = float(value) * factor
    except (TypeError, ValueError):
        return None
    return area if math.isfinite(area) and area >= 0 else None


def _jsonable(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def properties_json(record: dict[str, Any]) -> str:
    return json.dumps({str(k): _jsonable(v) for k, v in record.items()}, sort_keys=True)


def _fragments(values: pd.Series) -> list[str]:
    """Each value as `properties_json` would write it, a whole column at a time."""
    kind = values.dtype.kind
    items = values.tolist()
    if kind in "iu":
        return [str(v) for v in items]
    if kind == "b":
        return ["true" if v else "false" for v in items]
    if kind == "f":
        return ["null" if v != v else json.dumps(v) for v in items]
    out = []
    for v in items:
        if isinstance(v, str):
            out.append(_encode_str(v) if v.strip() else "null")
        else:
            out.append(json.dumps(_jsonable(v)))
    return out


def properties_column(attributes: pd.DataFrame, exclude: set[str]) -> list[str]:
    """`properties_json` of every row of `attributes` minus `exclude`, built column by column.

    Same text as calling `properties_json` per row (keys sorted, same separators; the tests
    compare them), without a Python dict and a json.dumps per label.
    """
    names = sorted((str(c), c) for c in attributes.columns if c not in exclude)
    if not names:
        return ["{}"] * len(attributes)
    keys = [_encode_str(text) + ": " for text, _ in names]
    columns = [_fragments(attributes[c]) for _, c in names]
    return [
        "{" + ", ".join(k + v for k, v in zip(keys, row, strict=True)) + "}"
        for row in zip(*columns, strict=True)
    ]
