"""The synthetic world as an imagery source: its static STAC catalog, read like local STAC.

`flywheel world generate` writes `catalog.json` with the collections `synthetic-vhr` (one 8-bit
R, G, B, NIR COG per cell and date) and `synthetic-s2-l2a` (one L2A-coded COG per band, with
BOA_ADD_OFFSET in its tags as real L2A products carry it). So this source is the local source on
that catalog with its collection fixed; `root` is the world folder (or its catalog.json), and
chipping reads the world's files as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from flywheel_core.imagery.sources.local import LocalSource
from flywheel_core.imagery.sources.types import Kind, SourceError
from flywheel_core.world.paths import CATALOG_FILE

COLLECTIONS: dict[str, str] = {"vhr": "synthetic-vhr", "msi": "synthetic-s2-l2a"}


class SyntheticSource(LocalSource):
    name = "synthetic"
    kinds: ClassVar[tuple[Kind, ...]] = ("vhr", "msi")
    radiometry_doc = (
        "VHR: 8-bit DN as rendered (R, G, B, NIR); MSI: L2A DN with each band file's "
        "BOA_ADD_OFFSET and BOA_QUANTIFICATION_VALUE tags"
    )

    def __init__(self, kind: Kind, root: str, options: Mapping[str, Any] | None = None) -> None:
        if not root:
            raise SourceError(
                self.name, "no root: give the world folder (`flywheel world generate`)"
            )
        path = Path(root).expanduser()
        catalog = path if path.suffix.lower() == ".json" else path / CATALOG_FILE
        super().__init__(kind, str(catalog), {"collection": COLLECTIONS[kind], **(options or {})})

    @property
    def world_dir(self) -> Path:
        return self.path.parent
