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
