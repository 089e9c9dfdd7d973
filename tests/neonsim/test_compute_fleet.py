"""compute_ctl and the workload in a live fleet: configure rules, clean run, pageserver loss, restart."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import pytest
import requests
from fleet_helpers import VERIFY_TIMEOUT_MS, report, wait_for, workload

pytestmark = pytest.mark.neonsim

# A generous read timeout: these tests assert zero failures, and a loaded CI machine can lag by seconds.
WORKLOAD = {"enabled": True, "write_rate": 20, "read_rate": 20, "keys": 50, "read_timeout_ms": 15000}


def configure(sim, body, name="compute1"):
    return requests.post(sim.url(name) + "/configure", json=body, headers=sim.headers("compute"), timeout=60)


def compute_status(sim, name="compute1") -> dict:
    return requests.get(sim.url(name) + "/status", headers=sim.headers("compute"), timeout=10).json()


def conf_lines(sim, name="compute1") -> list[str]:
    return (Path(sim.entry(name)["pgdata"]) / "postgresql.conf").read_text().splitlines()


def applied_spec(sim, name="compute1") -> dict:
    return json.loads(Path(sim.entry(name)["spec_path"]).read_text())


def test_workload_clean_then_fails_when_its_pageserver_dies(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[{"name": "compute1", "tenant": "plain", "workload": WORKLOAD}])
    wait_for(lambda: (r := report(sim))["writes_acked"] >= 40 and r["reads_ok"] >= 40, what="workload progress")
    clean = workload(sim, "verify", timeout_ms=VERIFY_TIMEOUT_MS)
    assert clean["verified"] is True
    assert clean["lost_writes"] == 0, clean["lost_write_samples"]
    assert clean["reads_failed"] == 0, clean["failures_by_reason"]
    assert clean["writes_failed"] == 0
    assert clean["read_latency_ms"]["p99"] is not None
    acked_log = (Path(sim.dir) / "compute1" / "acked_writes.jsonl").read_text().splitlines()
    assert len(acked_log) == clean["writes_acked"]

    workload(sim, "reset")
    workload(sim, "start")
    sim.kill("ps1")
    failing = wait_for(lambda: (r := report(sim))["reads_failed"] >= 3 and r, what="read failures")
    assert set(failing["failures_by_reason"]) <= {"connection_error", "timeout", "http_504", "http_503"}
    broken = workload(sim, "verify", timeout_ms=500)
    assert broken["lost_writes"] > 0  # nothing is readable without the pageserver


def test_configure_rules_on_a_live_compute(neonsim_fleet):
    sim = neonsim_fleet("small")
    spec = applied_spec(sim)
    assert compute_status(sim)["status"] == "running"
    ps1, ps2 = sim.entry("ps1"), sim.entry("ps2")
    assert f"neon.pageserver_connstring = 'postgres://no_user@127.0.0.1:{ps1['pg_port']}'" in conf_lines(sim)

    missing = configure(sim, {"spec": spec})
    assert missing.status_code == 400
    assert "compute_ctl_config" in missing.json()["error"]

    bad = copy.deepcopy(spec)
    bad["pageserver_connection_info"]["stripe_size"] = 8  # must be null when shard_count is 0
    assert configure(sim, {"spec": bad, "compute_ctl_config": {"jwks": {"keys": []}}}).status_code == 400

    # Point the compute at ps2 (connection info and legacy connstring together, as they must agree).
    moved = copy.deepcopy(spec)
    url2 = f"postgres://no_user@127.0.0.1:{ps2['pg_port']}"
    moved["pageserver_connection_info"]["shards"]["0000"]["pageservers"] = [{"id": ps2["node_id"], "libpq_url": url2}]
    moved["pageserver_connstring"] = url2
    ok = configure(sim, {"spec": moved, "compute_ctl_config": {"jwks": {"keys": []}}})
    assert ok.status_code == 200 and ok.json()["status"] == "running"
    assert f"neon.pageserver_connstring = '{url2}'" in conf_lines(sim)
    assert applied_spec(sim)["pageserver_connstring"] == url2

    # A slow configuration (catalog sync for many roles) is in progress: a second request gets 412.
    slow = copy.deepcopy(spec)
    slow["skip_pg_catalog_updates"] = False
    slow["cluster"]["roles"] = [{"name": f"role{i}"} for i in range(100)]
    results = {}
    first = threading.Thread(
        target=lambda: results.update(
            first=configure(sim, {"spec": slow, "compute_ctl_config": {"jwks": {"keys": []}}})
        )
    )
    first.start()
    wait_for(lambda: compute_status(sim)["status"] in ("configuration_pending", "configuration"), what="configuring")
    second = configure(sim, {"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}})
    first.join()
    assert second.status_code == 412
    assert second.json()["error"].startswith("invalid compute status: configuration")
    assert results["first"].status_code == 200
    assert f"neon.pageserver_connstring = 'postgres://no_user@127.0.0.1:{ps1['pg_port']}'" in conf_lines(sim)


def test_restarted_compute_resumes_its_spec_and_workload(neonsim_fleet):
    sim = neonsim_fleet("small", computes=[{"name": "compute1", "tenant": "plain", "workload": WORKLOAD}])
    wait_for(lambda: report(sim)["writes_acked"] >= 10, what="writes before the restart")
    sim.kill("compute1")
    sim.start("compute1")
    assert compute_status(sim)["status"] == "running"
    # acknowledged writes from the first life are remembered and checked again
    wait_for(lambda: report(sim)["writes_acked"] >= 10, what="writes after the restart")
    after = workload(sim, "verify", timeout_ms=VERIFY_TIMEOUT_MS)
    assert after["acked_keys"] > 0
    assert after["lost_writes"] == 0, after["lost_write_samples"]
