"""`label_snapshot_sensor`: new or changed labels in DuckLake -> runs of the partitions they touch.

The cursor is the last DuckLake snapshot id the sensor has seen. Each tick reads the `labels`
change feed of snapshots (cursor, latest] (flywheel_core.flywheel.changes), maps every changed
label to its (cell, date) partitions, registers cells Dagster does not know yet as `s2_cells`
dynamic partitions (in the same tick: Dagster applies dynamic-partition requests before it
launches the tick's runs) and requests one run per partition.

Run keys are `labels@<snapshot>:<cell>|<date>`, with the newest snapshot that touched that
partition, so a repeated tick (same cursor, e.g. after a daemon restart) yields the same keys and
Dagster launches nothing twice, while a later label change gets a new key and a new run. The date
of a label is the first partition whose `seed_labels` sees it (see `partition_date_of`).
"""

from __future__ import annotations

from datetime import date

from dagster import (
    AddDynamicPartitionsRequest,
    AssetSelection,
    DefaultSensorStatus,
    MultiPartitionKey,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from flywheel_assets.partitions import S2_CELLS_NAME, SETTINGS, cell_date
from flywheel_core.flywheel.changes import DateOf, labels_changed, partition_date_of
from flywheel_core.geo.s2 import InvalidCellError, parse_token
from flywheel_core.lake.connection import LakeAttachError, lake_connection
from flywheel_resources.ducklake import DuckLakeResource

# What a label change re-materializes: the (cell, date) assets that read labels. The date-only
# model_checkpoint and the predictions after it belong to the next round, started per date.
LABEL_SENSOR_TARGET = AssetSelection.assets("seed_labels", "sam_masks", "training_data")

# A tick must finish well inside Dagster's sensor timeout (60 s by default); a lake held by a
# running job is retried on the next tick instead of waiting here.
LAKE_LOCK_TIMEOUT_S = 15.0


def _date_dimension_last() -> date | None:
    date_def = next(d.partitions_def for d in cell_date.partitions_defs if d.name == "date")
    last = date_def.get_last_partition_key()
    return date.fromisoformat(last) if last else None


def label_date_of() -> DateOf | None:
    """Day -> date partition key, clamped to the partitions that exist now (None: none exist)."""
    last = _date_dimension_last()
    if last is None:
        return None
    return partition_date_of(SETTINGS.start_date, SETTINGS.date_grain, last)


def _valid_cell(token: str) -> bool:
    try:
        parse_token(token, SETTINGS.s2_level)
    except InvalidCellError:
        return False
    return True


def run_key(snapshot_id: int, cell: str, day: str) -> str:
    return f"labels@{snapshot_id}:{cell}|{day}"


@sensor(
    name="label_snapshot_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    target=LABEL_SENSOR_TARGET,
    description=(
        "Watches DuckLake snapshots; new or changed labels request runs of the (cell, date) "
        "partitions they touch and register unknown cells."
    ),
)
def label_snapshot_sensor(
    context: SensorEvaluationContext, ducklake: DuckLakeResource
) -> SensorResult | SkipReason:
    since = int(context.cursor) if context.cursor else None
    date_of = label_date_of()
    if date_of is None:
        return SkipReason(f"no date partitions exist yet (start {SETTINGS.start_date})")
    try:
        with lake_connection(ducklake.config(), lock_timeout_s=LAKE_LOCK_TIMEOUT_S) as con:
            changes = labels_changed(con, since, SETTINGS.s2_level, date_of)
    except LakeAttachError as exc:
        return SkipReason(f"lake unavailable, will retry: {exc}")  # cursor stays put
    cursor = str(changes.snapshot_id)
    partitions = {k: v for k, v in changes.partitions.items() if _valid_cell(k[0])}
    if len(partitions) < len(changes.partitions):
        context.log.warning(
            f"{len(changes.partitions) - len(partitions)} changed partitions skipped: their "
            f"cells are not level-{SETTINGS.s2_level} S2 tokens"
        )
    if not partitions:
        return SensorResult(
            cursor=cursor,
            skip_reason=(
                f"no label changes in snapshots ({since if since is not None else 'start'}, "
                f"{changes.snapshot_id}]"
            ),
        )
    known = set(context.instance.get_dynamic_partitions(S2_CELLS_NAME))
    new_cells = sorted({cell for cell, _ in partitions} - known)
    run_requests = [
        RunRequest(
            run_key=run_key(snapshot, cell, day),
            partition_key=MultiPartitionKey({"cell": cell, "date": day}),
            tags={"flywheel/trigger": "labels", "flywheel/ducklake_snapshot": str(snapshot)},
        )
        for (cell, day), snapshot in sorted(partitions.items())
    ]
    context.log.info(
        f"{changes.n_changes} label row changes ({changes.method}) up to snapshot "
        f"{changes.snapshot_id}: {len(run_requests)} partitions, {len(new_cells)} new cells"
    )
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            [AddDynamicPartitionsRequest(S2_CELLS_NAME, new_cells)] if new_cells else []
        ),
        cursor=cursor,
    )
