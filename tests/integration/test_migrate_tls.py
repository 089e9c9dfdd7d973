"""End to end over HTTPS (neonsim TLS mode, contracts §5.6): every service's API is served with a certificate from a
private CA. The modules trust it through `ca_path`; the runbook moves a tenant when given the inventory's
`neon_ca_path` as `tenant_migration_ca_path`, and without it fails on certificate verification having changed nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from migration_harness import (
    MIGRATION_TOPOLOGY,
    ansible_env,
    locations,
    migrate,
    plain_tenants,
    tenant_id,
    topology,
    verdict,
    wait_for_writes_then_pause,
)

pytestmark = pytest.mark.neonsim

CERTIFICATE_ERROR = "certificate verify failed"


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    tenants, computes = plain_tenants("sealed")
    # Two pageservers are enough for one move; fewer processes on the 2-core machine.
    pageservers = [ps for ps in MIGRATION_TOPOLOGY["pageservers"] if ps["name"] in ("ps1", "ps2")]
    sim = neonsim_fleet_module({**topology(tenants, computes), "pageservers": pageservers}, tls=True)
    wait_for_writes_then_pause(sim)
    return sim


def inventory_ca_path(fleet) -> str:
    return yaml.safe_load(fleet.inventory_path.read_text())["all"]["vars"]["neon_ca_path"]


def adhoc(module: str, args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    ansible = str(Path(sys.executable).parent / "ansible")
    return subprocess.run(
        [ansible, "localhost", "-m", module, "-a", args],
        env=ansible_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_modules_trust_the_fleet_ca_through_ca_path(fleet, tmp_path):
    api_url = fleet.url("ps1")
    assert api_url.startswith("https://")
    ca_path = inventory_ca_path(fleet)

    trusted = adhoc("neonops.storage.pageserver_info", f"api_url={api_url} ca_path={ca_path}", tmp_path)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert '"node_id": 1' in trusted.stdout

    untrusted = adhoc("neonops.storage.pageserver_info", f"api_url={api_url} retries=0", tmp_path)
    assert untrusted.returncode != 0
    assert CERTIFICATE_ERROR in (untrusted.stdout + untrusted.stderr).lower(), untrusted.stdout + untrusted.stderr


def test_move_without_the_ca_fails_on_certificate_verification(fleet, report_dir):
    tid = tenant_id(fleet, "sealed")
    before = locations(fleet, "ps1")[tid]

    run = migrate(fleet, tid, "ps1", "ps2", report_dir)

    assert run.rc != 0, run
    assert CERTIFICATE_ERROR in run.output.lower(), run
    # It failed on its first call, before touching any pageserver.
    assert locations(fleet, "ps1")[tid] == before
    assert tid not in locations(fleet, "ps2")
    verdict(fleet, "c-sealed")  # stop the workload the run started


def test_move_over_https_with_the_ca(fleet, report_dir):
    tid = tenant_id(fleet, "sealed")

    run = migrate(fleet, tid, "ps1", "ps2", report_dir, tenant_migration_ca_path=inventory_ca_path(fleet))

    assert run.rc == 0, run
    assert CERTIFICATE_ERROR not in run.output.lower()
    assert locations(fleet, "ps2")[tid]["mode"] == "AttachedSingle"
    assert run.report["outcome"] == "migrated"
    assert verdict(fleet, "c-sealed")["verified"]["lost_writes"] == 0
