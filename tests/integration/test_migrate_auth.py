"""End to end with JWT auth on every node, as in production: the runbook authenticates to each service with the
inventory's tokens, and no token shows up in the playbook's output (even at -vvv), its report or its state files."""

from __future__ import annotations

import pytest
from migration_harness import (
    locations,
    migrate,
    plain_tenants,
    tenant_id,
    topology,
    verdict,
    wait_for_writes,
)

pytestmark = pytest.mark.neonsim


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    tenants, computes = plain_tenants("guarded")
    sim = neonsim_fleet_module({**topology(tenants, computes), "auth": True})
    wait_for_writes(sim, "c-guarded")
    return sim


def test_move_with_auth_keeps_every_token_out_of_output_and_files(fleet, report_dir):
    tid = tenant_id(fleet, "guarded")
    tokens = {service: token for service, token in fleet.tokens.items() if token}
    assert {"pageserver", "safekeeper", "storcon", "compute"} <= set(tokens)

    run = migrate(fleet, tid, "ps1", "ps2", report_dir, ansible_args=["-vvv"])

    assert run.rc == 0, run
    assert locations(fleet, "ps2")[tid]["mode"] == "AttachedSingle"
    assert verdict(fleet, "c-guarded")["verified"]["lost_writes"] == 0
    written = [p for p in report_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in written), written
    for service, token in tokens.items():
        assert token not in run.output, f"the {service} token appears in the playbook output"
        # Any fragment long enough to be useful to an attacker counts too (the signature part of the JWT).
        assert token.rsplit(".", 1)[-1] not in run.output, f"the {service} token's signature appears in the output"
        for path in written:
            assert token not in path.read_text(errors="replace"), f"the {service} token appears in {path}"
