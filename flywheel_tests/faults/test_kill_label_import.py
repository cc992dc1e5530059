"""`kill -9` at each stage of `flywheel labels import`, and three imports of one file at once.

After each kill the lake must open with every table readable and hold the file's labels all or
not at all (with its label_imports row exactly when the labels are there); the re-run must leave
exactly the labels a clean import leaves in another folder. Three concurrent imports of the same
new file must leave each label once.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from flywheel_tests.faults.labels_helpers import (
    import_args,
    lake_env,
    lake_state,
    run_import,
    write_label_file,
)

pytestmark = pytest.mark.slow

N = 300
BEFORE_COMMIT = ["labels.import.parsed", "labels.import.appended", "labels.import.before_commit"]


def test_killed_imports_leave_all_or_nothing_and_rerun_matches_clean(tmp_path):
    path = write_label_file(tmp_path / "new_panels.geojson", N)
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    done = run_import(path, clean)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = lake_state(clean)
    assert expected["labels"].num_rows == N and expected["label_imports"].num_rows == 1
    for point in BEFORE_COMMIT:
        killed = run_import(path, faulty, fault=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        if (faulty / "lake" / "catalog.ducklake").exists():
            state = lake_state(faulty)
            assert state["labels"].num_rows == 0, f"{point}: labels committed by a killed import"
            assert state["label_imports"].num_rows == 0, point
    killed = run_import(path, faulty, fault="labels.import.after_commit")
    assert killed.returncode == -signal.SIGKILL
    assert lake_state(faulty)["labels"].num_rows == N, "the committed import was lost"
    again = run_import(path, faulty)  # the re-run: the same file is recognised, nothing added
    assert again.returncode == 0 and "already imported" in again.stdout, again.stdout
    state = lake_state(faulty)
    assert state["labels"].equals(expected["labels"])
    assert state["label_imports"].num_rows == 1


def test_three_concurrent_imports_of_one_new_file_add_each_label_once(tmp_path):
    path = write_label_file(tmp_path / "new_panels.geojson", N)
    env = lake_env(tmp_path / "lake3")
    procs = [
        subprocess.Popen(import_args(path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    state = lake_state(tmp_path / "lake3")
    assert state["labels"].num_rows == N
    assert len(set(state["labels"].column("label_id").to_pylist())) == N
    assert state["label_imports"].num_rows == 1
    said = b"".join(out for out, _ in outs).decode()
    assert said.count("inserted 300") == 1 and said.count("already imported") == 2, said
