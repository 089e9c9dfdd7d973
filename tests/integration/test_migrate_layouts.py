"""End to end on richer tenants: a sharded tenant (every shard on the source moves, each under its own new
generation), and a tenant with branches and two computes where a branch is created on the source mid-move."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from migration_harness import (
    WORKLOAD,
    Background,
    compute_connstring,
    compute_switched_at,
    locations,
    shard_ids,
    tenant_id,
    timelines,
    topology,
    verdict,
    wait_for_writes_then_pause,
)

pytestmark = pytest.mark.neonsim


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    tenants = [
        {"name": "sharded", "shard_count": 4, "stripe_size": 2048, "pageservers": ["ps1", "ps1", "ps1", "ps3"]},
        {
            "name": "branched",
            "pageservers": ["ps1"],
            "timelines": [{"name": "main"}, {"name": "child", "parent": "main"}],
        },
    ]
    computes = [
        {"name": "c-sharded", "tenant": "sharded", "workload": WORKLOAD},
        {"name": "c-main", "tenant": "branched", "timeline": "main", "workload": WORKLOAD},
        {"name": "c-child", "tenant": "branched", "timeline": "child", "workload": WORKLOAD},
    ]
    sim = neonsim_fleet_module(topology(tenants, computes))
    wait_for_writes_then_pause(sim)
    return sim


def test_sharded_tenant_moves_every_shard_on_the_source(fleet, report_dir):
    tid = tenant_id(fleet, "sharded")
    shards = shard_ids(fleet, "sharded")
    before = {tsid: locations(fleet, "ps1").get(tsid) for tsid in shards}

    run = Background(fleet, tid, "ps1", "ps2", report_dir).wait()

    assert run.rc == 0, run
    on_ps2, on_ps3 = locations(fleet, "ps2"), locations(fleet, "ps3")
    for tsid in shards[:3]:
        assert on_ps2[tsid]["mode"] == "AttachedSingle", tsid
        assert on_ps2[tsid]["generation"] > before[tsid]["generation"]
        assert locations(fleet, "ps1")[tsid]["mode"] == "Secondary"
    assert on_ps3[shards[3]]["mode"] == "AttachedSingle"
    assert shards[3] not in on_ps2
    ps2, ps3 = (f"postgres://no_user@127.0.0.1:{fleet.entry(n)['pg_port']}" for n in ("ps2", "ps3"))
    assert compute_connstring(fleet, "c-sharded") == ",".join([ps2, ps2, ps2, ps3])
    assert sorted(run.report["generations"]) == sorted(shards[:3])
    result = verdict(fleet, "c-sharded")
    assert result["verified"]["lost_writes"] == 0, result["verified"]


def test_branches_two_computes_and_a_branch_created_mid_move(fleet, report_dir):
    tid = tenant_id(fleet, "branched")
    main_tl = next(
        t["timeline_id"] for t in fleet.fleet["tenants"][1]["timelines"] if t["ancestor_timeline_id"] is None
    )
    new_branch = uuid.uuid4().hex
    started = time.time()
    # Hold the destination's catch-up (its timeline listing) so the branch lands while both are attached.
    fleet.fault("ps2", routes=r"^/v1/tenant/[^/]+/timeline$", freeze=True)
    try:
        run = Background(fleet, tid, "ps1", "ps2", report_dir)
        run.wait_phase("catchup")
        created = requests.post(
            f"{fleet.url('ps1')}/v1/tenant/{tid}/timeline",
            json={"new_timeline_id": new_branch, "ancestor_timeline_id": main_tl},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        on_a = set(timelines(fleet, "ps1", tid))  # read while ps1 is still attached: it ends as a Secondary
    finally:
        fleet.clear_fault("ps2")
    result = run.wait()

    assert result.rc == 0, result
    on_b = timelines(fleet, "ps2", tid)
    assert new_branch in on_a and on_a <= set(on_b)
    assert on_b[new_branch]["ancestor_timeline_id"] == main_tl
    assert [t["timeline_id"] for t in result.report["recreated_timelines"]] == [new_branch]
    # The branch was on the destination before any compute read from it: synced before cutover, not only at
    # finalize. Times from neonsim's request log and the computes' own records.
    created_on_b = [
        r["ts"]
        for r in fleet.request_log("ps2")
        if r["ts"] >= started
        and r["method"] == "POST"
        and r["path"] == f"/v1/tenant/{tid}/timeline"
        and r["status"] in (200, 201)
    ]
    first_switch = min(compute_switched_at(fleet, c, "ps2", since=started) for c in ("c-main", "c-child"))
    assert created_on_b and created_on_b[0] < first_switch, (
        f"branch {new_branch} created on ps2 at {created_on_b}, after the first compute switched at {first_switch}"
    )
    ps2 = f"postgres://no_user@127.0.0.1:{fleet.entry('ps2')['pg_port']}"
    for compute in ("c-main", "c-child"):
        assert compute_connstring(fleet, compute) == ps2
        outcome = verdict(fleet, compute)
        assert outcome["verified"]["lost_writes"] == 0, (compute, outcome["verified"])
    assert {c["compute"] for c in result.report["computes"]} == {"c-main", "c-child"}
