"""Hard-negative candidates: unlabeled chips that look like the model's mistakes.

After a partition's backfill, every detection the rules rejected becomes a query: the chip
containing its centroid. Its k nearest unlabeled chips by embedding (the same search as
`flywheel search`, cosine distance, dated on or before the partition, same dataset and
embedding model; all query chips of a partition go to LanceDB as one batched query, see
`search_many`) are recorded in DuckLake `hard_negatives` as candidates for review and for
the next round's negatives.

Not every rejection is a mistake worth mining. A detection rejected as `already_labeled`
overlaps an active label: the model found something the labels already call PV, so its
look-alikes are positives, not negatives; such detections are skipped by default
(`skip_rules`). The synthetic world's hidden truth is never read here: it is for measuring the
flywheel only, and candidates feed the next round's training data (flywheel_core.train.samples),
so mining from it would leak the answer into training.

Candidate ids are uuid5 over (source prediction, neighbour uid, round). A partition and round are
written in one transaction that replaces the previous candidates of that partition and round:
rows that did not change are left as they are (a re-run writes nothing and makes no snapshot),
rows that changed are replaced keeping their review status, rows no longer found are deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import lancedb

from flywheel_core.embed.schema import EMBEDDINGS_TABLE
from flywheel_core.embed.search import (
    PointNotCoveredError,
    Query,
    SearchError,
    SearchFilters,
    SearchResult,
    and_clauses,
    point_query,
    search_many,
)
from flywheel_core.embed.search_filters import restriction
from flywheel_core.flywheel.acceptance import Detection
from flywheel_core.flywheel.backfill import DecidedDetection
from flywheel_core.labels.ids import NAMESPACE, geometry_key
from flywheel_core.lake.hard_negatives import COLUMNS, record
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.lake.spatial_filters import centroid_lonlat
from flywheel_core.store.lance_tables import partition_filter

log = logging.getLogger(__name__)

__all__ = [
    "COLUMNS",  # re-exported from flywheel_core.lake.hard_negatives, with `record`
    "DEFAULT_K",
    "SKIP_RULES",
    "HardNegativeResult",
    "MiningQuery",
    "candidate_id",
    "hard_negatives",
    "mine",
    "mining_queries",
    "record",
]

CANDIDATE_NAMESPACE = uuid.uuid5(NAMESPACE, "hard_negatives")
DEFAULT_K = 5
# already_labeled: the look-alikes of a labelled object are positives; mask_qa: the rules took
# the detection for PV and only its mask was poor, so its look-alikes are not clear negatives.
SKIP_RULES = ("already_labeled", "mask_qa")
VHR_DATASET = "vhr_chips"  # the flywheel's own chips: what predictions are made on
QUERY_CHIP_MAX_DISTANCE_M = 100.0  # a centroid just outside the chip grid still has a chip


@dataclass(frozen=True)
class MiningQuery:
    detection: Detection
    reason: str  # "rejected: <rule>"


@dataclass(frozen=True)
class HardNegativeResult:
    queries: int  # detections mined
    candidates: int  # rows for this partition and round after the write
    inserted: int
    deleted: int
    unchanged: int
    no_query_chip: int = 0  # detections whose centroid is in no chip of the partition's date
    no_embeddings: bool = False  # the partition has no embeddings: nothing was mined
    trained: bool | None = None  # False when the vectors came from random weights
    reasons: dict[str, int] = field(default_factory=dict)
    snapshot_id: int | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "candidates": self.candidates,
            "inserted": self.inserted,
            "deleted": self.deleted,
            "no_query_chip": self.no_query_chip,
            "no_embeddings": self.no_embeddings,
            "trained_embeddings": self.trained,
            "reasons": self.reasons,
        }


def prediction_key(det: Detection) -> str:
    return f"pred:{det.prediction_id}" if det.prediction_id else f"wkb:{geometry_key(det.geometry)}"


def candidate_id(det: Detection, neighbour_uid: str, round_: int) -> str:
    parts = [prediction_key(det), neighbour_uid, str(int(round_))]
    return str(uuid.uuid5(CANDIDATE_NAMESPACE, "\x1f".join(parts)))


def mining_queries(
    decided: Sequence[DecidedDetection], skip_rules: Sequence[str] = SKIP_RULES
) -> list[MiningQuery]:
    """The detections to mine and why: rejected, but not for a skipped rule."""
    return [
        MiningQuery(d.detection, f"rejected: {d.rule}")
        for d in decided
        if not d.accepted and d.rule not in skip_rules
    ]


def _partition_rows(db: lancedb.DBConnection, cell: str, day: str) -> int:
    if EMBEDDINGS_TABLE not in db.table_names():
        return 0
    return db.open_table(EMBEDDINGS_TABLE).count_rows(
        partition_filter({"dataset": VHR_DATASET, "cell": cell, "date": day})
    )


def _query_chips(
    tbl: Any, queries: Sequence[MiningQuery], day: str
) -> tuple[list[tuple[MiningQuery, Query]], int]:
    """The chip under each detection's centroid, and how many detections have none."""
    # Any cell's chips of the date: a centroid near the cell edge may sit in a neighbour's grid.
    scope = partition_filter({"dataset": VHR_DATASET, "date": day})
    found: list[tuple[MiningQuery, Query]] = []
    missing = 0
    for q in queries:
        cx, cy = centroid_lonlat(q.detection.geometry)  # the right side of ±180
        try:
            chip = point_query(tbl, cx, cy, where=scope, max_distance_m=QUERY_CHIP_MAX_DISTANCE_M)
        except PointNotCoveredError:
            missing += 1
            continue
        except SearchError as exc:  # e.g. the chip's vector is all zeros
            log.warning("no hard negatives for detection %s: %s", q.detection.prediction_id, exc)
            missing += 1
            continue
        assert chip.uid is not None  # point_query answers with a stored chip, which has a uid
        found.append((q, chip))
    return found, missing


def _neighbours(
    db: lancedb.DBConnection,
    con: duckdb.DuckDBPyConnection,
    tbl: Any,
    chips: Sequence[Query],
    *,
    day: str,
    k: int,
) -> dict[str, SearchResult]:
    """Every distinct query chip's k nearest unlabeled chips: ONE batched search per pool.

    A pool is (dataset, embedding model); the flywheel's chips are one pool, so a partition's
    whole mining is one LanceDB query, not one per detection. The unlabeled restriction is
    resolved once per pool too.
    """
    pools: dict[tuple[str, str], dict[str, Query]] = {}
    for chip in chips:
        pools.setdefault((str(chip.dataset), str(chip.model_id)), {})[str(chip.uid)] = chip
    out: dict[str, SearchResult] = {}
    for members in pools.values():
        first = next(iter(members.values()))
        filters = SearchFilters(dataset=first.dataset, until=day, model_id=first.model_id)
        pool = and_clauses(filters.column_clauses())
        unlabeled = restriction(db, tbl, pool, SearchFilters(label_status="unlabeled"), con)
        batch = list(members.values())
        results = search_many(db, batch, k=k, filters=filters, where=unlabeled, opened=tbl)
        out.update({str(c.uid): r for c, r in zip(batch, results, strict=True)})
    return out


def mine(
    db: lancedb.DBConnection,
    con: duckdb.DuckDBPyConnection,
    queries: Sequence[MiningQuery],
    *,
    cell: str,
    date: dt.date,
    round: int,  # the column's name (shadows the builtin here only)
    model_id: str,
    k: int = DEFAULT_K,
    run_id: str | None = None,
) -> tuple[list[dict[str, Any]], int, bool]:
    """(candidate rows, detections without a usable query chip, no_embeddings)."""
    day = date.isoformat()
    if _partition_rows(db, cell, day) == 0:
        return [], 0, True
    tbl = db.open_table(EMBEDDINGS_TABLE)
    pairs, missing = _query_chips(tbl, queries, day)
    found = _neighbours(db, con, tbl, [chip for _, chip in pairs], day=day, k=k)
    rows: list[dict[str, Any]] = []
    created_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for q, chip in pairs:
        for hit in found[str(chip.uid)].hits:
            rows.append(
                {
                    "candidate_id": candidate_id(q.detection, hit.uid, round),
                    "s2_cell": cell,
                    "partition_date": date,
                    "round": int(round),
                    "model_id": model_id,
                    "prediction_id": q.detection.prediction_id,
                    "reason": q.reason,
                    "query_uid": chip.uid,
                    "neighbour_uid": hit.uid,
                    "neighbour_dataset": hit.dataset,
                    "neighbour_cell": hit.cell,
                    "neighbour_date": dt.date.fromisoformat(hit.date),
                    "distance": float(hit.distance),
                    "rank": hit.rank,
                    "embedding_model_id": hit.model_id,
                    "trained": hit.trained,
                    "status": "candidate",
                    "run_id": run_id,
                    "created_at": created_at,
                }
            )
    return rows, missing, False


def hard_negatives(
    db: lancedb.DBConnection,
    con: duckdb.DuckDBPyConnection,
    decided: Sequence[DecidedDetection],
    *,
    cell: str,
    date: dt.date,
    round: int,
    model_id: str,
    k: int = DEFAULT_K,
    skip_rules: Sequence[str] = SKIP_RULES,
    run_id: str | None = None,
) -> HardNegativeResult:
    """Mine and record the partition+round's hard-negative candidates.

    A partition without embeddings records none and says so (`no_embeddings`), leaving earlier
    candidates of the partition and round as they were.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    day = date.date() if isinstance(date, dt.datetime) else date
    queries = mining_queries(decided, skip_rules)
    reasons = Counter(q.reason for q in queries)
    rows: list[dict[str, Any]]
    if not queries:
        rows, missing, empty = [], 0, _partition_rows(db, cell, day.isoformat()) == 0
    else:
        rows, missing, empty = mine(
            db,
            con,
            queries,
            cell=cell,
            date=day,
            round=round,
            model_id=model_id,
            k=k,
            run_id=run_id,
        )
    if empty:
        return HardNegativeResult(
            queries=len(queries),
            candidates=0,
            inserted=0,
            deleted=0,
            unchanged=0,
            no_embeddings=True,
            reasons=dict(reasons),
        )
    inserted, deleted, unchanged = record(con, rows, cell=cell, date=day, round=round)
    trained_flags = {r["trained"] for r in rows}
    log.info(
        "hard negatives %s %s round %d: %d queries, %d candidates (+%d, -%d), %d without a chip",
        cell,
        day,
        round,
        len(queries),
        len(rows),
        inserted,
        deleted,
        missing,
    )
    return HardNegativeResult(
        queries=len(queries),
        candidates=len({r["candidate_id"] for r in rows}),
        inserted=inserted,
        deleted=deleted,
        unchanged=unchanged,
        no_query_chip=missing,
        trained=None if not trained_flags else all(bool(t) for t in trained_flags),
        reasons=dict(reasons),
        snapshot_id=current_snapshot_id(con),
    )
