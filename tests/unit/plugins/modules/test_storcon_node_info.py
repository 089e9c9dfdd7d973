from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import storcon_node_info
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN


def node(node_id, scheduling="Active", availability="Active"):
    return {
        "id": node_id,
        "availability": availability,
        "scheduling": scheduling,
        "availability_zone_id": "az-a",
        "listen_http_addr": "127.0.0.1",
        "listen_http_port": 9898 + node_id,
        "listen_https_port": None,
        "listen_pg_addr": "127.0.0.1",
        "listen_pg_port": 64000 + node_id,
        "listen_grpc_addr": None,
        "listen_grpc_port": None,
    }


def args(api, **kw):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, **kw}


def test_one_node_is_returned_as_given(fake_api, run_module):
    fake_api.add("GET", "/control/v1/node/2", node(2, scheduling="Draining"))
    run = run_module(storcon_node_info, args(fake_api, node_id=2))
    assert not run.failed, run.result
    assert not run.changed
    assert run["found"] is True
    assert run["nodes"] == [node(2, scheduling="Draining")]
    assert fake_api.requests[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert SECRET_TOKEN not in run.raw


def test_without_node_id_every_node_is_listed(fake_api, run_module):
    fake_api.add("GET", "/control/v1/node", [node(1), node(2)])
    run = run_module(storcon_node_info, args(fake_api))
    assert not run.failed, run.result
    assert [n["id"] for n in run["nodes"]] == [1, 2]
    assert run["found"] is True
    assert [r.path for r in fake_api.requests] == ["/control/v1/node"]


def test_empty_list_is_not_found(fake_api, run_module):
    fake_api.add("GET", "/control/v1/node", [])
    run = run_module(storcon_node_info, args(fake_api))
    assert not run.failed
    assert (run["nodes"], run["found"]) == ([], False)


def test_unknown_node_is_not_a_failure(fake_api, run_module):
    fake_api.add("GET", "/control/v1/node/7", {"msg": "NotFound: Node 7 not registered"}, 404)
    run = run_module(storcon_node_info, args(fake_api, node_id=7))
    assert not run.failed, run.result
    assert (run["nodes"], run["found"]) == ([], False)


def test_a_url_that_is_not_a_storage_controller_fails(fake_api, run_module):
    # Nothing registered: the fake answers like the shared router, 404 "page not found".
    run = run_module(storcon_node_info, args(fake_api, node_id=7))
    assert run.failed
    assert "does not serve the storage controller API" in run["msg"]
    assert run["status"] == 404


@pytest.mark.parametrize("status", [401, 403, 500])
def test_errors_name_what_was_attempted(fake_api, run_module, status):
    fake_api.add("GET", "/control/v1/node/2", {"msg": "Forbidden: JWT authentication error"}, status)
    run = run_module(storcon_node_info, args(fake_api, node_id=2, retries=0))
    assert run.failed
    assert run["msg"].startswith("read node 2 on the storage controller failed")
    assert run["status"] == status
    assert SECRET_TOKEN not in run.raw


def test_check_mode_reads_the_same(fake_api, run_module):
    fake_api.add("GET", "/control/v1/node/2", node(2))
    run = run_module(storcon_node_info, args(fake_api, node_id=2), check_mode=True)
    assert not run.failed and not run.changed
    assert run["found"] is True
    assert fake_api.mutating_requests == []


@pytest.mark.parametrize(
    ("overrides", "expected"), [({"node_id": -1}, "node_id"), ({"api_url": "storcon:1234"}, "api_url")]
)
def test_bad_input_fails_before_any_request(fake_api, run_module, overrides, expected):
    run = run_module(storcon_node_info, args(fake_api, **overrides))
    assert run.failed
    assert run["msg"].startswith(expected)
    assert fake_api.requests == []
