"""Metadata filters of a search, including the two that are not columns of the embedding table.

`split` comes from the `training_data` row of the same uid (chips left out of the training data,
as ambiguous or surplus negatives, have no split and never match). `label_status` is "labeled"
when the chip footprint meets an active DuckLake label installed on or before the chip's date
(undated labels count), as `seed_labels` reads labels, else "unlabeled". Both are resolved into a
uid list, and whichever side is shorter goes into the SQL (`uid IN` or `uid NOT IN`), so the
common "unlabeled" filter costs a list of the few labeled chips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import lancedb
import numpy as np
import pyarrow as pa
import shapely

from flywheel_core.embed.search_queries import SearchError, and_clauses, in_list, read_rows, sql_str
from flywheel_core.lake.label_boxes import active_label_prompts_in_box
from flywheel_core.lake.spatial_filters import box_of, unwrapped
from flywheel_core.train.splits import SPLITS

log = logging.getLogger(__name__)

LABEL_STATUSES = ("labeled", "unlabeled")


TRAINING_TABLE = "training_data"


def _iso(value: str | date | None, name: str) -> str | None:
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, date) else str(value)
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise SearchError(f"{name} must be an ISO date (YYYY-MM-DD), got {text!r}") from exc
    return text


@dataclass(frozen=True)
class SearchFilters:
    """Metadata every hit must match; None means no constraint."""

    cell: str | None = None
    date: str | None = None
    dataset: str | None = None
    split: str | None = None  # train / val / test
    label_status: str | None = None  # labeled / unlabeled
    until: str | None = None  # hits dated on or before (ISO, inclusive)
    model_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "date", _iso(self.date, "date"))
        object.__setattr__(self, "until", _iso(self.until, "until"))
        if self.split is not None and self.split not in SPLITS:
            raise SearchError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.label_status is not None and self.label_status not in LABEL_STATUSES:
            raise SearchError(
                f"label status must be one of {', '.join(LABEL_STATUSES)}, "
                f"got {self.label_status!r}"
            )

    def column_clauses(self) -> list[str]:
        clauses = []
        for column in ("cell", "date", "dataset", "model_id"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = {sql_str(value)}")
        if self.until is not None:
            clauses.append(f"date <= {sql_str(self.until)}")
        return clauses


def labeled_uids(con: duckdb.DuckDBPyConnection, chips: pa.Table) -> set[str]:
    """Uids of `chips` (uid, date, footprint) whose footprint meets an active label dated by then.

    Labels are read once for the chips' overall box (the degree round ±180 for chips either side
    of it, not the globe); an STRtree pairs them with footprints.
    """
    if chips.num_rows == 0:
        return set()
    geoms = shapely.from_wkb(chips.column("footprint").to_numpy(zero_copy_only=False))
    box = box_of(geoms)
    rows = active_label_prompts_in_box(con, box)  # date line aware
    if not rows:
        return set()
    # Across ±180 both sides are compared in one frame where the shapes are connected.
    geoms = unwrapped(geoms, box)
    labels = unwrapped(shapely.from_wkb([r[0] for r in rows]), box)
    installed = [r[1] for r in rows]
    tree = shapely.STRtree(labels)
    chip_idx, label_idx = tree.query(geoms, predicate="intersects")
    uids = chips.column("uid").to_pylist()
    days = [date.fromisoformat(d) for d in chips.column("date").to_pylist()]
    out = set()
    for c, lab in zip(chip_idx.tolist(), label_idx.tolist(), strict=True):
        when = installed[lab]
        if when is None or when <= days[c]:
            out.add(uids[c])
    return out


def _split_uids(db: lancedb.DBConnection, split: str, filters: SearchFilters) -> set[str]:
    if TRAINING_TABLE not in db.table_names():
        raise SearchError(
            f"a split filter needs the {TRAINING_TABLE!r} table: materialize training_data first"
        )
    clauses = [f"split = {sql_str(split)}"]
    for column in ("cell", "date"):
        if getattr(filters, column) is not None:
            clauses.append(f"{column} = {sql_str(getattr(filters, column))}")
    if filters.until is not None:
        clauses.append(f"date <= {sql_str(filters.until)}")
    rows = read_rows(db.open_table(TRAINING_TABLE), and_clauses(clauses), ["uid"])
    return set(rows.column("uid").to_pylist())


def restriction(
    db: lancedb.DBConnection,
    tbl: Any,
    base: str | None,
    filters: SearchFilters,
    lake: duckdb.DuckDBPyConnection | None,
) -> str | None:
    """The uid clause for the split and label-status filters; "FALSE"-like when none qualify."""
    if filters.split is None and filters.label_status is None:
        return None
    if filters.label_status is not None and lake is None:
        raise SearchError("a label-status filter needs a DuckLake connection (the labels)")
    columns = ["uid", "date", "footprint"] if filters.label_status else ["uid"]
    chips = read_rows(tbl, base, columns)
    keep = np.ones(chips.num_rows, dtype=bool)
    uids = chips.column("uid").to_pylist()
    if filters.split is not None:
        in_split = _split_uids(db, filters.split, filters)
        keep &= np.fromiter((u in in_split for u in uids), dtype=bool, count=len(uids))
    if filters.label_status is not None:
        assert lake is not None
        labeled = labeled_uids(lake, chips)
        want = filters.label_status == "labeled"
        keep &= np.fromiter((((u in labeled) == want) for u in uids), bool, count=len(uids))
    allowed = [u for u, k in zip(uids, keep.tolist(), strict=True) if k]
    denied = [u for u, k in zip(uids, keep.tolist(), strict=True) if not k]
    log.debug("filters keep %d of %d candidate chips", len(allowed), len(uids))
    if not allowed:
        return "uid IS NULL"  # uid is never null: nothing qualifies
    if not denied:
        return None
    return (
        in_list("uid", allowed)
        if len(allowed) <= len(denied)
        else in_list("uid", denied, negate=True)
    )
