"""Entry point of the `flywheel` console script; each command group lives in its own module."""

from __future__ import annotations

import logging

import click

from flywheel_cli.cells import cells
from flywheel_cli.demo import demo
from flywheel_cli.labels import labels
from flywheel_cli.world import world


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def cli(verbose: bool) -> None:
    """Lightning Lance: the PV segmentation data flywheel."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


cli.add_command(cells)
cli.add_command(demo)
cli.add_command(labels)
cli.add_command(world)
