"""The lake the CLI works on, with a configuration error shown as a usage error, not a trace."""

from __future__ import annotations

import click

from flywheel_core.lake.config import LakeConfig, LakeConfigError
from flywheel_core.settings import Settings


def lake_config(settings: Settings | None = None) -> LakeConfig:
    try:
        return LakeConfig.from_settings(settings or Settings.from_env())
    except LakeConfigError as exc:
        raise click.ClickException(str(exc)) from None
