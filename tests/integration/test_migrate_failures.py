"""Failure injection: the destination crashes during catch-up (rollback), the source crashes mid-move
(failover), and the playbook is killed after the destination attached (a rerun completes)."""

from __future__ import annotations

import time

import pytest
from migration_harness import (
    Background,
    compute_connstring,
    locations,
    migrate,
    plain_tenants,
    storcon_scheduling,
    tenant_id,
    topology,
    verdict,
    wait_for_writes_then_pause,
)

pytestmark = pytest.mark.neonsim

CATCHUP_ROUTES = r"^/v1/tenant/[^/]+/(timeline|wait_lsn)$"


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    tenants, computes = plain_tenants("b-crash", "killed", "b-not-active")
    more, more_computes = plain_tenants("a-crash", on="ps3")
    sim = neonsim_fleet_module(topology(tenants + more, computes + more_computes))
    wait_for_writes_then_pause(sim)
    return sim


def pg_url(fleet, name: str) -> str:
    return f"postgres://no_user@127.0.0.1:{fleet.entry(name)['pg_port']}"


def test_destination_crash_during_catchup_rolls_back(fleet, report_dir):
    tid = tenant_id(fleet, "b-crash")
    original = locations(fleet, "ps1")[tid]
    fleet.fault("ps2", routes=CATCHUP_ROUTES, freeze=True)
    run = Background(fleet, tid, "ps1", "ps2", report_dir)
    try:
        run.wait_phase("catchup")
        time.sleep(1)
        fleet.kill("ps2")
        result = run.wait()
    finally:
        if run.proc.poll() is None:
            run.kill()

    assert result.rc != 0, result
    assert result.report["outcome"] == "rolled_back", result.report
    back = locations(fleet, "ps1")[tid]
    # Served by the source again, under a generation newer than the destination's, with the original overrides.
    assert back["mode"] == "AttachedSingle"
    assert back["generation"] > result.report["generations"][tid]["after"] > original["generation"]
    assert back["tenant_conf"] == original["tenant_conf"]
    assert storcon_scheduling(fleet, tid) == {"Active"}, "the storage controller's policy was not restored"
    assert compute_connstring(fleet, "c-b-crash") == pg_url(fleet, "ps1")
    outcome = verdict(fleet, "c-b-crash")
    assert outcome["verified"]["lost_writes"] == 0, outcome["verified"]
    # The destination comes back without the tenant: the generation authority no longer hands it out.
    fleet.start("ps2")
    assert (locations(fleet, "ps2").get(tid) or {}).get("mode") not in ("AttachedSingle", "AttachedMulti")


def test_destination_not_active_right_before_cutover_rolls_back_and_no_compute_moves(fleet, report_dir):
    """The cutover check: ps2 caught up, then answers 503 for the tenant's state (a slot shutting down or starting)
    right before the computes would switch. The move stops while the source still serves and rolls back; without
    the check the compute would be sent to ps2."""
    tid = tenant_id(fleet, "b-not-active")
    original = locations(fleet, "ps1")[tid]
    fleet.fault("ps2", routes=CATCHUP_ROUTES, freeze=True)
    run = Background(fleet, tid, "ps1", "ps2", report_dir, tenant_migration_attach_timeout=20)
    try:
        run.wait_phase("catchup")
        # Replacing the fault releases the frozen catch-up; from now on ps2 answers 503 for the tenant's state only.
        fleet.fault("ps2", routes=r"^GET /v1/tenant/[^/]+$", status=503)
        result = run.wait()
    finally:
        fleet.clear_fault("ps2")
        if run.proc.poll() is None:
            run.kill()

    assert result.rc != 0, result
    assert result.report["outcome"] == "rolled_back", result.report
    assert result.report["failed_phase"] == "catchup", result.report
    assert "Active on ps2" in result.report["error"], result.report["error"]
    assert not result.report["computes"], result.report["computes"]
    assert compute_connstring(fleet, "c-b-not-active") == pg_url(fleet, "ps1")
    back = locations(fleet, "ps1")[tid]
    assert back["mode"] == "AttachedSingle" and back["tenant_conf"] == original["tenant_conf"], back
    assert storcon_scheduling(fleet, tid) == {"Active"}
    assert verdict(fleet, "c-b-not-active")["verified"]["lost_writes"] == 0


def test_playbook_killed_after_attach_then_rerun_completes(fleet, report_dir):
    tid = tenant_id(fleet, "killed")
    fleet.fault("ps2", routes=CATCHUP_ROUTES, freeze=True)
    try:
        run = Background(fleet, tid, "ps1", "ps2", report_dir)
        run.wait_phase("catchup")
        run.kill()
    finally:
        fleet.clear_fault("ps2")
    assert locations(fleet, "ps1")[tid]["mode"] == "AttachedStale"
    assert locations(fleet, "ps2")[tid]["mode"] == "AttachedMulti"
    assert storcon_scheduling(fleet, tid) == {"Stop"}

    rerun = migrate(fleet, tid, "ps1", "ps2", report_dir)

    assert rerun.rc == 0, rerun
    assert rerun.report["outcome"] == "migrated"
    assert rerun.report["resumed_from"] == {tid: "catchup"}
    assert locations(fleet, "ps2")[tid]["mode"] == "AttachedSingle"
    assert locations(fleet, "ps2")[tid]["tenant_conf"] == {}
    # The rerun found Stop, took the policy from before out of the journal and put it back.
    assert storcon_scheduling(fleet, tid) == {"Active"}
    assert compute_connstring(fleet, "c-killed") == pg_url(fleet, "ps2")
    outcome = verdict(fleet, "c-killed")
    assert outcome["verified"]["lost_writes"] == 0, outcome["verified"]


def test_source_crash_mid_move_fails_over(fleet, report_dir):
    tid = tenant_id(fleet, "a-crash")
    # Hold the warm-up so the source can die while the move is under way.
    fleet.fault("ps2", routes=r"/secondary/download$", freeze=True)
    try:
        run = Background(fleet, tid, "ps3", "ps2", report_dir)
        run.wait_phase("prewarm")
        time.sleep(1)
        fleet.kill("ps3")
    finally:
        fleet.clear_fault("ps2")
    result = run.wait()

    assert result.rc == 0, result
    assert result.report["outcome"] == "failover", result.report
    dst = locations(fleet, "ps2")[tid]
    assert dst["mode"] == "AttachedSingle"
    assert dst["tenant_conf"] == {}
    assert compute_connstring(fleet, "c-a-crash") == pg_url(fleet, "ps2")
    outcome = verdict(fleet, "c-a-crash")
    assert outcome["verified"]["lost_writes"] == 0, outcome["verified"]
    fleet.start("ps3")
    assert (locations(fleet, "ps3").get(tid) or {}).get("mode") not in ("AttachedSingle", "AttachedMulti")
