from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _storcon
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError, NeonClient
from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID

TSID = f"{TENANT_ID}-0002"


@pytest.fixture
def client(fake_api):
    return NeonClient(fake_api.url, backoff_factor=0)


def test_attach_hook_posts_shard_and_node_and_returns_gen(fake_api, client):
    fake_api.add("POST", "/debug/v1/attach-hook", {"gen": 7})
    assert _storcon.attach_hook(client, TSID, 3) == 7
    assert fake_api.requests[0].body == {"tenant_shard_id": TSID, "node_id": 3}


def test_attach_hook_detach_and_override(fake_api, client):
    fake_api.add("POST", "/debug/v1/attach-hook", {"gen": None})
    assert _storcon.attach_hook(client, TSID, None, generation_override=9) is None
    assert fake_api.requests[0].body == {"tenant_shard_id": TSID, "node_id": None, "generation_override": 9}


def test_attach_hook_error_is_not_retried(fake_api, client):
    fake_api.add("POST", "/debug/v1/attach-hook", {"msg": "Shutting down"}, 503)
    with pytest.raises(NeonAPIError) as info:
        _storcon.attach_hook(client, TSID, 3)
    assert info.value.status == 503
    assert len(fake_api.requests) == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"attachment": [4, 2]}, {"generation": 4, "node_id": 2}),
        ({"attachment": None}, {"generation": None, "node_id": None}),
        (None, {"generation": None, "node_id": None}),
    ],
)
def test_inspect(fake_api, client, answer, expected):
    fake_api.add("POST", "/debug/v1/inspect", answer)
    assert _storcon.inspect(client, TSID) == expected
    assert fake_api.requests[0].body == {"tenant_shard_id": TSID}
    assert not fake_api.requests[0].mutating


def test_node_tenant_and_locate_reads(fake_api, client):
    fake_api.add("GET", "/control/v1/node", [{"id": 1}, {"id": 2}])
    fake_api.add("GET", "/control/v1/node/2", {"id": 2, "availability": "Active"})
    fake_api.add("GET", f"/control/v1/tenant/{TENANT_ID}", {"tenant_id": TENANT_ID, "shards": []})
    fake_api.add("GET", f"/debug/v1/tenant/{TENANT_ID}/locate", {"shards": [], "shard_params": {"count": 0}})
    assert _storcon.node_list(client) == [{"id": 1}, {"id": 2}]
    assert _storcon.node_describe(client, 2)["availability"] == "Active"
    assert _storcon.tenant_describe(client, TENANT_ID)["tenant_id"] == TENANT_ID
    assert _storcon.locate(client, TENANT_ID)["shard_params"] == {"count": 0}
    assert fake_api.mutating_requests == []


def test_path_parameters_stay_one_segment(fake_api, client):
    with pytest.raises(NeonAPIError):
        _storcon.tenant_describe(client, "../node")
    assert fake_api.requests[0].path == "/control/v1/tenant/..%2Fnode"


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        (({"msg": f"NotFound: Tenant {TENANT_ID} not found"}, 404), None),
        (({"msg": "page not found"}, 404), "raise"),
        (({"detail": "Not Found"}, 404), "raise"),
        ((None, 404), "raise"),
    ],
)
def test_tenant_or_none_tells_an_unknown_tenant_from_a_wrong_url(fake_api, client, answer, found):
    body, status = answer
    fake_api.add("GET", f"/control/v1/tenant/{TENANT_ID}", body, status)
    if found == "raise":
        with pytest.raises(NeonAPIError) as info:
            _storcon.tenant_or_none(client, TENANT_ID)
        assert _storcon.failure_reason(info.value) == "the URL does not serve the storage controller API"
    else:
        assert _storcon.tenant_or_none(client, TENANT_ID) is found


@pytest.mark.parametrize(
    ("call", "method", "path", "body"),
    [
        (lambda c: _storcon.attach_hook(c, TSID, 1), "POST", "/debug/v1/attach-hook", {"gen": "7"}),
        (lambda c: _storcon.inspect(c, TSID), "POST", "/debug/v1/inspect", {"attachment": [1]}),
        (_storcon.node_list, "GET", "/control/v1/node", [1, 2]),
        (lambda c: _storcon.tenant_describe(c, TENANT_ID), "GET", f"/control/v1/tenant/{TENANT_ID}", {"shards": [1]}),
    ],
)
def test_answers_that_are_not_the_routes_json_are_refused(fake_api, client, call, method, path, body):
    fake_api.add(method, path, body)
    with pytest.raises(NeonAPIError) as info:
        call(client)
    assert info.value.status == 200 and "is this the right URL" in info.value.message
