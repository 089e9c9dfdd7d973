"""Safekeepers in a live fleet: quorum commit with safekeepers killed, WAL trimming and 410 for old starts."""

from __future__ import annotations

import pytest
import requests
from fleet_helpers import VERIFY_TIMEOUT_MS, report, wait_for, workload

from neonsim.lsn import parse_lsn

pytestmark = pytest.mark.neonsim

# A generous read timeout: these tests assert zero failures, and a loaded CI machine can lag by seconds.
WORKLOAD = {"enabled": True, "write_rate": 20, "read_rate": 5, "keys": 50, "read_timeout_ms": 15000}


def timeline_status(sim, sk: str) -> dict:
    compute = sim.entry("compute1")
    r = requests.get(
        f"{sim.url(sk)}/v1/tenant/{compute['tenant_id']}/timeline/{compute['timeline_id']}",
        headers=sim.headers("safekeeper"),
        timeout=10,
    )
    r.raise_for_status()
    return r.json()


def test_quorum_commit_with_safekeepers_killed(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[{"name": "compute1", "tenant": "plain", "workload": WORKLOAD}])
    wait_for(lambda: report(sim)["writes_acked"] >= 10, what="first acknowledged writes")

    sim.kill("sk3")
    acked = report(sim)["writes_acked"]
    wait_for(lambda: report(sim)["writes_acked"] >= acked + 10, what="writes committing with one safekeeper down")

    sim.kill("sk2")

    sk1_url = f"http://127.0.0.1:{sim.entry('sk1')['pg_port']}"

    def stalled():
        wp = report(sim)["walproposer"]
        sk1 = next(s for s in wp["safekeepers"] if s["url"] == sk1_url)
        return sk1["flush_lsn"] is not None and parse_lsn(sk1["flush_lsn"]) > parse_lsn(wp["commit_lsn"]) and wp

    wp = wait_for(stalled, what="WAL flushed on the single live safekeeper")
    sk1_flushed = parse_lsn(next(s for s in wp["safekeepers"] if s["url"] == sk1_url)["flush_lsn"])
    stalled_acked = report(sim)["writes_acked"]
    # Writes keep queueing (pending) while WAL that sk1 flushed earlier still is not committed.
    later = wait_for(lambda: (r := report(sim))["writes_pending"] >= 5 and r, what="writes queueing while stalled")
    assert later["writes_acked"] == stalled_acked
    assert parse_lsn(later["walproposer"]["commit_lsn"]) < sk1_flushed
    assert parse_lsn(timeline_status(sim, "sk1")["commit_lsn"]) < sk1_flushed

    sim.start("sk2")
    wait_for(lambda: report(sim)["writes_acked"] > stalled_acked + 5, what="writes committing again")

    sim.start("sk3")
    # the restarted safekeeper kept its WAL and catches up to the others
    wait_for(
        lambda: (
            parse_lsn(timeline_status(sim, "sk3")["flush_lsn"]) >= parse_lsn(timeline_status(sim, "sk1")["commit_lsn"])
        ),
        what="sk3 catching up",
    )
    final = workload(sim, "verify", timeout_ms=VERIFY_TIMEOUT_MS)
    assert final["lost_writes"] == 0, final["lost_write_samples"]
    assert final["writes_acked"] > stalled_acked


def test_wal_trimmed_below_remote_consistent_lsn_and_old_start_gets_410(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[{"name": "compute1", "tenant": "plain", "workload": WORKLOAD}])

    def all_trimmed():
        statuses = {sk: timeline_status(sim, sk) for sk in ("sk1", "sk2", "sk3")}
        done = all(parse_lsn(s["local_start_lsn"]) > parse_lsn(s["timeline_start_lsn"]) for s in statuses.values())
        return done and statuses

    # Only the safekeeper the pageserver streams from hears its feedback; the others learn it from peers.
    statuses = wait_for(all_trimmed, timeout=90, what="WAL trimmed on every safekeeper after the pageserver uploaded")
    streaming = [sk for sk, st in statuses.items() if st["walsenders"]]
    assert len(streaming) == 1
    sender = statuses[streaming[0]]["walsenders"][0]["Interpreted"]
    assert sender["feedback"]["Pageserver"]["shard_number"] == 0
    for sk, st in statuses.items():
        assert parse_lsn(st["local_start_lsn"]) <= parse_lsn(st["remote_consistent_lsn"]) <= parse_lsn(st["commit_lsn"])
        assert len(st["peers"]) == 2, sk

    compute = sim.entry("compute1")
    for sk, st in statuses.items():
        params = {
            "tenant_id": compute["tenant_id"],
            "timeline_id": compute["timeline_id"],
            "start_lsn": st["timeline_start_lsn"],
            "shard_count": "0",
            "wait_ms": "0",
        }
        r = requests.get(sim.pg_url(sk) + "/sim/wal/stream", params=params, timeout=10)
        assert r.status_code == 410, sk
        assert "has already been removed" in r.json()["msg"]
        # from the trimmed horizon on, streaming works
        params["start_lsn"] = timeline_status(sim, sk)["local_start_lsn"]
        assert requests.get(sim.pg_url(sk) + "/sim/wal/stream", params=params, timeout=10).status_code == 200
