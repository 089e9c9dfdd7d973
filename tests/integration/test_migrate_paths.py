"""End to end: the runbook moves a tenant while its compute's workload runs (warm, cold, restart), check mode
changes nothing, and a rerun of a finished move changes nothing either."""

from __future__ import annotations

import time

import pytest
import requests
from migration_harness import (
    Background,
    compute_connstring,
    compute_switched_at,
    first_change,
    location_history,
    locations,
    migrate,
    mutating_requests,
    plain_tenants,
    slow_reads,
    storcon_scheduling,
    tenant_id,
    timelines,
    topology,
    unavailable_reads,
    verdict,
    wait_for_writes_then_pause,
    workload,
)

pytestmark = pytest.mark.neonsim


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    tenants, computes = plain_tenants("warm", "cold", "restart", "stuck", "lagging")
    # Someone's branch config the move must carry over and restore exactly.
    tenants[0]["tenant_conf"] = {"pitr_interval": "1h"}
    # The lagging destination test needs reads that give up quickly (2 s) to see a cutover that came too early.
    computes[-1]["workload"] = {**computes[-1]["workload"], "read_timeout_ms": 2000}
    sim = neonsim_fleet_module(topology(tenants, computes))
    wait_for_writes_then_pause(sim)
    return sim


def assert_moved(fleet, tid: str, source: str, destination: str, source_mode: str = "Secondary") -> dict:
    dst = locations(fleet, destination)[tid]
    src = locations(fleet, source).get(tid)
    assert dst["mode"] == "AttachedSingle", dst
    assert (src or {}).get("mode", "Detached") == source_mode, src
    return dst


def test_check_mode_plans_and_changes_nothing(fleet, report_dir):
    tid = tenant_id(fleet, "warm")
    before = {ps: locations(fleet, ps).get(tid) for ps in ("ps1", "ps2")}
    started = time.time()

    run = migrate(fleet, tid, "ps1", "ps2", report_dir, check=True)

    assert run.rc == 0, run
    ours = [r for r in mutating_requests(fleet, since_ts=started) if not r["path"].startswith("/upcall/")]
    assert ours == [], ours
    assert {ps: locations(fleet, ps).get(tid) for ps in ("ps1", "ps2")} == before
    assert run.report["outcome"] == "planned"
    plan = "\n".join(run.report["plan"])
    for phase in ("suspend:", "prewarm:", "stale:", "attach:", "catchup:", "cutover:", "finalize:"):
        assert phase in plan
    assert "source AttachedSingle gen" in plan
    assert "/policy scheduling=Stop (now Active); at the end scheduling=Active" in plan


def test_warm_move_loses_no_read_and_no_write(fleet, report_dir):
    tid = tenant_id(fleet, "warm")
    gen_before = locations(fleet, "ps1")[tid]["generation"]
    timelines_before = set(timelines(fleet, "ps1", tid))
    started = time.time()

    run = migrate(fleet, tid, "ps1", "ps2", report_dir)

    assert run.rc == 0, run
    result = verdict(fleet, "c-warm")
    during = result["during"]
    assert during["reads_failed"] == 0, during
    assert result["verified"]["lost_writes"] == 0, result["verified"]
    assert result["during"]["writes_acked"] > 0
    dst = assert_moved(fleet, tid, "ps1", "ps2")
    # A new generation, above the source's, and the original overrides back (background work resumed).
    assert dst["generation"] > gen_before
    assert dst["tenant_conf"] == {"pitr_interval": "1h"}
    assert set(timelines(fleet, "ps2", tid)) == timelines_before
    # The order of events as the simulator saw it: the source stops being the only attached location before the
    # destination attaches, and the compute reads from the destination before the source stops serving.
    source_changes = location_history(fleet, "ps1", tid, since=started)
    destination_changes = location_history(fleet, "ps2", tid, since=started)
    stale_at = first_change(source_changes, "AttachedStale")
    multi_at = first_change(destination_changes, "AttachedMulti")
    switched_at = compute_switched_at(fleet, "c-warm", "ps2", since=started)
    demoted_at = first_change(source_changes, "Secondary")
    assert stale_at < multi_at < switched_at < demoted_at, (source_changes, destination_changes, switched_at)
    # The storage controller was kept away (scheduling Stop) for every pageserver change and given the tenant back.
    changes = mutating_requests(fleet, since_ts=started)
    policy_puts = [r["ts"] for r in changes if r["path"] == f"/control/v1/tenant/{tid}/policy"]
    location_puts = [r["ts"] for r in changes if r["path"] == f"/v1/tenant/{tid}/location_config"]
    assert len(policy_puts) == 2 and policy_puts[0] < min(location_puts) and policy_puts[1] > max(location_puts)
    assert storcon_scheduling(fleet, tid) == {"Active"}
    assert compute_connstring(fleet, "c-warm") == f"postgres://no_user@127.0.0.1:{fleet.entry('ps2')['pg_port']}"
    report = run.report
    assert report["outcome"] == "migrated"
    assert report["bytes_warmed"] > 0
    assert report["source_mode_at_attach"] == {tid: "AttachedStale"}
    assert report["storcon_scheduling"] == {"original": "Active", "restored": True}
    assert report["generations"][tid]["after"] == dst["generation"]
    names = [p["name"] for p in report["phases"]]
    assert names == ["suspend", "prewarm", "stale", "attach", "catchup", "cutover", "finalize", "verify"]
    assert report["computes"][0]["compute"] == "c-warm"
    for tl, target in report["lsns"]["targets"][tid].items():
        assert report["lsns"]["reached"][tid][tl] >= int(target.split("/")[0], 16) << 32 | int(target.split("/")[1], 16)
    assert (report_dir / f"{report['run_id']}.md").read_text().startswith("# Tenant migration")


def test_rerun_of_a_finished_move_changes_nothing(fleet, report_dir):
    tid = tenant_id(fleet, "warm")
    started = time.time()

    run = migrate(fleet, tid, "ps1", "ps2", report_dir)

    assert run.rc == 0, run
    assert "changed=0" in run.output
    assert run.report["outcome"] == "already_done"
    ours = [r for r in mutating_requests(fleet, since_ts=started) if not r["path"].startswith("/upcall/")]
    assert ours == []


def test_cold_move_loses_no_write(fleet, report_dir):
    tid = tenant_id(fleet, "cold")

    run = migrate(fleet, tid, "ps1", "ps3", report_dir, tenant_migration_prewarm=False)

    assert run.rc == 0, run
    result = verdict(fleet, "c-cold")
    assert result["verified"]["lost_writes"] == 0, result["verified"]
    assert_moved(fleet, tid, "ps1", "ps3")
    assert [p["name"] for p in run.report["phases"]][:3] == ["suspend", "stale", "attach"]
    assert run.report["bytes_warmed"] == 0


def test_restart_cutover_and_detached_source(fleet, report_dir):
    tid = tenant_id(fleet, "restart")

    run = migrate(
        fleet,
        tid,
        "ps1",
        "ps2",
        report_dir,
        tenant_migration_compute_cutover="restart",
        tenant_migration_source_final_mode="detached",
    )

    assert run.rc == 0, run
    result = verdict(fleet, "c-restart")
    assert result["verified"]["lost_writes"] == 0, result["verified"]
    assert_moved(fleet, tid, "ps1", "ps2", source_mode="Detached")
    assert compute_connstring(fleet, "c-restart") == f"postgres://no_user@127.0.0.1:{fleet.entry('ps2')['pg_port']}"
    assert run.report["computes"][0]["method"] == "restart"


def test_compute_that_does_not_switch_stops_the_move_before_the_source_is_demoted(fleet, report_dir):
    tid = tenant_id(fleet, "stuck")

    # A restart command that "succeeds" without restarting anything: the compute keeps using the source.
    run = migrate(
        fleet,
        tid,
        "ps1",
        "ps2",
        report_dir,
        tenant_migration_compute_cutover="restart",
        tenant_migration_compute_restart_command="true",
        tenant_migration_compute_timeout=5,
    )

    assert run.rc != 0, run
    assert run.report["outcome"] == "forward_failed", run.report
    # The source still serves the compute (it was never demoted) and nothing was lost.
    assert compute_connstring(fleet, "c-stuck") == f"postgres://no_user@127.0.0.1:{fleet.entry('ps1')['pg_port']}"
    assert locations(fleet, "ps1")[tid]["mode"] in ("AttachedSingle", "AttachedMulti", "AttachedStale")
    result = verdict(fleet, "c-stuck")
    assert unavailable_reads(result["during"]) == {}, result["during"]
    assert result["verified"]["lost_writes"] == 0, result["verified"]


# Longer than the run stays in phase catchup when it does not wait for the LSNs: the best-effort wait for the
# safekeepers' commit_lsn (CLOSE_GAP_SECONDS, 5 s) and the destination's Active check, with room for a slow machine.
CATCHUP_HELD_S = 20.0
# How long reads go to a destination that has not caught up before the test lets it ingest (2 s read timeout).
READS_AGAINST_A_LAGGING_DESTINATION_S = 6.0


def hold_until_catchup_waits_or_the_compute_switched(fleet, run, compute: str, destination: str) -> str:
    """Keep the destination's WAL ingest held (POST /sim/walreceiver) until either the run has stayed in phase
    catchup for CATCHUP_HELD_S (it waits for the LSNs: release) or the compute switched to the destination (no LSN
    wait: let reads fail for a few seconds, then release). Returns which happened."""
    catchup_since = None
    while run.proc.poll() is None:
        phase = run.state().get("phase")
        now = time.time()
        catchup_since = (catchup_since or now) if phase == "catchup" else None
        if catchup_since is not None and now - catchup_since >= CATCHUP_HELD_S:
            return "catch-up waited"
        port = fleet.entry(destination)["pg_port"]
        if compute_connstring(fleet, compute).endswith(f":{port}"):
            time.sleep(READS_AGAINST_A_LAGGING_DESTINATION_S)
            return "the compute switched before catch-up"
        time.sleep(0.2)
    return "the run ended"


def test_destination_slow_to_catch_up_serves_no_read_before_it_has(fleet, report_dir):
    """The LSN wait: ps3 ingests no WAL after the attach until this test releases it, which it does only when the
    run has waited in catch-up for longer than anything but the LSN wait would hold it there, or a few seconds after
    the compute switched to ps3. A cutover that did not wait for catch-up sends the compute's reads (at its latest
    LSN, 2 s timeout) to a pageserver that cannot answer them for those seconds. The release depends on what the
    run does, not on how fast this machine is."""
    tid = tenant_id(fleet, "lagging")
    before = workload(fleet, "c-lagging")
    walreceiver = f"{fleet.url('ps3')}/sim/walreceiver"
    requests.post(walreceiver, json={"connect_delay_ms": 3_600_000}, timeout=10).raise_for_status()
    background = Background(fleet, tid, "ps1", "ps3", report_dir, tenant_migration_prewarm=False)
    try:
        released = hold_until_catchup_waits_or_the_compute_switched(fleet, background, "c-lagging", "ps3")
    finally:
        requests.post(walreceiver, json={"connect_delay_ms": 0}, timeout=10)
    run = background.wait()

    assert run.rc == 0, run
    assert released == "catch-up waited", released
    result = verdict(fleet, "c-lagging")
    during = result["during"]
    failed = {
        reason: count - (before.get("failures_by_reason") or {}).get(reason, 0)
        for reason, count in (during.get("failures_by_reason") or {}).items()
    }
    reads = during["reads_ok"] - before["reads_ok"]
    assert unavailable_reads({"failures_by_reason": failed}) == {}, during
    assert slow_reads({"failures_by_reason": failed}) <= max(1, reads // 100), (failed, reads)
    assert result["verified"]["lost_writes"] == 0, result["verified"]
    assert_moved(fleet, tid, "ps1", "ps3")
