"""`flywheel cells ...` commands."""

from __future__ import annotations

import click


@click.group()
def cells() -> None:
    """(placeholder)"""
