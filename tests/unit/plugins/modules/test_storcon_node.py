from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import storcon_node
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN

PATH = "/control/v1/node/4"
ADDRESSES = {
    "listen_http_addr": "ps4.internal",
    "listen_http_port": 9898,
    "listen_pg_addr": "ps4.internal",
    "listen_pg_port": 6400,
    "availability_zone_id": "az-b",
}


def described(availability="Active", **changes):
    body = {
        "id": 4,
        "availability": availability,
        "scheduling": "Active",
        "listen_https_port": None,
        "listen_grpc_addr": None,
        "listen_grpc_port": None,
        **ADDRESSES,
    }
    body.update(changes)
    return body


def args(api, **kw):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, "node_id": 4, **ADDRESSES, **kw}


def test_registers_an_unknown_node_and_waits_until_active(fake_api, run_module):
    fake_api.add("GET", PATH, {"msg": "NotFound: Node 4 not registered"}, status=404)
    fake_api.add("GET", PATH, described("Offline"))
    fake_api.add("GET", PATH, described("Active"))
    fake_api.add("POST", "/control/v1/node", None)
    run = run_module(storcon_node, args(fake_api, wait_available=True, wait_timeout=10))
    assert not run.failed, run.result
    assert run.changed and run["registered"] and run["node"]["availability"] == "Active"
    posts = fake_api.mutating_requests
    assert [(r.method, r.path, r.body) for r in posts] == [("POST", "/control/v1/node", {"node_id": 4, **ADDRESSES})]
    assert run["diff"] == {
        "before": {},
        "after": {**dict.fromkeys(storcon_node._storcon.NODE_ADDRESS_FIELDS), **ADDRESSES},
    }
    assert SECRET_TOKEN not in run.raw


def test_registered_with_the_same_addresses_sends_nothing(fake_api, run_module):
    fake_api.add("GET", PATH, described())
    run = run_module(storcon_node, args(fake_api))
    assert not run.failed and not run.changed and not run["registered"]
    assert fake_api.mutating_requests == []


def test_registered_elsewhere_is_refused_and_nothing_is_sent(fake_api, run_module):
    fake_api.add("GET", PATH, described(listen_http_addr="old-host", listen_pg_port=6401))
    run = run_module(storcon_node, args(fake_api))
    assert run.failed and not run.changed
    assert "node 4 is already registered with different addresses" in run["msg"]
    assert "listen_http_addr is 'old-host', wanted 'ps4.internal'" in run["msg"]
    assert "listen_pg_port is 6401, wanted 6400" in run["msg"]
    assert fake_api.mutating_requests == []


def test_check_mode_reports_the_registration_and_sends_nothing(fake_api, run_module):
    fake_api.add("GET", PATH, {"msg": "NotFound: Node 4 not registered"}, status=404)
    run = run_module(storcon_node, args(fake_api, wait_available=True), check_mode=True)
    assert not run.failed and run.changed and run["registered"]
    assert fake_api.mutating_requests == []


def test_bad_ports_and_hosts_fail_before_any_request(fake_api, run_module):
    run = run_module(storcon_node, args(fake_api, listen_pg_port=70000))
    assert run.failed and "listen_pg_port: must be an integer from 1 to 65535 (a TCP port), got 70000" in run["msg"]
    run = run_module(storcon_node, args(fake_api, listen_http_addr="ps4 .internal"))
    assert run.failed and "listen_http_addr: must be a host name" in run["msg"]
    assert fake_api.requests == []


def test_a_bare_ipv6_address_is_refused_with_the_bracketed_form(fake_api, run_module):
    # Upstream registers it, then builds http://fd00::4:9898 (Node::base_url), which is no URL: the node stays Offline.
    run = run_module(storcon_node, args(fake_api, listen_http_addr="fd00::4"))
    assert run.failed and "listen_http_addr: must be a host name or address" in run["msg"]
    assert "an IPv6 address goes in brackets, as [fd00::4]" in run["msg"]
    assert fake_api.requests == []


@pytest.mark.parametrize(
    "addresses",
    [
        {"listen_http_addr": "10.0.4.7", "listen_pg_addr": "10.0.4.7"},
        {"listen_http_addr": "[fd00::4]", "listen_pg_addr": "[fd00::4]"},
        {"listen_http_addr": "ps4.internal.", "listen_grpc_addr": "ps4-grpc.internal", "listen_grpc_port": 51051},
        {"availability_zone_id": "use1-az2", "listen_https_port": 9899, "listen_http_port": 1, "listen_pg_port": 65535},
        {"listen_pg_port": "6400"},  # a port as plain text, as a template renders it
    ],
    ids=["ipv4", "ipv6", "host-with-root-dot-and-grpc", "zone-id-and-port-bounds", "port-as-text"],
)
def test_valid_addresses_are_registered_as_given(fake_api, run_module, addresses):
    fake_api.add("GET", PATH, {"msg": "NotFound: Node 4 not registered"}, status=404)
    fake_api.add("GET", PATH, described(**addresses))
    fake_api.add("POST", "/control/v1/node", None)
    run = run_module(storcon_node, args(fake_api, **addresses))
    assert not run.failed, run.result
    sent = fake_api.calls("POST", "/control/v1/node")[0].body
    expected = {key: int(value) if key.endswith("_port") else value for key, value in addresses.items()}
    assert sent == {"node_id": 4, **ADDRESSES, **expected}


def test_a_controller_error_is_reported_with_the_attempt(fake_api, run_module):
    fake_api.add("GET", PATH, {"msg": "NotFound: Node 4 not registered"}, status=404)
    fake_api.add("POST", "/control/v1/node", {"msg": "Conflict: Node 4 is already registered"}, status=409)
    run = run_module(storcon_node, args(fake_api))
    assert run.failed and "register node 4 with the storage controller" in run["msg"]
