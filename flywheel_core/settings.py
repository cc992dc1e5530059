"""Project-wide settings, read from the environment.

One place decides where data lives and how the world is indexed, so the CLI, the Dagster code
location and the tests cannot disagree. Every value can be overridden with a `FLYWHEEL_*`
environment variable; nothing here is a secret (secrets are read where they are used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class ChipSettings:
    """How a VHR scene is cut into chips."""

    size_px: int = 256
    overlap_px: int = 0
    gsd_m: float | None = None  # None: keep the scene's native ground sample distance

    def __post_init__(self) -> None:
        if self.size_px <= 0:
            raise ValueError(f"chip size must be positive, got {self.size_px}")
        if not 0 <= self.overlap_px < self.size_px:
            raise ValueError(
                f"chip overlap must be in [0, size), got {self.overlap_px} for size {self.size_px}"
            )
        if self.gsd_m is not None and self.gsd_m <= 0:
            raise ValueError(f"chip GSD must be positive, got {self.gsd_m}")


def _optional_date(text: str) -> date | None:
    return None if text.strip().lower() in ("", "none") else date.fromisoformat(text)


@dataclass(frozen=True)
class Settings:
    """Where data lives and how partitions are indexed."""

    data_dir: Path = Path("data")
    lancedb_uri: str = "data/lancedb"
    lake_catalog: str = "duckdb:data/lake/catalog.ducklake"
    lake_data_path: str = "data/lake/files"
    world_dir: Path = Path("data/world")
    s2_level: int = 15
    h3_resolution: int = 11
    date_grain: str = "monthly"
    # The date dimension: [start_date, end_date). Set the end where the imagery ends, so the UI's
    # fill bar and partition list show the dates that have imagery; None (the default, or
    # FLYWHEEL_END_DATE=none): open, up to the last window that has ended
    start_date: date = date(2024, 1, 1)
    end_date: date | None = None
    chips: ChipSettings = field(default_factory=ChipSettings)
    split_level: int | None = None  # S2 level of train/val/test blocks; None: one below the cells

    @property
    def model_cache_dir(self) -> Path:
        """Where registered models' checkpoints are cached locally (`train.checkpoints`)."""
        return self.data_dir / "cache" / "models"

    @property
    def split_block_level(self) -> int:
        return self.split_level if self.split_level is not None else min(self.s2_level + 1, 30)

    def __post_init__(self) -> None:
        if not 1 <= self.s2_level <= 30:
            raise ValueError(f"S2 level must be in 1..30, got {self.s2_level}")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"H3 resolution must be in 0..15, got {self.h3_resolution}")
        if self.end_date is not None and self.end_date <= self.start_date:
            raise ValueError(
                f"FLYWHEEL_END_DATE ({self.end_date}) must be after FLYWHEEL_START_DATE "
                f"({self.start_date})"
            )
        if self.date_grain not in ("daily", "weekly", "monthly"):
            raise ValueError(
                f"date grain must be daily, weekly or monthly, got {self.date_grain!r}"
            )

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("FLYWHEEL_DATA_DIR", "data"))
        gsd = os.environ.get("FLYWHEEL_CHIP_GSD_M")
        return cls(
            data_dir=data_dir,
            lancedb_uri=_env("FLYWHEEL_LANCEDB_URI", str(data_dir / "lancedb")),
            lake_catalog=_env(
                "FLYWHEEL_LAKE_CATALOG", f"duckdb:{data_dir / 'lake' / 'catalog.ducklake'}"
            ),
            lake_data_path=_env("FLYWHEEL_LAKE_DATA_PATH", str(data_dir / "lake" / "files")),
            world_dir=Path(_env("FLYWHEEL_WORLD_DIR", str(data_dir / "world"))),
            s2_level=int(_env("FLYWHEEL_S2_LEVEL", "15")),
            h3_resolution=int(_env("FLYWHEEL_H3_RESOLUTION", "11")),
            date_grain=_env("FLYWHEEL_DATE_GRAIN", "monthly"),
            start_date=date.fromisoformat(_env("FLYWHEEL_START_DATE", "2024-01-01")),
            end_date=_optional_date(_env("FLYWHEEL_END_DATE", "none")),
            chips=ChipSettings(
                size_px=int(_env("FLYWHEEL_CHIP_SIZE", "256")),
                overlap_px=int(_env("FLYWHEEL_CHIP_OVERLAP", "0")),
                gsd_m=float(gsd) if gsd else None,
            ),
            split_level=int(split) if (split := os.environ.get("FLYWHEEL_SPLIT_LEVEL")) else None,
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
