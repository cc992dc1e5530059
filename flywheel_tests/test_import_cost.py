"""Loading the code location must not import the heavy stacks (issue 12, point 5).

Every Dagster run, every step subprocess of the multiprocess executor, the daemon and the UI
import `flywheel_assets.definitions`; with torch, lightning and lancedb imported at module level
that cost seconds each time. These tests check WHAT is imported (sys.modules in a fresh
interpreter), never how long it takes: timings live in bench/run_overhead.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each of these costs from a few hundred milliseconds (scipy, geopandas) to seconds (torch,
# lightning, lancedb) to import (python -X importtime, bench/run_overhead.py); only the steps
# that use them import them.
HEAVY = (
    "torch",
    "lightning",
    "torchvision",
    "torchmetrics",
    "transformers",
    "lancedb",
    "lance",
    "geopandas",
    "pandas",
    "scipy",
)

PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_after_import(module: str) -> list[str]:
    code = PROBE.format(module=module, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module",
    [
        "flywheel_assets.definitions",
        "flywheel_resources.lancedb_io",
        "flywheel_assets.masks.config",
    ],
)
def test_loading_the_code_location_imports_no_heavy_stack(module):
    assert _heavy_after_import(module) == []


def test_the_probe_sees_a_heavy_import():
    """The probe itself can fail: a module that does import lancedb is reported."""
    assert "lancedb" in _heavy_after_import("flywheel_core.store.lance_tables")


def test_constants_repeated_for_a_light_import_agree_with_their_source():
    """Config defaults read at load time repeat three constants of heavy modules; they must not
    drift from the values the steps use."""
    from flywheel_assets.embed import assets as embed
    from flywheel_assets.loop import backfill
    from flywheel_assets.masks import config
    from flywheel_core.embed.table import DEFAULT_MIN_ROWS
    from flywheel_core.flywheel.hard_negatives import DEFAULT_K
    from flywheel_core.masks.backends.registry import BACKENDS

    assert embed.DEFAULT_MIN_ROWS == DEFAULT_MIN_ROWS
    assert embed.EmbeddingConfig().min_index_rows == DEFAULT_MIN_ROWS
    assert backfill.DEFAULT_K == DEFAULT_K
    assert backfill.BackfillConfig().hard_negative_k == DEFAULT_K
    assert config.BACKENDS == BACKENDS
