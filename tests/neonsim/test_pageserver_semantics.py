"""Pageserver semantics on a running fleet: location_config rules, modes, deletions, secondaries, restarts."""

from __future__ import annotations

import time
import uuid

import pytest

from neonsim.lsn import format_lsn, parse_lsn
from neonsim.pageserver.testing import Harness

pytestmark = pytest.mark.neonsim

QUIET = {"compaction_period": "0s", "gc_period": "0s", "checkpoint_distance": 10**9, "checkpoint_timeout": "1h"}


@pytest.fixture(scope="module")
def sim(neonsim_fleet_module):
    return neonsim_fleet_module("small", computes=[])


@pytest.fixture(scope="module")
def h(sim):
    return Harness(sim)


def body(mode, **extra):
    return {"mode": mode, "tenant_conf": {}, **extra}


def put_location(h, ps, tsid, payload, params=None):
    return h.call("PUT", f"{h.ps(ps)}/v1/tenant/{tsid}/location_config", payload, expected=None, params=params)


def flushed_history(h, ps, tenant, timeline, rounds, tag):
    lsn = 0
    for r in range(rounds):
        lsn = h.write_keys(tenant, timeline, 10, f"{tag}{r}")
        h.wait_lsn(ps, tenant, timeline, lsn)
        h.checkpoint(ps, tenant, timeline)
    return lsn


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"condition not reached: {predicate.__name__}"
        time.sleep(0.1)
    return value


# ---- location_config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (body("AttachedSingle", generation=1, surprise=True), "unknown field `surprise`"),
        ({"mode": "AttachedSingle", "generation": 1}, "missing field `tenant_conf`"),
        (body("AttachedSingle"), "Generation must be set when attaching"),
        (body("AttachedMulti", generation=None), "Generation must be set when attaching"),
        (body("Secondary", generation=3), "generation.is_none()"),
        (body("Attached", generation=1), "unknown variant `Attached`"),
        (body("AttachedSingle", generation=1, shard_number=2, shard_count=2, shard_stripe_size=8), "shard"),
    ],
)
def test_location_config_body_rules(h, payload, message):
    resp = put_location(h, "ps1", uuid.uuid4().hex, payload)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["msg"]


def test_generation_rules_and_responses(h):
    tenant, _timeline, gen = h.create_tenant("ps1")
    resp = put_location(h, "ps1", tenant, body("AttachedMulti", generation=gen))
    assert resp.status_code == 200
    assert resp.json() == {"shards": [{"shard_id": tenant, "node_id": h.node_id("ps1")}], "stripe_size": None}
    assert h.get("ps1", f"/v1/location_config/{tenant}")["mode"] == "AttachedMulti"
    # the fast path keeps the tenant object: it stays Active without re-attaching
    assert h.get("ps1", f"/v1/tenant/{tenant}")["state"] == {"slug": "Active"}

    resp = put_location(h, "ps1", tenant, body("AttachedSingle", generation=gen - 1))
    assert resp.status_code == 400
    assert resp.json()["msg"] == f"Generation {gen - 1} is less than existing {gen}"

    higher = h.attach_hook(tenant, "ps1")
    assert put_location(h, "ps1", tenant, body("AttachedSingle", generation=higher)).status_code == 200
    assert h.wait_active("ps1", tenant)["generation"] == higher

    resp = put_location(h, "ps1", tenant, body("Secondary", secondary_conf={"warm": False}))
    assert resp.json() == {"shards": [], "stripe_size": None}
    assert h.call("GET", f"{h.ps('ps1')}/v1/tenant/{tenant}", expected=(404,)).json()["msg"].startswith("NotFound")
    listed = dict(h.get("ps1", "/v1/location_config")["tenant_shards"])
    assert listed[tenant]["mode"] == "Secondary" and listed[tenant]["generation"] is None

    for _ in range(2):  # Detached is idempotent
        resp = put_location(h, "ps1", tenant, body("Detached"))
        assert resp.status_code == 200 and resp.json() is None
    h.call("GET", f"{h.ps('ps1')}/v1/location_config/{tenant}", expected=(404,))
    assert not (h.sim.dir / "ps1" / "tenants" / tenant).exists()


def test_sharded_response_and_config_file(h):
    tenant = uuid.uuid4().hex
    tsid = f"{tenant}-0102"
    gen = h.attach_hook(tsid, "ps2")
    payload = body("AttachedSingle", generation=gen, shard_number=1, shard_count=2, shard_stripe_size=2048)
    resp = put_location(h, "ps2", tsid, payload)
    assert resp.json() == {"shards": [{"shard_id": tsid, "node_id": h.node_id("ps2")}], "stripe_size": 2048}
    persisted = (h.sim.dir / "ps2" / "tenants" / tsid / "config-v1.json").read_text()
    assert '"shard_count": 2' in persisted and f'"generation": {gen}' in persisted
    # tenant config PUT only addresses the unsharded id
    resp = h.call("PUT", f"{h.ps('ps2')}/v1/tenant/config", {"tenant_id": tenant}, expected=(404,))
    assert resp.json()["msg"] == f"NotFound: tenant {tenant}"


def test_tenant_conf_is_replaced_not_merged(h):
    tenant, _timeline, gen = h.create_tenant("ps1", {"gc_period": "0s", "compaction_period": "0s"})
    h.location("ps1", tenant, "AttachedSingle", gen, {"checkpoint_timeout": "3s"})
    config = h.get("ps1", f"/v1/tenant/{tenant}/config")
    assert config["tenant_specific_overrides"] == {"checkpoint_timeout": "3s"}
    defaults = h.sim.fleet["tenant_defaults"]
    assert config["effective_config"]["gc_period"] == defaults["gc_period"]
    assert config["effective_config"]["checkpoint_timeout"] == "3s"
    assert config["effective_config"]["heatmap_period"] == defaults["heatmap_period"]

    url = f"{h.ps('ps1')}/v1/tenant/config"
    h.call("PATCH", url, {"tenant_id": tenant, "gc_horizon": 1024, "checkpoint_timeout": None})
    assert h.get("ps1", f"/v1/tenant/{tenant}/config")["tenant_specific_overrides"] == {"gc_horizon": 1024}
    h.call("PUT", url, {"tenant_id": tenant, "pitr_interval": "0s"})
    assert h.get("ps1", f"/v1/tenant/{tenant}/config")["tenant_specific_overrides"] == {"pitr_interval": "0s"}
    resp = h.call("PUT", url, {"tenant_id": tenant, "no_such_key": 1}, expected=(400,))
    assert "unknown field `no_such_key`" in resp.json()["msg"]


# ---- deletions and remote_consistent_lsn by mode --------------------------------------------------------------


def test_multi_holds_deletions_until_single(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[])
    h = Harness(sim)
    tenant, timeline, gen = h.create_tenant("ps1", QUIET)
    flushed_history(h, "ps1", tenant, timeline, 3, "a")
    h.location("ps1", tenant, "AttachedMulti", gen, QUIET)
    h.compact("ps1", tenant, timeline)
    h.flush_deletions("ps1")
    stats = h.stats("ps1")
    assert stats["held_deletions"][tenant] > 0
    assert stats["deletions_submitted"] == 0 and stats["deletions_executed"] == 0

    h.location("ps1", tenant, "AttachedSingle", gen, QUIET)
    h.flush_deletions("ps1")
    stats = h.stats("ps1")
    assert stats["held_deletions"][tenant] == 0
    assert stats["deletions_executed"] >= stats["deletions_submitted"] > 0


def test_stale_stops_validation_of_remote_consistent_lsn(h):
    tenant, timeline, gen = h.create_tenant("ps2", QUIET)
    flushed_history(h, "ps2", tenant, timeline, 1, "a")
    h.flush_deletions("ps2")  # one validation pass publishes the uploaded LSN
    before = h.timeline("ps2", tenant, timeline)
    assert before["remote_consistent_lsn_visible"] == before["remote_consistent_lsn"] != "0/0"

    h.location("ps2", tenant, "AttachedStale", gen, QUIET, flush_ms="5000")
    flushed_history(h, "ps2", tenant, timeline, 1, "b")
    h.flush_deletions("ps2")
    after = h.timeline("ps2", tenant, timeline)
    assert parse_lsn(after["remote_consistent_lsn"]) > parse_lsn(before["remote_consistent_lsn"])
    assert after["remote_consistent_lsn_visible"] == before["remote_consistent_lsn_visible"]


def test_background_iterations_follow_the_config_and_the_mode(h):
    """GET /sim/background records each gc and compaction iteration started; location_history carries the
    accepted tenant_conf. Suspended periods (0s) start none; AttachedMulti compacts but does not gc."""
    busy = {"gc_period": "1s", "compaction_period": "1s"}
    suspended = {**busy, "gc_period": "0s", "compaction_period": "0s"}
    tenant, _timeline, gen = h.create_tenant("ps1", busy)

    def jobs(since=0.0):
        body = h.get("ps1", "/sim/background", params={"tenant_shard_id": tenant, "since": since})
        return {e["job"] for e in body["iterations"]}

    wait_until(lambda: jobs() == {"gc", "compaction"})
    h.location("ps1", tenant, "AttachedSingle", gen, suspended)
    applied = [e for e in h.stats("ps1")["location_history"] if e["tenant_shard_id"] == tenant][-1]
    assert applied["tenant_conf"] == suspended and applied["mode"] == "AttachedSingle"
    time.sleep(2.5)
    assert jobs(since=applied["ts"]) == set()

    h.location("ps1", tenant, "AttachedMulti", gen, busy)
    multi_at = [e for e in h.stats("ps1")["location_history"] if e["tenant_shard_id"] == tenant][-1]["ts"]
    wait_until(lambda: jobs(since=multi_at) == {"compaction"})
    time.sleep(1.5)
    iterations = h.get("ps1", "/sim/background", params={"tenant_shard_id": tenant, "since": multi_at})["iterations"]
    assert {(e["job"], e["mode"], e["generation"]) for e in iterations} == {("compaction", "AttachedMulti", gen)}


# ---- secondaries and heatmaps ------------------------------------------------------------------------------------


def test_secondary_download_needs_a_heatmap(h):
    tenant, timeline, gen = h.create_tenant("ps1", QUIET)
    flushed_history(h, "ps1", tenant, timeline, 2, "a")
    h.location("ps2", tenant, "Secondary")
    url = f"{h.ps('ps2')}/v1/tenant/{tenant}/secondary/download"
    resp = h.call("POST", url, params={"wait_ms": "5000"})
    assert resp.status_code == 200
    assert resp.json() == {
        "heatmap_mtime": None,
        "layers_downloaded": 0,
        "layers_total": 0,
        "bytes_downloaded": 0,
        "bytes_total": 0,
    }

    h.call("POST", f"{h.ps('ps1')}/v1/tenant/{tenant}/heatmap_upload")
    resp = h.call("POST", url, params={"wait_ms": "20000"})
    progress = resp.json()
    assert resp.status_code == 200
    assert progress["heatmap_mtime"] is not None
    assert progress["layers_downloaded"] == progress["layers_total"] >= 3
    assert progress["bytes_downloaded"] == progress["bytes_total"] > 0
    assert h.get("ps2", f"/v1/tenant/{tenant}/secondary/status") == progress
    local = list((h.sim.dir / "ps2" / "tenants" / tenant / "timelines" / timeline).iterdir())
    assert len(local) == progress["layers_total"]
    # not a secondary here: 404
    h.call("POST", f"{h.ps('ps1')}/v1/tenant/{tenant}/secondary/download", expected=(404,))

    # promotion reuses the downloaded files: reads need no on-demand download
    downloads = h.stats("ps2")["on_demand_downloads"]
    h.location("ps1", tenant, "AttachedStale", gen, QUIET, flush_ms="5000")
    new_gen = h.attach_hook(tenant, "ps2")
    h.location("ps2", tenant, "AttachedMulti", new_gen, QUIET)
    h.wait_active("ps2", tenant)
    for i in range(10):
        assert h.read("ps2", tenant, timeline, f"k{i:04d}").json()["value"].startswith("a1-")
    assert h.stats("ps2")["on_demand_downloads"] == downloads


# ---- restarts and re-attach ----------------------------------------------------------------------------------------


def test_reattach_after_restart_bumps_generation_and_keeps_data(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[])
    h = Harness(sim)
    tenant, timeline, gen = h.create_tenant("ps2", QUIET)
    lsn = flushed_history(h, "ps2", tenant, timeline, 2, "a")
    lsn = h.write_keys(tenant, timeline, 3, "unflushed")  # only in the open in-memory layer
    h.wait_lsn("ps2", tenant, timeline, lsn)
    sim.kill("ps2")
    sim.start("ps2")
    info = h.wait_active("ps2", tenant)
    assert info["generation"] == gen + 1
    location = h.get("ps2", f"/v1/location_config/{tenant}")
    assert location["mode"] == "AttachedSingle" and location["generation"] == gen + 1
    assert location["tenant_conf"] == QUIET
    # the in-memory layer was lost in the crash; the WAL comes again from the safekeepers
    h.wait_lsn("ps2", tenant, timeline, lsn)
    assert h.read("ps2", tenant, timeline, "k0000", lsn).json()["value"].startswith("unflushed-0-")
    assert h.read("ps2", tenant, timeline, "k0005", lsn).json()["value"].startswith("a1-5-")


def test_restart_without_tenant_in_reattach_wipes_it(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[])
    h = Harness(sim)
    tenant, timeline, _gen = h.create_tenant("ps2", QUIET)
    flushed_history(h, "ps2", tenant, timeline, 1, "a")
    local = sim.dir / "ps2" / "tenants" / tenant
    assert any((local / "timelines" / timeline).iterdir())
    h.attach_hook(tenant, None)  # the controller forgets the attachment
    sim.kill("ps2")
    sim.start("ps2")
    h.call("GET", f"{h.ps('ps2')}/v1/tenant/{tenant}", expected=(404,))
    assert not local.exists()
    # remote data is untouched: the tenant can attach elsewhere
    gen = h.attach_hook(tenant, "ps1")
    h.location("ps1", tenant, "AttachedSingle", gen, QUIET)
    h.wait_active("ps1", tenant)
    assert h.read("ps1", tenant, timeline, "k0003").json()["value"].startswith("a0-3-")


# ---- timelines, reads, waits ----------------------------------------------------------------------------------------


def test_timeline_create_branch_delete(h):
    tenant, timeline, _gen = h.create_tenant("ps1", QUIET)
    url = f"{h.ps('ps1')}/v1/tenant/{tenant}/timeline"
    again = h.call("POST", url, {"new_timeline_id": timeline}, expected=(201,)).json()
    assert again["timeline_id"] == timeline and again["ancestor_timeline_id"] is None

    branch_lsn = h.write(tenant, timeline, [("shared", "before")])
    h.wait_lsn("ps1", tenant, timeline, branch_lsn)
    h.write(tenant, timeline, [("shared", "after")])
    child = uuid.uuid4().hex
    created = h.call(
        "POST",
        url,
        {"new_timeline_id": child, "ancestor_timeline_id": timeline, "ancestor_start_lsn": format_lsn(branch_lsn)},
        expected=(201,),
    ).json()
    assert created["ancestor_lsn"] == format_lsn(branch_lsn) and created["ancestor_timeline_id"] == timeline
    assert h.read("ps1", tenant, child, "shared", branch_lsn).json()["value"] == "before"
    conflict = {"new_timeline_id": child, "ancestor_timeline_id": None}
    assert h.call("POST", url, conflict, expected=(409,)).json()["msg"].startswith("Conflict")

    resp = h.call("DELETE", f"{url}/{timeline}", expected=(412,))
    assert "child timelines" in resp.json()["msg"]
    resp = h.call("DELETE", f"{url}/{child}", expected=(202,))
    assert resp.json() is None
    h.call("GET", f"{url}/{child}", expected=(404,))
    missing = uuid.uuid4().hex
    resp = h.call("DELETE", f"{h.ps('ps1')}/v1/tenant/{missing}/timeline/{timeline}", expected=(412,))
    assert resp.json()["msg"] == "Precondition failed: Requested tenant is missing"


def test_branch_below_gc_cutoff_is_406(h):
    tenant, timeline, _gen = h.create_tenant("ps2", QUIET)
    flushed_history(h, "ps2", tenant, timeline, 2, "a")
    h.compact("ps2", tenant, timeline)
    h.gc("ps2", tenant, timeline, horizon=0)
    info = h.timeline("ps2", tenant, timeline)
    assert parse_lsn(info["applied_gc_cutoff_lsn"]) > parse_lsn(info["initdb_lsn"])
    payload = {"new_timeline_id": uuid.uuid4().hex, "ancestor_timeline_id": timeline,
               "ancestor_start_lsn": info["initdb_lsn"]}  # fmt: skip
    h.call("POST", f"{h.ps('ps2')}/v1/tenant/{tenant}/timeline", payload, expected=(406,))


def test_wait_lsn_statuses(h):
    tenant, timeline, _gen = h.create_tenant("ps1", QUIET)
    lsn = h.write_keys(tenant, timeline, 3, "w")
    url = f"{h.ps('ps1')}/v1/tenant/{tenant}/wait_lsn"
    timeout = {"secs": 10, "nanos": 0}
    assert h.call("POST", url, {timeline: format_lsn(lsn), "timeout": timeout}).json() is None
    future = {timeline: format_lsn(lsn + 10**6), "timeout": {"secs": 0, "nanos": 200_000_000}}
    resp = h.call("POST", url, future, expected=(202,))
    assert resp.json() is None
    resp = h.call("POST", url, {uuid.uuid4().hex: "0/1", "timeout": timeout}, expected=(404,))
    assert resp.json() is None


def test_page_service_errors_and_on_demand_download(h):
    tenant, timeline, _gen = h.create_tenant("ps1", QUIET)
    lsn = flushed_history(h, "ps1", tenant, timeline, 1, "p")
    assert h.read("ps2", tenant, timeline, "k0001").status_code == 404
    resp = h.read("ps1", tenant, timeline, "k0001", lsn + 10**6, timeout_ms=200)
    assert resp.status_code == 504
    assert h.evict("ps1", tenant) > 0
    downloads = h.stats("ps1")["on_demand_downloads"]
    resp = h.read("ps1", tenant, timeline, "k0001", lsn)
    assert resp.json() == {"key": "k0001", "value": resp.json()["value"], "lsn": format_lsn(lsn)}
    assert resp.json()["value"].startswith("p0-1-")
    assert h.read("ps1", tenant, timeline, "never-written", lsn).json()["value"] is None
    assert h.stats("ps1")["on_demand_downloads"] > downloads


def test_tenant_delete_removes_every_shard_prefix(h):
    tenant, timeline, _gen = h.create_tenant("ps2", QUIET)
    flushed_history(h, "ps2", tenant, timeline, 1, "d")
    s3conf = h.sim.fleet["s3"]
    s3 = h.s3()
    prefix = next(p for p in h.sim.fleet["pageservers"] if p["name"] == "ps2")["prefix_in_bucket"]
    shard_key = f"{prefix}tenants/{tenant}-0102/timelines/{timeline}/index_part.json-00000001"
    s3.put_object(Bucket=s3conf["bucket"], Key=shard_key, Body=b"{}")
    scan = h.get("ps2", f"/v1/tenant/{tenant}/scan_remote_storage")
    assert {s["tenant_shard_id"] for s in scan["shards"]} == {tenant, f"{tenant}-0102"}
    assert h.call("DELETE", f"{h.ps('ps2')}/v1/tenant/{tenant}").json() is None
    left = s3.list_objects_v2(Bucket=s3conf["bucket"], Prefix=f"{prefix}tenants/{tenant}")
    assert left.get("KeyCount", 0) == 0
    h.call("GET", f"{h.ps('ps2')}/v1/tenant/{tenant}", expected=(404,))
    h.call("GET", f"{h.ps('ps2')}/v1/tenant/{tenant}/scan_remote_storage", expected=(404,))


def test_utilization_and_synthetic_tenants(h):
    before = h.get("ps1", "/v1/utilization")
    tenant, timeline, _gen = h.create_tenant("ps1", QUIET)
    size = 64 * 1024 * 1024
    h.call("POST", f"{h.ps('ps1')}/sim/tenant/{tenant}/synthetic", {"physical_size_bytes": size, "layers": 4})
    assert h.timeline("ps1", tenant, timeline)["current_physical_size"] == size
    capacity = next(p for p in h.sim.fleet["pageservers"] if p["name"] == "ps1")["disk_capacity_bytes"]
    after = wait_until(lambda: (u := h.get("ps1", "/v1/utilization"))["disk_usage_bytes"] >= size and u)
    assert after["disk_usage_bytes"] + after["free_space_bytes"] == capacity
    assert after["disk_wanted_bytes"] >= size
    # Other tests' shards on this shared fleet may still come and go (deletes finish in the background): the new
    # shard counts, and the score below is checked against the same answer's own count.
    assert after["shard_count"] >= before["shard_count"] + 1
    expected_score = max(after["disk_wanted_bytes"] * 1_000_000 // capacity, after["shard_count"] * 1_000_000 // 2500)
    assert after["utilization_score"] == expected_score


def test_attach_failure_is_broken_with_reason(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[])
    h = Harness(sim)
    tenant = uuid.uuid4().hex
    gen = h.attach_hook(tenant, "ps1")
    sim.fault("s3proxy", error_rate=1.0, status=500)
    try:
        h.location("ps1", tenant, "AttachedSingle", gen, QUIET)
        info = wait_until(lambda: (i := h.get("ps1", f"/v1/tenant/{tenant}"))["state"]["slug"] == "Broken" and i)
    finally:
        sim.clear_fault("s3proxy")
    assert info["attachment_status"]["slug"] == "failed" and "attach failed" in info["state"]["data"]["reason"]
    resp = h.call("GET", f"{h.ps('ps1')}/v1/tenant/{tenant}/timeline", expected=(500,))
    assert resp.json()["msg"].startswith("tenant is broken: attach failed")
    # recovery: a higher generation replaces the broken attachment
    h.location("ps1", tenant, "AttachedSingle", h.attach_hook(tenant, "ps1"), QUIET)
    assert h.wait_active("ps1", tenant)["generation"] == gen + 1


def test_synthetic_tenant_migrates_through_a_secondary(h):
    tenant, timeline, gen = h.create_tenant("ps1", QUIET)
    size = 8 * 1024 * 1024
    h.call("POST", f"{h.ps('ps1')}/sim/tenant/{tenant}/synthetic", {"physical_size_bytes": size, "layers": 4})
    h.call("POST", f"{h.ps('ps1')}/v1/tenant/{tenant}/heatmap_upload")
    h.location("ps2", tenant, "Secondary")
    resp = h.call("POST", f"{h.ps('ps2')}/v1/tenant/{tenant}/secondary/download", params={"wait_ms": "20000"})
    progress = resp.json()
    assert (progress["layers_downloaded"], progress["bytes_downloaded"]) == (4, size)
    h.location("ps1", tenant, "AttachedStale", gen, QUIET, flush_ms="5000")
    new_gen = h.attach_hook(tenant, "ps2")
    h.location("ps2", tenant, "AttachedMulti", new_gen, QUIET)
    h.wait_active("ps2", tenant)
    info = h.timeline("ps2", tenant, timeline)
    assert info["current_physical_size"] == size
    assert info["disk_consistent_lsn"] == h.timeline("ps1", tenant, timeline)["disk_consistent_lsn"]
