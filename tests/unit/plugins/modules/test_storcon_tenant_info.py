from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import storcon_tenant_info
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID

PATH = f"/control/v1/tenant/{TENANT_ID}"
DESCRIBED = {
    "tenant_id": TENANT_ID,
    "shards": [
        {
            "tenant_shard_id": f"{TENANT_ID}-0002",
            "node_attached": 1,
            "node_secondary": [2],
            "last_error": "",
            "is_reconciling": False,
            "is_pending_compute_notification": False,
            "is_splitting": False,
            "is_importing": False,
            "scheduling_policy": "Active",
            "preferred_az_id": "az-a",
        }
    ],
    "stripe_size": 2048,
    "policy": {"Attached": 1},
    "config": {},
}


def args(api, **kw):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_id": TENANT_ID, **kw}


def test_tenant_is_returned_as_given(fake_api, run_module):
    fake_api.add("GET", PATH, DESCRIBED)
    run = run_module(storcon_tenant_info, args(fake_api))
    assert not run.failed, run.result
    assert not run.changed
    assert run["found"] is True
    assert run["tenant"] == DESCRIBED
    assert fake_api.requests[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert SECRET_TOKEN not in run.raw


def test_unknown_tenant_is_not_a_failure(fake_api, run_module):
    fake_api.add("GET", PATH, {"msg": f"NotFound: Tenant {TENANT_ID} not found"}, 404)
    run = run_module(storcon_tenant_info, args(fake_api))
    assert not run.failed, run.result
    assert (run["tenant"], run["found"]) == (None, False)


def test_a_url_that_is_not_a_storage_controller_fails(fake_api, run_module):
    run = run_module(storcon_tenant_info, args(fake_api))
    assert run.failed
    assert f"read tenant {TENANT_ID} on the storage controller failed" in run["msg"]
    assert "does not serve the storage controller API" in run["msg"]


def test_forbidden_fails_with_the_status(fake_api, run_module):
    fake_api.add("GET", PATH, {"msg": "Forbidden: JWT authentication error"}, 403)
    run = run_module(storcon_tenant_info, args(fake_api))
    assert run.failed
    assert run["status"] == 403
    assert SECRET_TOKEN not in run.raw


def test_tenant_id_is_lowercased(fake_api, run_module):
    fake_api.add("GET", PATH, DESCRIBED)
    run = run_module(storcon_tenant_info, args(fake_api, tenant_id=TENANT_ID.upper()), check_mode=True)
    assert run["found"] is True
    assert fake_api.unmatched == [] and fake_api.mutating_requests == []


@pytest.mark.parametrize("bad", ["nope", f"{TENANT_ID}-0002", "../control/v1/node"])
def test_bad_tenant_id_fails_before_any_request(fake_api, run_module, bad):
    run = run_module(storcon_tenant_info, args(fake_api, tenant_id=bad))
    assert run.failed
    assert run["msg"].startswith(f"tenant_id: invalid tenant id {bad!r}")
    assert fake_api.requests == []
