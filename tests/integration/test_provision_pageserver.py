"""Grow the fleet end to end on neonsim: ps3 is 85 % full, `neonsim add-pageserver` brings ps4 with a bigger disk
(standing in for the EC2 instance and its configured host), and `neonops.storage.provision_pageserver` registers
it and moves the largest tenants of ps3 onto it under a live workload, with a report of every disk before and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from migration_harness import (
    REPO,
    WORKLOAD,
    ansible_env,
    locations,
    mutating_requests,
    tenant_id,
    topology,
    unavailable_reads,
    verdict,
    wait_for_writes,
    workload_action,
)

from neonsim import fleet as fleet_mod

pytestmark = pytest.mark.neonsim

GIB = 1024**3
PLAYBOOK = "neonops.storage.provision_pageserver"
# ps3: 100 GiB, 85 GiB of it tenants. "hot" has a live compute on its main timeline and a big branch.
SIZES = {"hot": 30 * GIB, "cold1": 20 * GIB, "cold2": 20 * GIB, "small": 15 * GIB}


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    tenants = [
        {"name": "hot", "pageservers": ["ps3"], "timelines": [{"name": "main"}, {"name": "bulk", "parent": "main"}]},
        {"name": "cold1", "pageservers": ["ps3"]},
        {"name": "cold2", "pageservers": ["ps3"]},
        {"name": "small", "pageservers": ["ps3"]},
        {"name": "elsewhere", "pageservers": ["ps1"]},
    ]
    computes = [{"name": "c-hot", "tenant": "hot", "workload": WORKLOAD}]
    sim = neonsim_fleet_module(
        {
            **topology(tenants, computes),
            "pageservers": [
                {"name": "ps1", "node_id": 1, "az": "az-a", "disk_capacity_bytes": 100 * GIB},
                {"name": "ps3", "node_id": 3, "az": "az-b", "disk_capacity_bytes": 100 * GIB},
            ],
        }
    )
    for name, size in SIZES.items():
        body = {"physical_size_bytes": size, "layers": 4}
        if name == "hot":
            bulk = next(t for t in sim.fleet["tenants"] if t["name"] == "hot")["timelines"][1]["timeline_id"]
            body["timeline_id"] = bulk
        made = requests.post(f"{sim.url('ps3')}/sim/tenant/{tenant_id(sim, name)}/synthetic", json=body, timeout=60)
        made.raise_for_status()
    wait_for_writes(sim, "c-hot")
    # The new pageserver, not registered: the playbook registers it.
    proc = subprocess.run(
        [sys.executable, "-m", "neonsim", "add-pageserver", "ps4", "--dir", str(sim.dir), "--node-id", "4"]
        + ["--az", "az-b", "--disk-capacity-bytes", str(200 * GIB)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    sim.fleet = fleet_mod.load_fleet(sim.dir)
    return sim


def provision(fleet, report_dir: Path, check=False, **extra):
    report_dir.mkdir(parents=True, exist_ok=True)
    extra_vars = {
        "provision_pageserver_node": "ps4",
        "provision_pageserver_launch_instance": False,
        "provision_pageserver_configure_host": False,
        "provision_pageserver_relieve": True,
        "provision_pageserver_target_pct": 50,
        "provision_pageserver_max_tenants": 3,
        "provision_pageserver_report_dir": str(report_dir),
        **extra,
    }
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(fleet.inventory_path), PLAYBOOK]
    cmd += ["-e", json.dumps(extra_vars)] + (["--check"] if check else [])
    started = time.time()
    proc = subprocess.run(
        cmd, cwd=report_dir, env=ansible_env(report_dir), capture_output=True, text=True, timeout=1500
    )
    reports = sorted(report_dir.glob("provision-*.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(reports[-1].read_text()) if reports and reports[-1].stat().st_mtime >= started - 1 else None
    return proc.returncode, proc.stdout + proc.stderr, report


def storcon_node(fleet, node_id: int):
    answer = requests.get(f"{fleet.storcon_url}/control/v1/node/{node_id}", timeout=10)
    return answer.json() if answer.status_code == 200 else None


def own_changes(fleet, since: float) -> list[dict]:
    # The pageservers' own re-attach and validate upcalls are not the playbook's.
    return [r for r in mutating_requests(fleet, since_ts=since) if not r["path"].startswith("/upcall/")]


def test_check_mode_prints_the_plan_and_changes_nothing(fleet, tmp_path):
    started = time.time()
    rc, output, report = provision(fleet, tmp_path / "check", check=True)
    assert rc == 0, output[-6000:]
    assert own_changes(fleet, started) == []
    assert storcon_node(fleet, 4) is None
    assert report is None
    hot, cold = tenant_id(fleet, "hot"), min(tenant_id(fleet, "cold1"), tenant_id(fleet, "cold2"))
    assert f"move 1: tenant {hot}" in output and f"move 2: tenant {cold}" in output, output[-6000:]
    assert "source ps3: 85." in output


def test_a_plan_that_would_overfill_the_destination_is_refused(fleet, tmp_path):
    started = time.time()
    rc, output, _ = provision(fleet, tmp_path / "refused", provision_pageserver_destination_max_pct=20)
    assert rc != 0
    assert "destination_max_pct: ps4 would be 25.0 % full" in output, output[-6000:]
    # Registered (the step before the plan), and nothing moved.
    assert [r["path"] for r in own_changes(fleet, started)] == ["/control/v1/node"]
    assert all(tsid not in locations(fleet, "ps4") for tsid in (tenant_id(fleet, n) for n in SIZES))


def test_grow_the_fleet_moves_the_largest_tenants_under_load(fleet, tmp_path):
    if not requests.get(f"{fleet.url('c-hot')}/sim/workload", timeout=10).json().get("running"):
        workload_action(fleet, "c-hot", "start")
    wait_for_writes(fleet, "c-hot", at_least=20)
    rc, output, report = provision(fleet, tmp_path / "run")
    assert rc == 0, output[-8000:]
    result = verdict(fleet, "c-hot")

    moved = [tenant_id(fleet, "hot"), min(tenant_id(fleet, "cold1"), tenant_id(fleet, "cold2"))]
    assert [m["tenant_id"] for m in report["moves"]] == moved
    assert all(m["outcome"] == "migrated" for m in report["moves"]), report["moves"]
    on_ps4, on_ps3 = locations(fleet, "ps4"), locations(fleet, "ps3")
    for tid in moved:
        assert on_ps4[tid]["mode"] == "AttachedSingle"
        assert tid not in on_ps3  # detached: a secondary left behind would keep ps3's disk full
    assert storcon_node(fleet, 4)["availability"] == "Active"

    nodes = {n["name"]: n for n in report["nodes"]}
    assert set(nodes) == {"ps1", "ps3", "ps4"}
    assert nodes["ps3"]["before"]["pct"] >= 85
    assert nodes["ps3"]["after"]["pct"] <= 50, nodes["ps3"]
    assert nodes["ps4"]["after"]["used_bytes"] > nodes["ps4"]["before"]["used_bytes"]
    markdown = Path(str(tmp_path / "run" / f"provision-{report['run_id']}.md")).read_text()
    assert "| ps3 | 85." in markdown and "| ps4 |" in markdown

    # Under load: every read answered, every acknowledged write read back.
    assert result["verified"]["lost_writes"] == 0, result
    assert unavailable_reads(result["during"]) == {}, result["during"]

    # A rerun finds ps4 registered and ps3 under the target: nothing to do.
    rc, output, again = provision(fleet, tmp_path / "rerun")
    assert rc == 0, output[-6000:]
    assert again["outcome"] == "no_moves" and again["moves"] == []


def test_a_failed_move_is_reported_with_its_outcome_and_the_moves_after_it(fleet, tmp_path):
    """ps4 refuses every location change: the first move rolls back, the second never starts; the report says so
    (it used to say no_moves with an empty table) and the playbook fails."""
    # Both on ps3 before and after the grow-the-fleet test (it moves hot and the smaller id of cold1/cold2).
    first, second = tenant_id(fleet, "small"), max(tenant_id(fleet, "cold1"), tenant_id(fleet, "cold2"))
    fleet.fault("ps4", routes=r"^PUT /v1/tenant/[^/]+/location_config$", status=500)
    try:
        rc, output, report = provision(
            fleet,
            tmp_path / "failing",
            provision_pageserver_relieve=False,
            provision_pageserver_tenants=[first, second],
            provision_pageserver_relieve_source="ps3",
        )
    finally:
        fleet_mod.fault(fleet.dir, "ps4", None)
    assert rc != 0, output[-6000:]
    assert report is not None and report["outcome"] == "failed", output[-6000:]
    moves = [(m["tenant_id"], m["outcome"]) for m in report["moves"]]
    assert moves[0][0] == first and moves[0][1] not in ("migrated", "already_done", "failed"), report["moves"]
    assert moves[1:] == [(second, "not_started")], report["moves"]
    assert report["moves"][0]["report"], report["moves"][0]  # the migration's own report
    assert locations(fleet, "ps3")[first]["mode"] == "AttachedSingle"
    markdown = Path(str(tmp_path / "failing" / f"provision-{report['run_id']}.md")).read_text()
    assert "**Outcome: failed**" in markdown and f"| {second} |" in markdown and "not_started" in markdown
