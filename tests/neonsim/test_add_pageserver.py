"""`neonsim add-pageserver` (a new pageserver joins a running fleet) and the pageserver binary stand-in
(`python -m neonsim pageserver -D WORKDIR` reading an upstream-shaped pageserver.toml)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from fleet_helpers import wait_for

from neonsim import fleet as fleet_mod
from neonsim.topology import free_ports

pytestmark = pytest.mark.neonsim

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = {
    "seed": 11,
    "storage_controller": {"name": "storcon", "heartbeat_interval_s": 0.5, "offline_after_s": 3},
    "pageservers": [{"name": "ps1", "az": "az-a", "disk_capacity_bytes": 100 * 1024**2}],
    "safekeepers": [],
    "tenants": [],
    "computes": [],
}


@pytest.fixture(scope="module")
def sim(neonsim_fleet_module):
    return neonsim_fleet_module(TOPOLOGY)


def storcon_nodes(sim) -> dict:
    nodes = requests.get(f"{sim.storcon_url}/control/v1/node", timeout=10).json()
    return {n["id"]: n for n in nodes}


def register(sim, node_id: int, http_port: int, pg_port: int, az: str = "az-b", host: str = "127.0.0.1") -> None:
    body = {
        "node_id": node_id,
        "listen_pg_addr": host,
        "listen_pg_port": pg_port,
        "listen_http_addr": host,
        "listen_http_port": http_port,
        "availability_zone_id": az,
    }
    answer = requests.post(f"{sim.storcon_url}/control/v1/node", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def test_add_pageserver_leaves_registration_to_the_caller(sim):
    entry = fleet_mod.add_pageserver(
        sim.dir, "ps2", az="az-b", disk_capacity_bytes=400 * 1024**2, prefix_in_bucket="pageserver/"
    )
    assert entry["node_id"] == 2 and entry["self_register"] is False
    url = f"http://127.0.0.1:{entry['http_port']}"
    assert requests.get(f"{url}/v1/status", timeout=10).json() == {"id": 2}
    # Not registered: the controller does not know it, and its tenant map waits for re-attach.
    assert 2 not in storcon_nodes(sim)
    assert requests.get(f"{url}/v1/tenant", timeout=10).status_code == 503
    # fleet.json and the inventory carry it (contracts §4 host variables).
    fleet = fleet_mod.load_fleet(sim.dir)
    assert [p["name"] for p in fleet["pageservers"]] == ["ps1", "ps2"]
    inventory = yaml.safe_load((sim.dir / "inventory.yml").read_text())
    host = inventory["all"]["children"]["pageservers"]["hosts"]["ps2"]
    assert host["neon_node_id"] == 2 and host["neon_api_url"] == url
    assert host["neon_availability_zone"] == "az-b" and host["neon_s3_prefix"] == "pageserver/"

    register(sim, 2, entry["http_port"], entry["pg_port"])
    wait_for(lambda: requests.get(f"{url}/sim/health", timeout=5).status_code == 200, what="ps2 re-attached")
    wait_for(lambda: storcon_nodes(sim)[2]["availability"] == "Active", what="ps2 Active on the controller")
    utilization = requests.get(f"{url}/v1/utilization", timeout=10).json()
    assert utilization["disk_usage_bytes"] + utilization["free_space_bytes"] == 400 * 1024**2
    sim.kill("ps2")
    sim.start("ps2")  # a restart re-attaches as a known node
    assert requests.get(f"{url}/v1/tenant", timeout=10).status_code == 200


def test_add_pageserver_refuses_bad_input_and_changes_nothing(sim):
    before = (sim.dir / "fleet.json").read_text()
    inventory_before = (sim.dir / "inventory.yml").read_text()
    pids_before = set(sim.pids())
    for kwargs, words in (
        ({"name": "ps1"}, "name must be new"),
        ({"name": "storcon"}, "name must be new"),
        ({"name": "bad name"}, "name must be new"),
        ({"name": "ps9", "node_id": 1}, "node_id must be a positive integer not in use"),
        ({"name": "ps9", "node_id": 0}, "node_id must be"),
        ({"name": "ps9", "disk_capacity_bytes": 0}, "disk_capacity_bytes must be a positive integer"),
    ):
        with pytest.raises(fleet_mod.FleetError, match=words):
            fleet_mod.add_pageserver(sim.dir, **kwargs)
    assert (sim.dir / "fleet.json").read_text() == before
    assert (sim.dir / "inventory.yml").read_text() == inventory_before
    assert set(sim.pids()) == pids_before


def test_cli_add_pageserver_with_register(sim):
    proc = subprocess.run(
        [sys.executable, "-m", "neonsim", "add-pageserver", "ps3", "--dir", str(sim.dir), "--node-id", "7"]
        + ["--disk-capacity-bytes", str(10 * 1024**3), "--prefix-in-bucket", "other/", "--register"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)
    assert entry["node_id"] == 7 and entry["prefix_in_bucket"] == "other/"
    # --register: it registered itself through re-attach and waited until healthy.
    assert 7 in storcon_nodes(sim)
    proc = subprocess.run(
        [sys.executable, "-m", "neonsim", "add-pageserver", "ps3", "--dir", str(sim.dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "name must be new" in proc.stderr


def test_pageserver_binary_runs_from_pageserver_toml(sim, tmp_path):
    workdir = tmp_path / "ps-host"
    workdir.mkdir()
    http_port, pg_port = free_ports(2)
    fleet = sim.fleet
    (workdir / "pageserver.toml").write_text(
        "\n".join(
            [
                "id = 42",
                f'listen_http_addr = "127.0.0.1:{http_port}"',
                f'listen_pg_addr = "127.0.0.1:{pg_port}"',
                'availability_zone = "az-c"',
                f'control_plane_api = "{sim.storcon_url}/upcall/v1/"',
                'broker_endpoint = "http://127.0.0.1:50051"',
                'http_auth_type = "Trust"',
                "[remote_storage]",
                f'bucket_name = "{fleet["s3"]["bucket"]}"',
                f'bucket_region = "{fleet["s3"]["region"]}"',
                'prefix_in_bucket = "pageserver/"',
                f'endpoint = "{fleet["s3"]["endpoint_url"]}"',
                "",
            ]
        )
    )
    log = open(tmp_path / "ps.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "neonsim", "pageserver", "-D", str(workdir)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_for(lambda: _status(url) == {"id": 42}, timeout=60, what="binary answers /v1/status")
        assert 42 not in storcon_nodes(sim)  # no metadata.json: it does not register itself
        register(sim, 42, http_port, pg_port, az="az-c")
        wait_for(lambda: requests.get(f"{url}/v1/tenant", timeout=5).status_code == 200, what="re-attached")
        utilization = requests.get(f"{url}/v1/utilization", timeout=10).json()
        assert utilization["disk_usage_bytes"] + utilization["free_space_bytes"] > 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        log.close()


def test_pageserver_binary_refuses_a_config_it_cannot_run(tmp_path):
    (tmp_path / "pageserver.toml").write_text('id = 1\nlisten_http_addr = "127.0.0.1:1"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "neonsim", "pageserver", "-D", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "control_plane_api" in proc.stderr


def _status(url: str):
    try:
        return requests.get(f"{url}/v1/status", timeout=2).json()
    except (requests.RequestException, ValueError):
        return None


def test_pageserver_binary_takes_tenant_config_and_the_safekeepers_of_a_fleet(tmp_path, monkeypatch):
    from neonsim import pageserver_binary

    config = {
        "id": 7,
        "control_plane_api": "http://127.0.0.1:1/upcall/v1/",
        "availability_zone": "az-a",
        "remote_storage": {"bucket_name": "b"},
    }
    monkeypatch.delenv("NEONSIM_SAFEKEEPERS_FROM", raising=False)
    assert pageserver_binary.fleet_from_config(tmp_path, config, None)["safekeepers"] == []
    safekeepers = [{"name": "sk1", "node_id": 101, "az": "az-a", "http_port": 1, "pg_port": 2}]
    (tmp_path / "fleet.json").write_text(json.dumps({"safekeepers": safekeepers}))
    monkeypatch.setenv("NEONSIM_SAFEKEEPERS_FROM", str(tmp_path))
    assert pageserver_binary.fleet_from_config(tmp_path, config, None)["safekeepers"] == safekeepers
    # [tenant_config] of pageserver.toml: the pageserver-wide tenant defaults.
    tuned = {**config, "tenant_config": {"checkpoint_timeout": "2s"}}
    assert pageserver_binary.fleet_from_config(tmp_path, tuned, None)["tenant_defaults"] == {"checkpoint_timeout": "2s"}
    assert pageserver_binary.fleet_from_config(tmp_path, config, None)["tenant_defaults"] == {}
    monkeypatch.setenv("NEONSIM_SAFEKEEPERS_FROM", str(tmp_path / "missing"))
    with pytest.raises(pageserver_binary.ConfigError, match="NEONSIM_SAFEKEEPERS_FROM: cannot read"):
        pageserver_binary.fleet_from_config(tmp_path, config, None)
