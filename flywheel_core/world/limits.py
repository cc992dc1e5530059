"""How big a synthetic world may be, checked before anything is laid out or rendered.

A scene takes about a second on two cores and each cell x date is two scenes plus its truth, so
`--cells 1000000` would run for weeks and fill the disk. 400 cells (a 20 x 20 block of level-15
cells, about 5.6 x 5.6 km) and 60 dates (five years of monthly partitions) bound a world at a
day of rendering; a larger study area belongs to real imagery, not to the test world.
"""

from __future__ import annotations

from datetime import date

from flywheel_core.errors import FlywheelError

__all__ = ["MAX_WORLD_CELLS", "MAX_WORLD_DATES", "WorldTooLargeError", "check_world_size"]

MAX_WORLD_CELLS = 400
MAX_WORLD_DATES = 60


class WorldTooLargeError(FlywheelError, ValueError):
    """More cells or dates than a synthetic world may have."""


def check_world_size(n_cells: int, n_dates: int | None = None) -> None:
    """Refuse a world above the documented maximum (see the module docstring for why)."""
    if n_cells > MAX_WORLD_CELLS:
        raise WorldTooLargeError(
            f"{n_cells} cells is more than a synthetic world may have (at most "
            f"{MAX_WORLD_CELLS}, about a day of rendering); generate several smaller worlds "
            "or use real imagery for a larger area"
        )
    if n_dates is not None and n_dates > MAX_WORLD_DATES:
        raise WorldTooLargeError(
            f"{n_dates} dates is more than a synthetic world may have (at most {MAX_WORLD_DATES})"
        )


def dates_outside(
    days: list[date], start: date, grain: str, today: date, end: date | None = None
) -> list[str]:
    """One warning per date that no partition will ever hold (see `check_world_date`)."""
    from flywheel_core.partitions import check_world_date

    return [w for d in days if (w := check_world_date(d, start, grain, today, end))]
