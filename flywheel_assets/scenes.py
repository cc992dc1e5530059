"""A partition's scene from the configured imagery source, for the assets that read pixels."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetExecutionContext, Failure

from flywheel_assets.partitions import SETTINGS
from flywheel_core.imagery.sources.find import SceneFiles, scene_files
from flywheel_core.imagery.sources.types import Kind, SourceError
from flywheel_core.partitions import CellDate, window_end
from flywheel_resources.imagery import ImageryResource


def partition_scene(
    context: AssetExecutionContext, imagery: ImageryResource, kind: Kind, part: CellDate
) -> SceneFiles | None:
    """The chosen scene and its files, or None (with a warning) when the source has none.

    A source error (bad settings, unreachable, a corrupt file) fails the run with its one line
    before the asset writes anything.
    """
    end = window_end(part.date, SETTINGS.date_grain)
    try:
        source = imagery.source(kind)
        found = scene_files(source, part.cell, part.date, end, Path(imagery.cache_dir))
    except SourceError as exc:
        raise Failure(str(exc)) from None
    if found is None:
        context.log.warning(
            f"{source.name}: no {kind} scene covers cell {part.cell} in [{part.date}, {end}): "
            "nothing to read"
        )
        return None
    context.log.info(
        f"{source.name} ({kind}): {found.candidates} candidate(s); chose {found.scene_id} "
        f"({found.scene.coverage:.0%} of the cell): {found.choice.reason}"
    )
    return found
