"""DuckLake, the system of record: connection, schema migrations and label reads/writes."""

from flywheel_core.lake.config import LakeConfig, LakeConfigError
from flywheel_core.lake.connection import LakeAttachError, lake_connection, open_lake

__all__ = ["LakeAttachError", "LakeConfig", "LakeConfigError", "lake_connection", "open_lake"]
