"""Fixtures for the migration runbook's integration tests (helpers in migration_harness.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.neonsim.conftest import neonsim_fleet, neonsim_fleet_module  # noqa: E402, F401


def pytest_configure(config):
    config.addinivalue_line("markers", "neonsim: starts neonsim processes (safe to run in parallel with xdist)")


@pytest.fixture
def report_dir(tmp_path) -> Path:
    return tmp_path / "reports"
