"""Preflight refusals that need their own fleet layout, and the role's connection options reaching the engine."""

from __future__ import annotations

import time

import pytest
from migration_harness import (
    locations,
    migrate,
    mutating_requests,
    plain_tenants,
    storcon_scheduling,
    tenant_id,
    topology,
    wait_for_writes_then_pause,
)

pytestmark = pytest.mark.neonsim


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    tenants, computes = plain_tenants("prefixed", "slow")
    # ps3 keeps its tenants under another prefix_in_bucket, as a fleet grown in two generations would.
    sim = neonsim_fleet_module(topology(tenants, computes, prefixes={"ps3": "other/"}))
    wait_for_writes_then_pause(sim)
    return sim


def test_a_move_to_another_s3_prefix_without_s3_access_is_refused_before_any_change(fleet, report_dir):
    """The move would copy the tenant into ps3's prefix (test_migrate_prefixes.py); with no S3 access configured
    it cannot, and must stop before any change."""
    tid = tenant_id(fleet, "prefixed")
    started = time.time()

    run = migrate(
        fleet, tid, "ps1", "ps3", report_dir, tenant_migration_s3_endpoint_url="", tenant_migration_s3_region=""
    )

    assert run.rc != 0, run
    assert "'pageserver'" in run.output and "'other'" in run.output, run
    assert "no S3 access is configured for the copy" in run.output, run
    assert run.report["outcome"] == "failed_preflight", run.report
    assert [r for r in mutating_requests(fleet, since_ts=started) if not r["path"].startswith("/upcall/")] == []
    assert locations(fleet, "ps1")[tid]["mode"] == "AttachedSingle"
    assert tid not in locations(fleet, "ps3")
    assert storcon_scheduling(fleet, tid) == {"Active"}


def test_the_role_api_timeout_reaches_every_engine_request(fleet, report_dir):
    """A destination that answers its utilization after 3 s: with a 1 s timeout and no retries the move stops in
    preflight with a timeout that names the request, and nothing changes."""
    tid = tenant_id(fleet, "slow")
    fleet.fault("ps2", routes="^/v1/utilization$", latency_ms=3000)
    started = time.time()
    try:
        run = migrate(
            fleet, tid, "ps1", "ps2", report_dir, tenant_migration_api_timeout=1, tenant_migration_api_retries=0
        )
    finally:
        fleet.clear_fault("ps2")

    assert run.rc != 0, run
    assert "timed out" in run.output and "/v1/utilization" in run.output, run
    assert run.report["outcome"] == "failed_preflight", run.report
    assert [r for r in mutating_requests(fleet, since_ts=started) if not r["path"].startswith("/upcall/")] == []
    assert locations(fleet, "ps1")[tid]["mode"] == "AttachedSingle"
