"""The Dagster instance the CLI talks to.

Dynamic partitions live in the instance, so registering cells needs a persistent DAGSTER_HOME;
without one the CLI uses ./data/dagster_home (the one `make dev` serves) instead of a throwaway.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from dagster import DagsterInstance

from flywheel_core.settings import Settings

log = logging.getLogger(__name__)


def _project_yaml() -> Path:
    """The project's dagster.yaml: the one in the working folder, else the checkout's own."""
    here = Path("dagster.yaml")
    return here if here.exists() else Path(__file__).resolve().parents[1] / "dagster.yaml"


def ensure_dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str((Settings.from_env().data_dir / "dagster_home").resolve())
        os.environ["DAGSTER_HOME"] = home
        log.info("DAGSTER_HOME is not set; using %s", home)
    path = Path(home)
    path.mkdir(parents=True, exist_ok=True)
    project_yaml = _project_yaml()
    instance_yaml = path / "dagster.yaml"
    if not instance_yaml.exists() and project_yaml.exists():
        shutil.copy(project_yaml, instance_yaml)
    elif instance_yaml.exists() and "run_monitoring" not in instance_yaml.read_text():
        # An instance made before run monitoring: a killed run would keep its pool slots.
        log.warning(
            "%s has no run_monitoring: a killed run can keep the gpu pool claimed; "
            "copy the project's dagster.yaml there (or merge its run_launcher and "
            "run_monitoring blocks)",
            instance_yaml,
        )
    return path


def get_instance() -> DagsterInstance:
    ensure_dagster_home()
    return DagsterInstance.get()
