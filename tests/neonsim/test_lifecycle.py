"""Fleet lifecycle through the CLI: up → status → kill → start → down, request logs, misuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from fleet_helpers import json_server

from neonsim import fleet as fleet_mod
from neonsim import topology

pytestmark = pytest.mark.neonsim

REPO = Path(__file__).resolve().parents[2]
CONTRACT_FIELDS = {"ts", "node", "method", "path", "query", "status", "mutating", "sim", "duration_ms"}


def cli(*args, check=True):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "neonsim", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    if check:
        assert proc.returncode == 0, f"neonsim {args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_cli_lifecycle_leaves_no_process(tmp_path):
    directory = tmp_path / "fleet"
    cli("up", "--topology", "storcon-only", "--dir", str(directory))
    pids = json.loads((directory / "pids.json").read_text())
    try:
        assert set(pids) == {"moto", "s3proxy", "storcon"}
        assert all(fleet_mod.pid_alive(p["pid"]) for p in pids.values())

        again = cli("up", "--topology", "storcon-only", "--dir", str(directory), check=False)
        assert again.returncode != 0 and "already running" in again.stderr

        status = cli("status", "--dir", str(directory), "--json")
        rows = {r["name"]: r for r in json.loads(status.stdout)}
        assert rows["storcon"]["alive"] and rows["storcon"]["health"] == "200"
        table = cli("status", "--dir", str(directory)).stdout
        assert "storcon" in table and "health" in table.splitlines()[0]

        old = pids["storcon"]["pid"]
        cli("kill", "storcon", "--dir", str(directory))
        assert not fleet_mod.pid_alive(old)
        down_status = cli("status", "--dir", str(directory), check=False)
        assert down_status.returncode == 1
        assert {r["name"]: r for r in fleet_mod.status(directory)}["storcon"]["health"] == "down"

        cli("start", "storcon", "--dir", str(directory))
        new = json.loads((directory / "pids.json").read_text())["storcon"]["pid"]
        assert new != old and fleet_mod.pid_alive(new)
        pids = json.loads((directory / "pids.json").read_text())
    finally:
        cli("down", "--dir", str(directory))
    assert not any(fleet_mod.pid_alive(p["pid"]) for p in pids.values())
    assert not (directory / "pids.json").exists()
    assert (directory / "logs" / "storcon.log").stat().st_size > 0

    # a stopped fleet's dir can be reused: up starts from clean node state (S3 lived in moto's memory)
    (directory / "storcon").mkdir(exist_ok=True)
    (directory / "storcon" / "state.json").write_text('{"nodes": {}, "tenants": {}, "shards": {"stale": {}}}')
    cli("up", "--topology", "storcon-only", "--dir", str(directory))
    try:
        assert not (directory / "storcon" / "state.json").exists()
    finally:
        cli("down", "--dir", str(directory))


def test_fleet_stops_when_its_owner_dies(tmp_path):
    # Stands in for a test run killed by a CI timeout: its fixture teardown never runs.
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    directory = tmp_path / "fleet"
    try:
        fleet_mod.up("storcon-only", directory, owner_pid=owner.pid)
        pids = json.loads((directory / "pids.json").read_text())
        assert "reaper" in pids and all(fleet_mod.pid_alive(p["pid"]) for p in pids.values())
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(fleet_mod.pid_alive(p["pid"]) for p in pids.values()):
            time.sleep(0.2)
        assert not [n for n, p in pids.items() if fleet_mod.pid_alive(p["pid"])]
        assert not (directory / "pids.json").exists()
    finally:
        owner.kill()
        fleet_mod.down(directory)


def test_request_log_contract_fields(neonsim_fleet):
    sim = neonsim_fleet("storcon-only")
    url = sim.storcon_url
    assert requests.get(url + "/control/v1/node", timeout=5).status_code == 200
    body = {
        "node_id": 7,
        "listen_pg_addr": "127.0.0.1",
        "listen_pg_port": 2,
        "listen_http_addr": "127.0.0.1",
        "listen_http_port": 1,
        "availability_zone_id": "az-a",
    }
    assert requests.post(url + "/control/v1/node", json=body, timeout=5).status_code == 200
    assert requests.put(url + "/control/v1/node/7/config", json={"node_id": 7}, timeout=5).status_code == 200
    assert requests.post(url + "/debug/v1/inspect", json={"tenant_shard_id": "a" * 32}, timeout=5).status_code == 200
    assert requests.get(url + "/no/such/route?x=1", timeout=5).json() == {"msg": "page not found"}

    lines = sim.request_log("storcon")
    assert lines and all(set(line) == CONTRACT_FIELDS for line in lines)
    by_route = {(line["method"], line["path"]): line for line in lines}
    get = by_route[("GET", "/control/v1/node")]
    assert get["mutating"] is False and get["sim"] is False and get["status"] == 200 and get["node"] == "storcon"
    assert by_route[("PUT", "/control/v1/node/7/config")]["mutating"] is True
    assert by_route[("POST", "/control/v1/node")]["mutating"] is True
    assert by_route[("POST", "/debug/v1/inspect")]["mutating"] is False  # read-only POST
    missing = by_route[("GET", "/no/such/route")]
    assert missing["status"] == 404 and missing["query"] == "x=1"
    assert by_route[("GET", "/sim/health")]["sim"] is True  # up's health polling
    assert all(isinstance(line["duration_ms"], float) for line in lines)


def test_inventory_matches_contract(neonsim_fleet):
    sim = neonsim_fleet("storcon-only", auth=True)
    inv = yaml.safe_load(sim.inventory_path.read_text())["all"]
    assert inv["vars"]["neonsim_dir"] == str(sim.dir)
    assert inv["vars"]["neon_s3_endpoint_url"] == sim.fleet["s3"]["endpoint_url"]
    assert inv["vars"]["neon_s3_bucket"] == "neon-sim"
    for var in ("neon_pageserver_api_token", "neon_safekeeper_api_token", "neon_storcon_api_token"):
        assert inv["vars"][var].count(".") == 2
    storcon = inv["children"]["storage_controller"]["hosts"]["storcon"]
    assert storcon["neon_api_url"] == sim.storcon_url
    assert storcon["ansible_connection"] == "local"
    assert storcon["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert set(inv["children"]) == {"pageservers", "safekeepers", "computes", "storage_controller"}


def test_topology_resolution_is_deterministic(tmp_path):
    topo = topology.load_topology("default")
    a = topology.resolve(topo, tmp_path)
    b = topology.resolve(topo, tmp_path)
    assert [t["tenant_id"] for t in a["tenants"]] == [t["tenant_id"] for t in b["tenants"]]
    tenants = {t["name"]: t for t in a["tenants"]}
    assert len(tenants) == 4 and tenants["sharded"]["shard_count"] == 4 and tenants["sharded"]["stripe_size"] == 2048
    child = tenants["branched"]["timelines"][1]
    assert child["ancestor_timeline_id"] == tenants["branched"]["timelines"][0]["timeline_id"]
    assert {p["az"] for p in a["pageservers"]} == {"az-a", "az-b"} and len(a["safekeepers"]) == 3
    assert [c["tenant_id"] for c in a["computes"]] == [tenants["plain"]["tenant_id"], tenants["branched"]["tenant_id"]]
    assert a["computes"][0]["workload"]["enabled"] is True
    ports = [a["storage_controller"]["http_port"]] + [p[k] for p in a["pageservers"] for k in ("http_port", "pg_port")]
    assert len(set(ports)) == len(ports)
    synthetic = topology.resolve({"pageservers": 2, "synthetic": {"count": 5, "size_bytes_range": [10, 20]}}, tmp_path)
    assert len(synthetic["tenants"]) == 5
    assert all(10 <= t["synthetic"]["physical_size_bytes"] <= 20 for t in synthetic["tenants"])
    with pytest.raises(topology.TopologyError):
        topology.resolve({"pageservers": 1, "tenants": [{"shard_count": 2, "pageservers": ["ps1"]}]}, tmp_path)
    with pytest.raises(topology.TopologyError):
        topology.resolve({"computes": [{"tenant": "nope"}]}, tmp_path)


def test_small_fleet_bootstrap_and_pageserver_crash_restart(neonsim_fleet):
    sim = neonsim_fleet("small")
    tenant = sim.fleet["tenants"][0]
    tenant_id, timeline_id = tenant["tenant_id"], tenant["timelines"][0]["timeline_id"]
    ps = sim.url("ps1")

    def inspect():
        body = {"tenant_shard_id": tenant_id}
        return requests.post(sim.storcon_url + "/debug/v1/inspect", json=body, timeout=5).json()["attachment"]

    gen, node_id = inspect()
    assert node_id == 1
    info = requests.get(f"{ps}/v1/tenant/{tenant_id}", timeout=10).json()
    assert info["state"]["slug"] == "Active" and info["generation"] == gen
    assert requests.get(f"{ps}/v1/tenant/{tenant_id}/timeline/{timeline_id}", timeout=10).status_code == 200
    for sk in ("sk1", "sk2", "sk3"):
        assert (
            requests.get(f"{sim.url(sk)}/v1/tenant/{tenant_id}/timeline/{timeline_id}", timeout=10).status_code == 200
        )
    compute = requests.get(sim.url("compute1") + "/status", timeout=10).json()
    assert compute["status"] == "running" and compute["tenant"] == tenant_id
    spec = json.loads(Path(sim.fleet["computes"][0]["spec_path"]).read_text())
    assert spec["pageserver_connection_info"]["shards"]["0000"]["pageservers"][0]["libpq_url"].endswith(
        f":{sim.fleet['pageservers'][0]['pg_port']}"
    )

    sim.kill("ps1")  # crash; on start the pageserver re-attaches and gets generation + 1
    sim.start("ps1")
    assert inspect() == [gen + 1, 1]
    deadline_info = None
    for _ in range(100):
        deadline_info = requests.get(f"{ps}/v1/tenant/{tenant_id}", timeout=10).json()
        if deadline_info.get("state", {}).get("slug") == "Active":
            break
    assert deadline_info["generation"] == gen + 1 and deadline_info["state"]["slug"] == "Active"
    rows = {r["name"]: r for r in sim.status()}
    assert all(r["alive"] and r["health"] == "200" for r in rows.values())

    # `check` runs neonsim.checker; its verdict is the checker's business, the wiring is ours
    checked = cli("check", "--dir", str(sim.dir), check=False)
    report = json.loads(checked.stdout)
    assert report["timelines_checked"] >= 1
    assert checked.returncode == (0 if report["ok"] else 1)


def test_small_fleet_with_auth_end_to_end(neonsim_fleet):
    """Every internal call (re-attach, heartbeats, bootstrap, compute configure) carries a valid token."""
    sim = neonsim_fleet("small", auth=True)
    tenant_id = sim.fleet["tenants"][0]["tenant_id"]
    assert requests.get(sim.url("ps1") + "/v1/tenant", timeout=10).status_code == 401
    tenants = requests.get(sim.url("ps1") + "/v1/tenant", headers=sim.headers("pageserver"), timeout=10).json()
    assert [t["id"] for t in tenants] == [tenant_id]
    status = requests.get(sim.url("compute1") + "/status", headers=sim.headers("compute"), timeout=10).json()
    assert status["status"] == "running"
    nodes = requests.get(sim.storcon_url + "/control/v1/node", headers=sim.headers("infra"), timeout=10).json()
    assert sorted(n["id"] for n in nodes) == [1, 2]
    inv = yaml.safe_load(sim.inventory_path.read_text())["all"]["vars"]
    assert inv["neon_compute_api_token"] == sim.tokens["compute"]
    for name in ("storcon", "ps1", "ps2", "sk1", "sk2", "sk3", "compute1"):
        refused = [line for line in sim.request_log(name) if line["status"] in (401, 403)]
        if name == "ps1":  # the one unauthenticated call above
            assert [(r["method"], r["path"]) for r in refused] == [("GET", "/v1/tenant")]
        else:
            assert refused == [], name


def test_a_health_answer_from_another_process_on_the_port_is_not_ours(tmp_path):
    """Between picking a free port and binding it another fleet's process can take the port and answer there, while
    ours exits with "address already in use": start-up must fail (and `up` retry), not bootstrap against a stranger."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "s3proxy.log").write_text("OSError: [Errno 98] address already in use\n")
    # Another fleet's S3 proxy on the port ours was given: it answers /sim/health 200, with its own pid.
    foreign = json_server(lambda path: (200, {"name": "s3proxy", "status": "ok", "pid": 1}))
    # Ours: a process that lives for a moment and exits, as a proxy that failed to bind does.
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    fleet_mod._CHILDREN[ours.pid] = ours
    try:
        with foreign as port:
            (tmp_path / "pids.json").write_text(json.dumps({"s3proxy": {"pid": ours.pid, "pgid": ours.pid}}))
            fleet = {"dir": str(tmp_path), "s3": {"proxy_port": port}}
            with pytest.raises(fleet_mod.FleetError, match="s3proxy exited during start-up(.|\n)*address already"):
                fleet_mod.wait_healthy(fleet, ["s3proxy"], timeout=30)
    finally:
        fleet_mod._CHILDREN.pop(ours.pid, None)
        ours.kill()
        ours.wait()
