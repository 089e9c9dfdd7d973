"""Misuse made visible: two attachments in the SAME generation destroy each other's layers (upstream
`docs/rfcs/025-generation-numbers.md`); the correct sequence (fresh generation, AttachedMulti until cutover)
loses nothing. The checker decides."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from neonsim.checker import run_check
from neonsim.pageserver.testing import Harness

pytestmark = pytest.mark.neonsim

# Background work only when the test asks for it, so the outcome does not depend on timing.
QUIET = {"compaction_period": "0s", "gc_period": "0s", "checkpoint_distance": 10**9, "checkpoint_timeout": "1h"}


def build_history(h: Harness, ps: str, tenant: str, timeline: str, rounds: int, tag: str) -> int:
    """Several rounds of writes, each flushed into its own layer and uploaded."""
    lsn = 0
    for r in range(rounds):
        lsn = h.write_keys(tenant, timeline, 20, f"{tag}{r}")
        h.wait_lsn(ps, tenant, timeline, lsn)
        h.checkpoint(ps, tenant, timeline)
    return lsn


def test_same_generation_on_two_nodes_loses_layers(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[])
    h = Harness(sim)
    tenant, timeline, gen = h.create_tenant("ps1", QUIET)
    build_history(h, "ps1", tenant, timeline, 3, "a")

    # operator error: reuse the origin's generation for a second attachment
    h.location("ps2", tenant, "AttachedSingle", gen, QUIET)
    h.wait_active("ps2", tenant)
    lsn = build_history(h, "ps2", tenant, timeline, 1, "b")
    h.wait_lsn("ps1", tenant, timeline, lsn)

    # the origin compacts and GCs; it passes /validate because the generation is current
    h.checkpoint("ps1", tenant, timeline)
    h.compact("ps1", tenant, timeline)
    h.gc("ps1", tenant, timeline, horizon=0)
    h.flush_deletions("ps1")
    assert h.stats("ps1")["deletions_executed"] > 0

    # the second node still references the deleted layers: its own compaction needs them (500 when they
    # are gone), and its next index upload publishes the dangling references
    lsn = h.write_keys(tenant, timeline, 5, "c")
    h.wait_lsn("ps2", tenant, timeline, lsn)
    h.checkpoint("ps2", tenant, timeline)
    compact = h.call("PUT", f"{h.ps('ps2')}/v1/tenant/{tenant}/timeline/{timeline}/compact", expected=(200, 500))
    h.evict("ps2", tenant)
    read_statuses = {h.read("ps2", tenant, timeline, f"k{i:04d}").status_code for i in range(20)}

    report = run_check(sim.dir)
    assert not report["ok"]
    assert report["lost_layers_count"] > 0, report
    assert report["lost_layers"][0]["index_generation"] == gen
    assert 500 in read_statuses or compact.status_code == 500


def test_fresh_generation_and_multi_until_cutover_loses_nothing(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[])
    h = Harness(sim)
    tenant, timeline, gen = h.create_tenant("ps1", QUIET)
    build_history(h, "ps1", tenant, timeline, 3, "a")

    # RFC 028 order: origin Stale (flushed), fresh generation for the destination in Multi
    h.location("ps1", tenant, "AttachedStale", gen, QUIET, flush_ms="5000")
    new_gen = h.attach_hook(tenant, "ps2")
    assert new_gen > gen
    h.location("ps2", tenant, "AttachedMulti", new_gen, QUIET)
    h.wait_active("ps2", tenant)
    lsn = build_history(h, "ps2", tenant, timeline, 1, "b")
    h.wait_lsn("ps1", tenant, timeline, lsn)

    # both nodes compact; the origin's deletions fail validation, the destination holds its own in Multi
    for ps in ("ps1", "ps2"):
        h.checkpoint(ps, tenant, timeline)
        h.compact(ps, tenant, timeline)
        h.flush_deletions(ps)
    assert h.stats("ps2")["deletions_executed"] == 0

    # cutover: origin out, destination Single; now GC and deletions run on the destination only
    h.location("ps1", tenant, "Secondary", None, QUIET)
    h.location("ps2", tenant, "AttachedSingle", new_gen, QUIET)
    h.gc("ps2", tenant, timeline, horizon=0)
    h.flush_deletions("ps2")
    assert h.stats("ps2")["deletions_executed"] > 0
    assert h.stats("ps1")["deletions_executed"] == 0

    lsn = h.write_keys(tenant, timeline, 5, "c")
    h.wait_lsn("ps2", tenant, timeline, lsn)
    h.checkpoint("ps2", tenant, timeline)
    h.evict("ps2", tenant)
    for i in range(20):
        resp = h.read("ps2", tenant, timeline, f"k{i:04d}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["value"].startswith("c" if i < 5 else "b0")

    report = run_check(sim.dir)
    assert report["ok"], report
    assert report["keys_checked"] >= 20
    assert report["lost_layers_count"] == 0 and report["lost_keys_count"] == 0


def test_checker_uses_compute_acknowledged_writes(neonsim_fleet):
    """A healthy fleet with a running compute checks clean; deleting one referenced layer is reported."""
    compute = {"name": "compute1", "tenant": "plain", "workload": {"enabled": True, "write_rate": 200, "keys": 50}}
    sim = neonsim_fleet("small", computes=[compute])
    h = Harness(sim)
    tenant = sim.fleet["tenants"][0]["tenant_id"]
    timeline = sim.fleet["tenants"][0]["timelines"][0]["timeline_id"]
    workload_url = sim.url("compute1") + "/sim/workload"
    deadline = time.monotonic() + 30
    while h.http.get(workload_url, timeout=10).json()["writes_acked"] < 200:
        assert time.monotonic() < deadline, "workload did not write"
        time.sleep(0.2)
    h.call("POST", workload_url, {"action": "stop"}, service="compute")
    h.checkpoint("ps1", tenant, timeline)

    report = run_check(sim.dir)
    assert report["ok"], report
    assert report["keys_checked"] >= 40 and report["acked_writes"] >= 200
    cli = subprocess.run(
        [sys.executable, "-m", "neonsim", "check", "--dir", str(sim.dir)], capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["keys_checked"] == report["keys_checked"]

    s3conf = sim.fleet["s3"]
    s3 = sim.moto_s3()
    prefix = sim.fleet["pageservers"][0]["prefix_in_bucket"]
    timeline_prefix = f"{prefix}tenants/{tenant}/timelines/{timeline}/"
    deleted = set()
    # Background compaction may upload (and index) one more layer after the listing; delete until the
    # index references nothing that still exists, so the assertion below is about the checker only.
    for _ in range(5):
        listing = s3.list_objects_v2(Bucket=s3conf["bucket"], Prefix=timeline_prefix)
        layers = [o["Key"] for o in listing.get("Contents", []) if "index_part" not in o["Key"]]
        if layers:
            s3.delete_objects(Bucket=s3conf["bucket"], Delete={"Objects": [{"Key": k} for k in layers]})
            deleted.update(layers)
        report = run_check(sim.dir)
        if report["lost_layers_count"] == report["layers_checked"]:
            break
    layers = deleted
    assert not report["ok"]
    assert report["lost_layers_count"] == report["layers_checked"] > 0
    assert {entry["key"] for entry in report["lost_layers"]} <= set(layers)
    assert report["lost_keys_count"] == report["keys_checked"] >= 40
