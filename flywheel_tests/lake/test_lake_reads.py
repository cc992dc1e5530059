"""The small lake reads moved behind flywheel_core/lake/ (report, CLI, round loop): each against a
real DuckLake with rows that must be counted and rows that must not."""

from __future__ import annotations

import json
from datetime import date, datetime

from flywheel_core.lake.backfill import existing_ids, model_decisions
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.hard_negatives import COLUMNS, count_for_date, record
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_core.lake.report import active_label_cells, active_label_count, active_labels_as_of
from flywheel_tests.flywheel.conftest import S2_LEVEL, import_seeds
from flywheel_tests.flywheel.shapes import square

DAY = date(2024, 6, 1)


def _log(con, log_id: str, model_id: str, decision: str, rule: str | None) -> None:
    con.execute(
        "INSERT INTO backfill_log (log_id, model_id, decision, metrics) VALUES (?, ?, ?, ?)",
        [log_id, model_id, decision, json.dumps({"rule": rule})],
    )


def _candidate(i: int, day: date) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(
        candidate_id=f"c{i}",
        s2_cell="cell",
        partition_date=day,
        round=1,
        neighbour_uid=f"n{i}",
        reason="rejected: area",
        query_uid=f"q{i}",
        distance=0.1 * i,
        status="candidate",
        created_at=datetime(2024, 6, 2),
    )
    return row


def test_label_reads(lake, tmp_path):
    with lake_connection(lake) as con:
        shapes = [square(0, 0, 10), square(500, 0, 10), square(0, 900, 10)]
        import_seeds(con, tmp_path, shapes, [date(2024, 1, 1), date(2024, 9, 1), None])
        con.execute("UPDATE labels SET status = 'retracted' WHERE source_id = 'seeds-2'")
        assert active_label_count(con) == 2
        by_day = active_labels_as_of(con, DAY)
        assert [r["source_kind"] for r in by_day] == ["seed"]  # the September one is not yet
        assert set(by_day[0]) == {"label_id", "source_kind", "geometry"}
        cells = active_label_cells(con, S2_LEVEL)
        assert cells == sorted(set(cells)) and len(cells) >= 1
        assert active_label_cells(con, S2_LEVEL + 1) == []  # indexed at another level
        ids = [r[0] for r in con.execute("SELECT label_id FROM labels").fetchall()]
        assert existing_ids(con, "labels", "label_id", [*ids[:2], "nope"]) == set(ids[:2])
        assert existing_ids(con, "labels", "label_id", []) == set()


def test_decisions_and_candidate_counts(lake):
    with lake_connection(lake) as con:
        _log(con, "1", "m1", "accepted", None)
        _log(con, "2", "m1", "rejected", "area")
        _log(con, "3", "m1", "rejected", "area")
        _log(con, "4", "m1", "rejected", "msi")
        _log(con, "5", "m2", "rejected", "area")
        assert model_decisions(con, "m1") == (1, {"area": 2, "msi": 1})
        assert model_decisions(con, "none") == (0, {})
        assert record(con, [_candidate(1, DAY), _candidate(2, DAY)], cell="cell", date=DAY, round=1)
        record(con, [_candidate(3, date(2024, 7, 1))], cell="cell", date=date(2024, 7, 1), round=1)
        assert count_for_date(con, DAY) == 2
        before = current_snapshot_id(con)
        again = record(
            con, [_candidate(1, DAY), _candidate(2, DAY)], cell="cell", date=DAY, round=1
        )
        assert again == (0, 0, 2) and current_snapshot_id(con) == before  # a no-op: no snapshot
        assert count_for_date(con, date(2023, 1, 1)) == 0


def test_round_report_reads_the_round_back_from_the_lake(lake, tmp_path):
    """`flywheel rounds`' report, now built on these reads, counts this round's labels, model,
    decisions and candidates and nothing of other models or dates."""
    import geopandas as gpd

    from flywheel_core.flywheel.report import round_report
    from flywheel_core.geo.s2 import cell_from_lonlat
    from flywheel_core.lake.models import register_model, registry_name

    panels = [square(0, 0, 10), square(500, 0, 10)]
    truth = gpd.GeoDataFrame(
        {"install_date": ["2024-01-01", "2024-01-01"]}, geometry=panels, crs=4326
    )
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, panels[:1], [date(2024, 1, 1)])
        model = {"model_id": "m1", "name": registry_name(DAY.isoformat()), "round": 1}
        register_model(con, {**model, "status": "ready", "metrics": {"test/iou": 0.7}})
        _log(con, "1", "m1", "accepted", None)
        _log(con, "2", "m1", "rejected", "area")
        _log(con, "3", "other", "rejected", "msi")
        record(con, [_candidate(1, DAY)], cell="cell", date=DAY, round=1)
        cells = sorted({cell_from_lonlat(p.centroid.x, p.centroid.y, S2_LEVEL) for p in panels})
        report = round_report(con, truth, cells, DAY, 1)
    assert report.labels_by_source == {"seed": 1}
    assert (report.accepted, report.rejected, report.hard_negatives) == (1, {"area": 1}, 1)
    assert report.test_iou == 0.7
    assert report.installations == 2 and report.recall == 0.5 and report.precision == 1.0
