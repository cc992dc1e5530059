"""DuckLake, the system of record: connection, schema migrations and every statement run on it.

Every DuckLake statement lives in this package, one module per table or concern (labels, models,
predictions, backfill, hard_negatives, changes, report, label_boxes, ...); writes go through
`transaction.transaction`, values through `quote` or `?` parameters, and bbox filters through
`spatial_filters` (date-line aware). flywheel_tests/lake/test_sql_boundary.py enforces this.
"""

from flywheel_core.lake.config import LakeConfig, LakeConfigError
from flywheel_core.lake.connection import LakeAttachError, lake_connection, open_lake

__all__ = ["LakeAttachError", "LakeConfig", "LakeConfigError", "lake_connection", "open_lake"]
