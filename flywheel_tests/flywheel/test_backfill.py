from __future__ import annotations

import json
from datetime import date

import geopandas as gpd
import pytest
import shapely

from flywheel_core.flywheel import backfill as backfill_mod
from flywheel_core.flywheel.acceptance import AcceptanceRules
from flywheel_core.flywheel.backfill import backfill, partition_metrics
from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.lake import backfill as lake_backfill
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id
from flywheel_tests.flywheel.conftest import H3_RES, S2_LEVEL, import_seeds
from flywheel_tests.flywheel.shapes import LAT, LON, at, box_m, square

CELL = cell_from_lonlat(LON, LAT, S2_LEVEL)
DAY = date(2024, 6, 1)
SEED = square(0, 0, 10)


def _det(pid, geometry, score, msi=-0.7):
    return {
        "prediction_id": pid,
        "geometry": shapely.to_wkb(geometry),
        "score": score,
        "area_m2": None,
        "msi_pvi": msi,
    }


DETECTIONS = [
    _det("p-dup", square(0.5, 0, 10), 0.9),  # the seed label, slightly shifted
    _det("p-good1", box_m(30, 0, 50, 10), 0.95),
    _det("p-good2", square(80, 0, 12), 0.8, None),  # no MSI evidence
    _det("p-low", square(0, 40, 10), 0.3),
    _det("p-water", square(40, 40, 10), 0.9, -1.0),
    _det("p-twin", box_m(30.5, 0, 50.5, 10), 0.85),  # same as p-good1, lower score
]


def _run(con, detections=DETECTIONS, **kw):
    args = {
        "cell": CELL,
        "date": DAY,
        "round": 1,
        "model_id": "unet-r1",
        "rules": AcceptanceRules(),
        "run_id": "run-1",
        "s2_level": S2_LEVEL,
        "h3_resolution": H3_RES,
    }
    args.update(kw)
    return backfill(con, detections, **args)


def _count(con, sql):
    return con.execute(sql).fetchone()[0]


def test_backfill_writes_accepted_labels_and_logs_every_decision(lake, tmp_path):
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 5, 1)])
        before = current_snapshot_id(con)
        result = _run(con)
        assert (result.n_detections, result.accepted, result.inserted) == (6, 2, 2)
        assert result.rejected == {"already_labeled": 2, "msi_pvi": 1, "score": 1}
        assert result.already_present == 0 and result.logged == 6
        assert result.snapshot_id == before + 1  # one transaction, one snapshot
        assert CELL in result.new_cells
        rows = con.execute(
            "SELECT source, source_kind, source_id, model_id, round, confidence, status, "
            "geometry_type, geometry = prompt_geometry, install_date, s2_level, s2_cells, "
            "h3_cell, area_m2, bbox_xmin < bbox_xmax, import_id "
            "FROM labels WHERE source_kind = 'model' ORDER BY confidence DESC"
        ).fetchall()
        assert [r[2] for r in rows] == ["p-good1", "p-good2"]
        for r in rows:
            assert r[:2] == ("model", "model") and r[3:5] == ("unet-r1", 1)
            assert r[6:9] == ("active", "polygon", True)
            assert r[9] is None and r[10] == S2_LEVEL and CELL in r[11]
            assert len(r[12]) == 15 and r[14] and r[15] is None
        assert [r[5] for r in rows] == [0.95, 0.8]
        assert rows[0][13] == pytest.approx(200, rel=5e-3)
        # Rejected detections exist only in the log, with their reasons and numbers.
        log = con.execute(
            "SELECT decision, reason, metrics, s2_cell, partition_date, round, model_id, run_id, "
            "snapshot_id FROM backfill_log ORDER BY reason"
        ).fetchall()
        assert len(log) == 6
        assert {r[0] for r in log} == {"accepted", "rejected"}
        assert all(r[3:9] == (CELL, DAY, 1, "unet-r1", "run-1", before) for r in log)
        by_pred = {json.loads(r[2])["prediction_id"]: r for r in log}
        assert by_pred["p-low"][1] == "score: 0.300 < min_score 0.6"
        assert by_pred["p-water"][1].startswith("msi_pvi: water-like, -1.000")
        assert by_pred["p-twin"][1].startswith("already labeled")  # by p-good1, same batch
        assert "seeds" not in by_pred["p-dup"][1]  # names the label id, not the file
        metrics = json.loads(by_pred["p-good1"][2])
        assert metrics["label_id"] in result.label_ids and metrics["score"] == 0.95
        assert _count(con, "SELECT count(*) FROM labels") == 3


def test_rerun_inserts_nothing_and_logs_nothing(lake, tmp_path):
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 5, 1)])
        first = _run(con)
        log_before = con.execute("SELECT * FROM backfill_log ORDER BY log_id").fetchall()
        snapshot = current_snapshot_id(con)
        again = _run(con, list(reversed(DETECTIONS)), run_id="run-2")  # any order
        assert (again.accepted, again.inserted, again.already_present, again.logged) == (2, 0, 2, 0)
        assert again.rejected == first.rejected and again.label_ids == first.label_ids
        assert again.snapshot_id == snapshot
        assert con.execute("SELECT * FROM backfill_log ORDER BY log_id").fetchall() == log_before
        assert _count(con, "SELECT count(*) FROM labels") == 3
        # Another round is another proposal: new ids, though the seed still blocks p-dup.
        other = _run(con, DETECTIONS[:2], round=2)
        assert (other.accepted, other.inserted, other.logged) == (0, 0, 2)
        assert other.rejected == {"already_labeled": 2}  # p-good1's round-1 label blocks it


def test_retracted_label_is_not_resurrected(lake, tmp_path):
    with lake_connection(lake) as con:
        first = _run(con, DETECTIONS[1:2])
        con.execute(
            "UPDATE labels SET status = 'retracted' WHERE label_id = ?", [first.label_ids[0]]
        )
        again = _run(con, DETECTIONS[1:2])
        assert (again.accepted, again.inserted, again.already_present) == (1, 0, 1)
        assert _count(con, "SELECT count(*) FROM labels WHERE status = 'active'") == 0


def test_backfill_is_one_transaction(lake, tmp_path, monkeypatch):
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 5, 1)])
        before = current_snapshot_id(con)
        seen = []

        def fail(con_, rows):
            seen.append(_count(con_, "SELECT count(*) FROM labels"))  # labels are in by now
            raise RuntimeError("disk full (simulated)")

        monkeypatch.setattr(lake_backfill, "_insert_log", fail)
        with pytest.raises(RuntimeError, match="simulated"):
            _run(con)
        assert seen == [3]
        assert _count(con, "SELECT count(*) FROM labels") == 1
        assert _count(con, "SELECT count(*) FROM backfill_log") == 0
        assert current_snapshot_id(con) == before
        monkeypatch.undo()
        assert _run(con).inserted == 2  # the connection is usable after the rollback


def test_empty_batch_and_stable_ids(lake):
    with lake_connection(lake) as con:
        empty = _run(con, [])
        assert (empty.n_detections, empty.inserted, empty.logged) == (0, 0, 0)
        poly = box_m(30, 0, 50, 10)
        # Same polygon, other start vertex and orientation: same label.
        ring = list(poly.exterior.coords)[:-1][::-1]
        reordered = shapely.Polygon(ring[1:] + ring[:1])
        assert list(reordered.exterior.coords) != list(poly.exterior.coords)
        assert shapely.normalize(reordered).equals(shapely.normalize(poly))
        a = _run(con, [_det("x", poly, 0.9)])
        b = _run(con, [_det("x", reordered, 0.9)])
        assert a.label_ids == b.label_ids and b.inserted == 0


def test_partition_metrics_against_labels_and_truth(lake, tmp_path):
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 5, 1)])
        _run(con)
        dets = DETECTIONS[:3]  # p-dup (matches the seed), p-good1, p-good2
        m = partition_metrics(con, dets, cell=CELL, date=DAY, exclude_model_id="unet-r1")
        labels = m["labels"]
        assert (labels.n_pred, labels.n_ref, labels.tp) == (3, 1, 1)
        assert labels.recall == 1.0 and labels.precision == pytest.approx(1 / 3)
        # Without excluding the model, its own labels count as references.
        assert partition_metrics(con, dets, cell=CELL, date=DAY)["labels"].tp == 3
        truth = gpd.GeoDataFrame(
            {"install_date": [date(2020, 1, 1), date(2024, 1, 1), date(2025, 1, 1)]},
            geometry=[SEED, box_m(30, 0, 50, 10), square(80, 0, 12)],
            crs=4326,
        )
        m = partition_metrics(con, dets, cell=CELL, date=DAY, truth=truth)["truth"]
        assert (m.n_ref, m.tp, m.fp) == (2, 2, 1)  # the 2025 install is not built yet
        assert json.dumps(m.as_dict())


def test_invalid_detection_is_repaired_before_it_becomes_a_label(lake):
    a, b = at(0, 0), at(20, 20)
    c, d = at(20, 0), at(0, 20)
    bowtie = shapely.Polygon([a, b, c, d])  # self-intersecting
    assert not bowtie.is_valid
    with lake_connection(lake) as con:
        result = _run(con, [_det("bow", bowtie, 0.9)])
        assert result.inserted == 1
        (wkb,) = con.execute("SELECT geometry FROM labels").fetchone()
        stored = shapely.from_wkb(wkb)
        assert stored.is_valid and stored.geom_type == "MultiPolygon"


def test_accepted_detections_are_confirmed_by_the_mask_factory(lake, tmp_path):
    tight = box_m(31, 1, 49, 9)  # what the mask factory made of p-good1

    def refine(accepted):
        out = []
        for det in accepted:
            if det.prediction_id == "p-good1":
                out.append(backfill_mod.Refinement(True, tight, "accepted", {"backend": "fake"}))
            else:
                out.append(backfill_mod.Refinement(False, None, "empty mask", {"backend": "fake"}))
        return out

    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 5, 1)])
        result = _run(con, refine=refine)
        assert result.accepted == 1 and result.rejected["mask_qa"] == 1
        assert result.reasons["mask_qa: empty mask"] == 1
        geom, props = con.execute(
            "SELECT geometry, properties FROM labels WHERE source_kind = 'model'"
        ).fetchone()
        props = json.loads(props)
        assert shapely.from_wkb(geom).equals_exact(tight, 1e-9)  # the label is the mask
        detection = shapely.from_wkb(bytes.fromhex(props["detection_geometry"]))
        assert detection.equals_exact(box_m(30, 0, 50, 10), 1e-9)  # the model's polygon kept
        assert props["geometry_from"] == "mask" and props["mask"] == {"backend": "fake"}
        logged = con.execute(
            "SELECT reason FROM backfill_log WHERE decision = 'rejected' AND reason LIKE 'mask%'"
        ).fetchall()
        assert logged == [("mask_qa: empty mask",)]


def test_a_refined_footprint_below_the_minimum_area_is_no_label(lake, tmp_path):
    # The model's outline passes the area rule, but the mask factory finds only a collector's
    # worth of panel inside it: the label would be that footprint, so the rule holds for it too.
    speck = box_m(31, 1, 33, 3)  # 4 m²

    def refine(accepted):
        return [
            backfill_mod.Refinement(True, speck, "accepted", {"mask_area_m2": 4.0})
            for _ in accepted
        ]

    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 5, 1)])
        result = _run(con, refine=refine, rules=AcceptanceRules(min_area_m2=10.0))
        assert result.accepted == 0 and result.rejected["mask_qa"] >= 1
        reasons = [r for r in result.reasons if r.startswith("mask_qa")]
        assert reasons and all("refined footprint 4.0 m² < min_area_m2 10" in r for r in reasons)
        assert _count(con, "SELECT count(*) FROM labels WHERE source_kind = 'model'") == 0


def test_the_calibration_sets_the_bounds_and_every_decision_records_them(lake, tmp_path):
    from flywheel_core.flywheel.calibration import Calibration, Threshold

    calibration = Calibration(
        as_of=DAY.isoformat(),
        lance_version=3,
        thresholds={
            "min_score": Threshold(0.9, "F0.5-optimal on validation chips", 0.6),
            "min_vhr_pv_score": Threshold(None, "rule off", None),
            "max_water_pvi": Threshold(-0.97, "halfway", -0.95),
        },
    )
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [SEED], [date(2023, 5, 1)])
        result = _run(con, rules=None, calibration=calibration)
        # p-good2 (0.8), p-twin (0.85) and p-low fall under the calibrated 0.9 (the default 0.6
        # keeps the first two)
        assert result.accepted == 1 and result.rejected["score"] == 3
        metrics = [
            json.loads(m) for (m,) in con.execute("SELECT metrics FROM backfill_log").fetchall()
        ]
        assert {m["thresholds"]["calibration"] for m in metrics} == {calibration.digest}
        assert {m["thresholds"]["min_score"] for m in metrics} == {0.9}
        (props,) = con.execute(
            "SELECT properties FROM labels WHERE source_kind = 'model'"
        ).fetchone()
        assert json.loads(props)["calibration"] == calibration.digest


def test_a_label_across_the_date_line_is_found_for_a_detection_beside_it(lake, tmp_path):
    """A seed label crossing ±180 is stored with bbox_xmin > bbox_xmax; a detection of the same
    panel just east of the line is `already_labeled` (before: the plain bbox filter missed the
    label, and the panel was labelled twice)."""
    across = shapely.Polygon(
        [(179.9997, -16.0), (-179.9997, -16.0), (-179.9997, -15.9997), (179.9997, -15.9997)]
    )
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [across], [date(2023, 5, 1)])
        xmin, xmax = con.execute("SELECT bbox_xmin, bbox_xmax FROM labels").fetchone()
        assert xmin > xmax  # the stored convention for a box across the line
        east_part = shapely.box(179.9998, -15.9999, 179.99995, -15.9998)
        cell = cell_from_lonlat(179.9999, -15.99985, S2_LEVEL)
        result = _run(con, [_det("p-east", east_part, 0.95)], cell=cell)
        assert (result.accepted, result.rejected) == (0, {"already_labeled": 1})


def test_a_detection_ring_across_the_date_line_is_split_like_a_label(lake, tmp_path):
    """A detection whose raw ring jumps across ±180 is decided as the 20 m shape it is: not
    against a label on its latitude at lon 0, and against a label inside its part east of the
    line (before: as a globe-wide band, which met the first and missed the second)."""
    raw = shapely.Polygon(
        [(179.9999, -15.9999), (-179.9999, -15.9999), (-179.9999, -15.9998), (179.9999, -15.9998)]
    )
    greenwich = shapely.box(0.0, -15.9999, 0.0001, -15.9998)
    east_strip = shapely.box(179.99992, -15.99988, 179.99998, -15.99982)  # inside raw, lon > 0
    cell = cell_from_lonlat(179.99995, -15.99985, S2_LEVEL)
    with lake_connection(lake) as con:
        import_seeds(con, tmp_path, [greenwich], [date(2023, 5, 1)], "greenwich")
        alone = _run(con, [_det("p-raw", raw, 0.95)], cell=cell)
        assert alone.accepted == 1, alone.reasons
        xmin, xmax, lon = con.execute(
            "SELECT bbox_xmin, bbox_xmax, centroid_lon FROM labels WHERE source_kind = 'model'"
        ).fetchone()
        assert xmin > xmax and abs(abs(lon) - 180.0) < 1e-3
        con.execute("UPDATE labels SET status = 'retracted' WHERE source_kind = 'model'")
        import_seeds(con, tmp_path, [east_strip], [date(2023, 5, 1)], "east")
        again = _run(con, [_det("p-raw2", raw, 0.9)], cell=cell, round=2)
        assert again.rejected == {"already_labeled": 1}
