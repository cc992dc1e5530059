"""Materialization metadata helpers: previews saved to disk and inlined for the Dagster UI."""

from __future__ import annotations

from pathlib import Path

from dagster import MetadataValue
from PIL import Image

from flywheel_core.partitions import CellDate
from flywheel_core.preview import markdown_image, save


def preview_metadata(
    img: Image.Image, previews_dir: str, asset: str, part: CellDate
) -> dict[str, MetadataValue]:
    path = save(img, Path(previews_dir) / asset / f"{part.cell}_{part.date.isoformat()}.png")
    return {
        "preview": MetadataValue.md(markdown_image(img, f"{asset} {part.key}")),
        "preview_path": MetadataValue.path(str(path.resolve())),
    }
