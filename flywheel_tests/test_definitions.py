"""A snapshot of the whole code location, as users see it in the UI and CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, MultiPartitionsDefinition

from flywheel_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_assets_and_checks_snapshot():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "seed_labels",
        "vhr_chips",
        "msi_chips",
        "sam_masks",
        "training_data",
        "model_checkpoint",
        "predictions",
        "validated_backfill",
        "dinov3_embeddings",
    }
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == {
        ("vhr_chips", "chips_inside_cell"),
        ("vhr_chips", "crs_consistent"),
        ("vhr_chips", "no_nan_in_bands"),
        ("msi_chips", "no_nan_in_bands"),
        ("msi_chips", "cloud_fraction_reported"),
        ("msi_chips", "aligned_to_vhr"),
        ("msi_chips", "crs_consistent"),
        ("sam_masks", "acceptance_rate"),
        ("training_data", "split_by_block"),
        ("dinov3_embeddings", "coverage"),
        ("dinov3_embeddings", "no_nan_vectors"),
        ("dinov3_embeddings", "no_zero_vectors"),
        ("dinov3_embeddings", "duplicate_vectors"),
    }
    assert graph.get(AssetKey("msi_chips")).parent_keys == {AssetKey("vhr_chips")}
    assert graph.get(AssetKey("sam_masks")).parent_keys == {
        AssetKey("vhr_chips"),
        AssetKey("seed_labels"),
    }
    assert graph.get(AssetKey("training_data")).parent_keys == {
        AssetKey("vhr_chips"),
        AssetKey("msi_chips"),
        AssetKey("sam_masks"),
    }
    assert graph.get(AssetKey("dinov3_embeddings")).parent_keys == {AssetKey("vhr_chips")}


def test_gpu_bound_assets_share_the_gpu_pool():
    graph = defs.resolve_asset_graph()
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys()}
    gpu_bound = ("sam_masks", "model_checkpoint", "predictions", "dinov3_embeddings")
    assert all(pools[name] == {"gpu"} for name in gpu_bound)
    assert not pools["vhr_chips"]


def test_every_asset_but_the_model_is_partitioned_by_cell_and_date():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        pdef = graph.get(key).partitions_def
        if key == AssetKey("model_checkpoint"):  # one training round per date
            assert not isinstance(pdef, MultiPartitionsDefinition)
            assert pdef.get_partition_keys()[0] == "2024-01-01"
            continue
        assert isinstance(pdef, MultiPartitionsDefinition)
        assert [d.name for d in pdef.partitions_defs] == ["cell", "date"]


def test_the_date_assets_read_every_cell_of_their_date():
    from dagster import MultiToSingleDimensionPartitionMapping

    graph = defs.resolve_asset_graph()
    for child, parent in (
        ("model_checkpoint", "training_data"),
        ("predictions", "model_checkpoint"),
    ):
        mapping = graph.get_partition_mapping(AssetKey(child), AssetKey(parent))
        assert isinstance(mapping, MultiToSingleDimensionPartitionMapping), (child, mapping)
        assert mapping.partition_dimension_name == "date"


def test_the_code_location_loads_without_warnings():
    """No beta, preview or deprecation warning when Dagster loads the definitions (they print at
    every load of the code location and in every run's step process)."""
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    import flywheel_assets.definitions\n"
        "for w in seen:\n"
        "    print(type(w.message).__name__, w.filename, w.message)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "", out.stdout


def test_label_sensor_is_registered():
    assert [s.name for s in defs.sensors] == ["label_snapshot_sensor"]


@pytest.mark.slow
def test_dagster_definitions_validate(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "definitions",
            "validate",
            "-m",
            "flywheel_assets.definitions",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_instance_monitors_run_workers_and_frees_their_slots(tmp_path):
    """The project's dagster.yaml: a dead run worker is detected and its pool slots freed."""
    import shutil

    from dagster import DagsterInstance

    from flywheel_assets.run_launcher import LocalRunLauncher

    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_monitoring_enabled
        assert isinstance(instance.run_launcher, LocalRunLauncher)
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert 0 < instance.run_monitoring_settings["free_slots_after_run_end_seconds"] <= 60
        assert 0 < instance.run_monitoring_poll_interval_seconds <= 30


def test_runs_execute_in_process_by_default():
    from flywheel_assets.executor import in_process_or_multiprocess_executor

    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def is in_process_or_multiprocess_executor
    assert job.executor_def.config_schema.as_field().default_value == {"in_process": {}}


def _executor_message(tmp_path, *config: str) -> str:
    """The executor's engine event of a real `dagster asset materialize` run of two assets."""
    from dagster import DagsterEventType, DagsterInstance

    home = tmp_path / "home"
    home.mkdir(parents=True)
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "flywheel_tests.executor_location",
            "--select",
            "first,second",
            *config,
        ],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert instance.get_run_by_id(run.run_id).is_success
        messages = [
            r.user_message
            for r in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
        ]
    return "\n".join(messages)


@pytest.mark.slow
def test_a_run_executes_its_steps_in_process_unless_its_config_asks(tmp_path):
    """The default runs steps in the run's process; the launchpad's (or -c) run config can still
    choose one subprocess per step."""
    default = _executor_message(tmp_path / "default")
    assert "Executing steps in process" in default
    assert "multiprocess executor" not in default
    config = tmp_path / "run.yaml"
    config.write_text("execution:\n  config:\n    multiprocess:\n      max_concurrent: 2\n")
    multi = _executor_message(tmp_path / "multi", "-c", str(config))
    assert "Executing steps using multiprocess executor" in multi
