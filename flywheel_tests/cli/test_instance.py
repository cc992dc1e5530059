"""The CLI's Dagster instance: the project's dagster.yaml, and a warning for one made before it."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from flywheel_cli.instance import ensure_dagster_home

PROJECT_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def test_a_new_home_gets_the_project_config_with_run_monitoring(tmp_path, monkeypatch):
    monkeypatch.chdir(PROJECT_YAML.parent)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = ensure_dagster_home()
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_launcher"]["class"] == "LocalRunLauncher"


def test_an_old_home_without_run_monitoring_is_warned_about(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(PROJECT_YAML.parent)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with caplog.at_level(logging.WARNING, logger="flywheel_cli.instance"):
        ensure_dagster_home()
    assert any("run_monitoring" in r.getMessage() for r in caplog.records)
    # The user's file is never overwritten.
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_a_home_made_from_another_folder_still_gets_the_project_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == PROJECT_YAML.read_text()
