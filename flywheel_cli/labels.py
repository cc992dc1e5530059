"""`flywheel labels ...` commands."""

from __future__ import annotations

import click


@click.group()
def labels() -> None:
    """(placeholder)"""
