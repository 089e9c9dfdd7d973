"""Sharded and branched tenants under live compute workloads: shard-aware ingest and reads, then the checker."""

from __future__ import annotations

import time

import pytest

from neonsim.checker import run_check
from neonsim.lsn import parse_lsn
from neonsim.pageserver.testing import Harness

pytestmark = pytest.mark.neonsim

COMPUTES = [
    {"name": "compute1", "tenant": "sharded", "workload": {"enabled": True, "write_rate": 60, "read_rate": 30}},
    {"name": "compute2", "tenant": "branched", "timeline": "child",
     "workload": {"enabled": True, "write_rate": 30, "read_rate": 30}},
]  # fmt: skip


def test_sharded_and_branched_workloads_read_back_and_check_clean(neonsim_fleet):
    sim = neonsim_fleet("default", computes=COMPUTES)
    h = Harness(sim)
    deadline = time.monotonic() + 60
    for name in ("compute1", "compute2"):
        while h.http.get(sim.url(name) + "/sim/workload", timeout=10).json()["reads_ok"] < 100:
            assert time.monotonic() < deadline, f"{name} workload made no progress"
            time.sleep(0.2)
    for name in ("compute1", "compute2"):
        h.call("POST", sim.url(name) + "/sim/workload", {"action": "stop"}, service="compute")
        stats = h.http.get(sim.url(name) + "/sim/workload", timeout=10).json()
        assert stats["reads_failed"] == 0 and stats["lost_writes"] == 0, stats

    sharded = next(t for t in sim.fleet["tenants"] if t["shard_count"] == 4)
    tenant, timeline = sharded["tenant_id"], sharded["timelines"][0]["timeline_id"]
    sk = sim.fleet["safekeepers"][0]
    commit_lsn = h.call("GET", f"{sim.url(sk['name'])}/v1/tenant/{tenant}/timeline/{timeline}",
                        service="safekeeper").json()["commit_lsn"]  # fmt: skip
    for number, ps in enumerate(sharded["pageservers"]):
        tsid = f"{tenant}-{number:02x}04"
        # each shard only stores its own keys, yet reaches the commit LSN through the stream's end_lsn
        h.wait_lsn(ps, tsid, timeline, parse_lsn(commit_lsn))
        assert h.timeline(ps, tsid, timeline)["tenant_id"] == tsid
        h.checkpoint(ps, tsid, timeline)

    report = run_check(sim.dir)
    assert report["ok"], report
    assert report["timelines_checked"] >= 4 + 2 + 2  # 4 shards, branched main+child, plain tenants
    assert report["keys_checked"] > 100
