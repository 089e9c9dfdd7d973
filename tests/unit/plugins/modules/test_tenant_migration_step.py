"""tenant_migration_step: the tenant id is checked in every phase, before any file or request (issue 9).

The lock file of a run is <state_dir>/<tenant_id>.lock in every phase, and only begin validated the id: a later
phase given another tenant_id (``../x``) would have read, rewritten or removed a file outside state_dir. The
phases themselves are tested end to end in tests/integration (tenant migration against neonsim).
"""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import tenant_migration_step
from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID


@pytest.mark.parametrize("phase", ["begin", "catchup", "end"])
@pytest.mark.parametrize(
    "tenant_id",
    ["../../escape", TENANT_ID + "\n", TENANT_ID + "/..", "\uff11" * 32, TENANT_ID[:31]],
    ids=["traversal", "newline", "slash", "fullwidth", "short"],
)
def test_a_bad_tenant_id_is_refused_in_every_phase_before_any_file(tmp_path, run_module, phase, tenant_id):
    state, report = tmp_path / "state", tmp_path / "report"
    state.mkdir()
    report.mkdir()
    run = run_module(
        tenant_migration_step,
        {"phase": phase, "tenant_id": tenant_id, "run_id": "r1", "state_dir": str(state), "report_dir": str(report)},
    )
    assert run.failed and run["msg"].startswith("tenant_id: "), run["msg"]
    assert "Traceback" not in run.raw
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["report", "state"], "a file was written"
