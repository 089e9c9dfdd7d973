"""HTTPS mode (contracts §5.6): every node's API port serves HTTPS with a certificate from the fleet CA, node-to-node
calls trust that CA, the sim-only pg ports stay plain HTTP, and the inventory hands the CA to the collection."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from fleet_helpers import wait_for

from neonsim import _tls, inventory, topology

pytestmark = pytest.mark.neonsim

REPO = Path(__file__).resolve().parents[2]
# One route of each node kind's upstream API that needs no token.
API_ROUTES = {"storcon": "/status", "ps1": "/v1/status", "sk1": "/v1/status", "compute1": "/status"}
# Small on purpose (2 shared cores): the controller, one pageserver, two safekeepers (so they poll each other), one
# compute without a workload.
TLS_TOPOLOGY = {
    "seed": 11,
    "storage_controller": {"name": "storcon", "heartbeat_interval_s": 1, "offline_after_s": 10},
    "pageservers": [{"name": "ps1", "az": "az-a"}],
    "safekeepers": [{"name": "sk1", "az": "az-a"}, {"name": "sk2", "az": "az-b"}],
    "tenants": [{"name": "plain", "pageservers": ["ps1"]}],
    "computes": [{"name": "compute1", "tenant": "plain", "workload": {"enabled": False}}],
}


@pytest.fixture(scope="module")
def sim(neonsim_fleet_module):
    return neonsim_fleet_module(TLS_TOPOLOGY, tls=True)


def port(sim, name: str) -> int:
    return sim.entry(name)["http_port"]


def tenant(sim) -> tuple[str, str]:
    entry = sim.fleet["tenants"][0]
    return entry["tenant_id"], entry["timelines"][0]["timeline_id"]


def test_tls_fleet_comes_up_healthy(sim):
    rows = {r["name"]: r for r in sim.status()}
    assert all(r["alive"] and r["health"] == "200" for r in rows.values()), rows
    assert sim.fleet["tls"] == {
        "enabled": True,
        "ca_path": str(sim.dir / "tls" / "ca.pem"),
        "cert_dir": str(sim.dir / "tls"),
    }
    assert sim.tls and sim.ca_path == sim.fleet["tls"]["ca_path"] and sim.verify == sim.ca_path
    nodes = ["storcon", "ps1", "sk1", "sk2", "compute1"]
    assert sorted(p.name for p in (sim.dir / "tls").iterdir()) == sorted(
        ["ca.pem"] + [f"{n}.crt" for n in nodes] + [f"{n}.key" for n in nodes]
    )
    for name in nodes:
        assert stat.S_IMODE((sim.dir / "tls" / f"{name}.key").stat().st_mode) == 0o600, name


@pytest.mark.parametrize("name", sorted(API_ROUTES))
def test_each_node_kind_answers_its_api_over_https(sim, name):
    url = sim.url(name) + API_ROUTES[name]
    assert url.startswith("https://127.0.0.1:")
    resp = requests.get(url, verify=sim.ca_path, timeout=10)
    assert resp.status_code == 200, resp.text
    # The certificate names localhost too, so hostname verification passes for either name.
    by_name = requests.get(f"https://localhost:{port(sim, name)}{API_ROUTES[name]}", verify=sim.ca_path, timeout=10)
    assert by_name.status_code == 200


@pytest.mark.parametrize("name", ["storcon", "ps1"])
def test_a_client_without_the_fleet_ca_fails_certificate_verification(sim, name):
    url = sim.url(name) + API_ROUTES[name]
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(url, timeout=10)
    # Nor does a plain SSL context with the system trust store: only the fleet CA vouches for the nodes.
    context = ssl.create_default_context()
    with (
        socket.create_connection(("127.0.0.1", port(sim, name)), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(sock, server_hostname="127.0.0.1")


@pytest.mark.parametrize("name", ["ps1", "sk1"])
def test_plain_http_to_an_api_port_fails(sim, name):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port(sim, name)}{API_ROUTES[name]}", timeout=10)


def test_sim_pg_ports_stay_plain_http(sim):
    # Stand-ins for libpq (contracts §5.3): the workload and WAL streaming reach them over plain HTTP.
    for name in ("ps1", "sk1"):
        assert sim.pg_url(name).startswith("http://")
        resp = requests.get(sim.pg_url(name) + "/no-such-route", timeout=10)
        assert resp.status_code == 404 and resp.json() == {"msg": "page not found"}


def test_served_certificates_come_from_the_fleet_ca_and_carry_the_sans(sim):
    ca = x509.load_pem_x509_certificate(Path(sim.ca_path).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in API_ROUTES:
        served = ssl.get_server_certificate(("127.0.0.1", port(sim, name)), timeout=10)
        on_disk = (sim.dir / "tls" / f"{name}.crt").read_text()
        assert served.strip() == on_disk.strip(), name
        cert = x509.load_pem_x509_certificate(on_disk.encode())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_node_to_node_calls_use_https(sim):
    tenant_id, timeline_id = tenant(sim)
    # Safekeepers poll each other's timeline status over HTTPS.
    url = f"{sim.url('sk1')}/v1/tenant/{tenant_id}/timeline/{timeline_id}"
    peers = wait_for(
        lambda: [p["sk_id"] for p in requests.get(url, verify=sim.ca_path, timeout=10).json()["peers"]],
        what="sk1 to learn of sk2",
    )
    assert peers == [sim.entry("sk2")["node_id"]]
    # The controller heartbeats the pageserver over HTTPS on the port it registered as listen_https_port.
    node = requests.get(f"{sim.storcon_url}/control/v1/node/1", verify=sim.ca_path, timeout=10).json()
    assert node["listen_https_port"] == port(sim, "ps1") and node["availability"] == "Active", node
    # The pageserver asked the safekeepers' APIs (HTTPS) for their commit LSN before streaming WAL.
    ps_timeline = requests.get(
        f"{sim.url('ps1')}/v1/tenant/{tenant_id}/timeline/{timeline_id}", verify=sim.ca_path, timeout=10
    ).json()
    assert ps_timeline["walreceiver_status"] == "Streaming", ps_timeline
    sk_calls = [r for r in sim.request_log("sk1") if r["path"] == f"/v1/tenant/{tenant_id}/timeline/{timeline_id}"]
    assert any(r["status"] == 200 for r in sk_calls)


def test_storcon_refuses_a_node_without_an_https_port(sim):
    body = {
        "node_id": 77,
        "listen_pg_addr": "127.0.0.1",
        "listen_pg_port": 1,
        "listen_http_addr": "127.0.0.1",
        "listen_http_port": 2,
        "availability_zone_id": "az-a",
    }
    resp = requests.post(f"{sim.storcon_url}/control/v1/node", json=body, verify=sim.ca_path, timeout=10)
    assert resp.status_code == 412, resp.text
    assert "https port is not specified" in resp.json()["msg"]


def test_fault_helpers_reach_the_node_over_https(sim):
    sim.fault("ps1", status=503, routes="^/v1/status$")
    try:
        assert requests.get(sim.url("ps1") + "/v1/status", verify=sim.ca_path, timeout=10).status_code == 503
    finally:
        sim.clear_fault("ps1")
    assert requests.get(sim.url("ps1") + "/v1/status", verify=sim.ca_path, timeout=10).status_code == 200


def test_pageserver_restart_reattaches_over_tls(sim):
    tenant_id, _ = tenant(sim)

    def location():
        resp = requests.get(f"{sim.url('ps1')}/v1/location_config/{tenant_id}", verify=sim.ca_path, timeout=10)
        return resp.json() if resp.status_code == 200 else None

    generation = location()["generation"]
    reattaches = len([r for r in sim.request_log("storcon") if r["path"] == "/upcall/v1/re-attach"])

    sim.kill("ps1")
    sim.start("ps1")

    log = [r for r in sim.request_log("storcon") if r["path"] == "/upcall/v1/re-attach"]
    assert len(log) > reattaches and log[-1]["status"] == 200, log
    # Re-attach bumps the generation; the tenant is served again over HTTPS.
    assert location()["generation"] == generation + 1
    info = requests.get(f"{sim.url('ps1')}/v1/tenant/{tenant_id}", verify=sim.ca_path, timeout=10).json()
    assert info["state"]["slug"] == "Active"
    # The controller sees it again through an HTTPS heartbeat.
    wait_for(
        lambda: (
            requests.get(f"{sim.storcon_url}/control/v1/node/1", verify=sim.ca_path, timeout=10).json()["availability"]
            == "Active"
        ),
        what="ps1 Active on the controller after the restart",
    )


def test_inventory_gives_https_urls_and_the_ca(sim):
    inv = yaml.safe_load(sim.inventory_path.read_text())["all"]
    assert inv["vars"]["neon_ca_path"] == sim.ca_path
    urls = {
        host: hostvars["neon_api_url"]
        for group in inv["children"].values()
        for host, hostvars in (group.get("hosts") or {}).items()
    }
    assert set(urls) == {"storcon", "ps1", "sk1", "sk2", "compute1"}
    assert all(url == f"https://127.0.0.1:{port(sim, host)}" for host, url in urls.items()), urls


# --- without a running fleet ------------------------------------------------------------------------------------


def test_tls_is_off_unless_asked(tmp_path):
    fleet = topology.resolve({"pageservers": 1}, tmp_path)
    assert fleet["tls"] == {"enabled": False, "ca_path": None, "cert_dir": None}
    inv = inventory.build_inventory(fleet)["all"]
    assert "neon_ca_path" not in inv["vars"]
    assert inv["children"]["pageservers"]["hosts"]["ps1"]["neon_api_url"].startswith("http://")
    assert topology.resolve({"tls": True}, tmp_path)["tls"]["enabled"]
    assert not topology.resolve({"tls": True}, tmp_path, tls=False)["tls"]["enabled"]
    assert topology.resolve({}, tmp_path, tls=True)["tls"]["ca_path"] == str(tmp_path.resolve() / "tls" / "ca.pem")


def test_generated_certificates_verify_against_the_ca_only(tmp_path):
    tls = _tls.tls_settings(tmp_path, True)
    paths = _tls.generate_certificates(tls, ["ps1"])
    cert, key = paths["ps1"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert _tls.server_context({"tls": tls}, "ps1") is not None  # the key matches the certificate
    # A second fleet's CA does not vouch for this fleet's certificates.
    other = _tls.tls_settings(tmp_path / "other", True)
    _tls.generate_certificates(other, [])
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(Path(tls["ca_path"]).read_bytes()))
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(Path(other["ca_path"]).read_bytes()))


def test_cli_up_tls_writes_https_inventory_and_fleet_record(tmp_path):
    directory = tmp_path / "fleet"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "neonsim", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=180
        )

    up = cli("up", "--tls", "--topology", "storcon-only", "--dir", str(directory))
    try:
        assert up.returncode == 0, up.stderr
        assert str(directory / "tls" / "ca.pem") in up.stdout
        fleet = json.loads((directory / "fleet.json").read_text())
        assert fleet["tls"]["enabled"] and Path(fleet["tls"]["ca_path"]).is_file()
        inv = yaml.safe_load((directory / "inventory.yml").read_text())["all"]
        assert inv["vars"]["neon_ca_path"] == fleet["tls"]["ca_path"]
        storcon_url = inv["children"]["storage_controller"]["hosts"]["storcon"]["neon_api_url"]
        assert storcon_url.startswith("https://")
        assert requests.get(storcon_url + "/status", verify=fleet["tls"]["ca_path"], timeout=10).status_code == 200
        status = cli("status", "--dir", str(directory), "--json")
        assert status.returncode == 0 and all(r["health"] == "200" for r in json.loads(status.stdout)), status.stdout
    finally:
        down = cli("down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
