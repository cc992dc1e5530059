"""Stable label ids: the same label from the same source always gets the same UUID.

That is what makes a re-import (or an overlapping import) add nothing: ids come from the source's
own id when it has one, else from the geometry rounded to 1e-7 degrees (about 1 cm), normalized
so vertex order and ring start do not matter.
"""

from __future__ import annotations

import uuid

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://lightning-lance/labels")


def geometry_key(geometry: BaseGeometry) -> str:
    # "+ 0.0" turns -0.0 into 0.0 so both round to the same bytes.
    rounded = shapely.transform(geometry, lambda c: np.round(c, 7) + 0.0)
    return shapely.to_wkb(shapely.normalize(rounded), hex=True, output_dimension=2, byte_order=1)


def label_uuid(source: str, source_id: str | None, geometry: BaseGeometry) -> str:
    key = f"id:{source_id}" if source_id is not None else f"wkb:{geometry_key(geometry)}"
    return str(uuid.uuid5(NAMESPACE, f"{source}\x1f{key}"))
