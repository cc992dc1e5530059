"""Stable label ids: the same label from the same source always gets the same UUID.

That is what makes a re-import (or an overlapping import) add nothing: ids come from the source's
own id when it has one, else from the geometry rounded to 1e-7 degrees (about 1 cm), normalized
so vertex order and ring start do not matter.
"""

from __future__ import annotations

import hashlib
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


def label_uuids(source: str, source_ids: list[str | None], geometries: np.ndarray) -> list[str]:
    """`label_uuid` for a whole batch: the geometry keys in three vectorized shapely calls.

    Gives exactly the ids `label_uuid` gives one at a time (the tests check), so a file imported
    before and after this batch form gets the same label ids.
    """
    geometries = np.asarray(geometries, dtype=object)
    need = np.array([sid is None for sid in source_ids], dtype=bool)
    keys = np.empty(len(source_ids), dtype=object)
    if need.any():
        rounded = shapely.transform(geometries[need], lambda c: np.round(c, 7) + 0.0)
        keys[need] = shapely.to_wkb(
            shapely.normalize(rounded), hex=True, output_dimension=2, byte_order=1
        )
    prefix = NAMESPACE.bytes + f"{source}\x1f".encode()
    return [
        _uuid5_text(prefix + (f"id:{sid}" if sid is not None else f"wkb:{key}").encode())
        for sid, key in zip(source_ids, keys, strict=True)
    ]


def _uuid5_text(data: bytes) -> str:
    """str(uuid.uuid5(...)) from namespace bytes + name, without building UUID objects."""
    digest = bytearray(hashlib.sha1(data, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
