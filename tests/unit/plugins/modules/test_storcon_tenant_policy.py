from __future__ import annotations

import copy

import pytest
from ansible_collections.neonops.storage.plugins.modules import storcon_tenant_policy
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID

PATH = f"/control/v1/tenant/{TENANT_ID}"
SHARDS = [f"{TENANT_ID}-0002", f"{TENANT_ID}-0102"]


def described(policy="Active"):
    return {
        "tenant_id": TENANT_ID,
        "shards": [{"tenant_shard_id": s, "node_attached": 1, "scheduling_policy": policy} for s in SHARDS],
        "stripe_size": 2048,
        "policy": {"Attached": 1},
        "config": {},
    }


def args(api, **kw):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_id": TENANT_ID, "scheduling": "Stop", **kw}


def test_sets_the_policy_when_it_differs(fake_api, run_module):
    fake_api.add("GET", PATH, described("Active"))
    fake_api.add("PUT", PATH + "/policy", None)
    run = run_module(storcon_tenant_policy, args(fake_api))
    assert not run.failed, run.result
    assert run.changed
    assert run["previous_scheduling"] == dict.fromkeys(SHARDS, "Active")
    assert run["scheduling"] == dict.fromkeys(SHARDS, "Stop")
    assert run["diff"] == {"before": dict.fromkeys(SHARDS, "Active"), "after": dict.fromkeys(SHARDS, "Stop")}
    put = fake_api.mutating_requests
    assert [(r.method, r.path, r.body) for r in put] == [("PUT", PATH + "/policy", {"scheduling": "Stop"})]
    assert put[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert SECRET_TOKEN not in run.raw


def test_same_policy_sends_nothing(fake_api, run_module):
    fake_api.add("GET", PATH, described("Stop"))
    run = run_module(storcon_tenant_policy, args(fake_api))
    assert not run.failed and not run.changed
    assert fake_api.mutating_requests == []


def test_mixed_shard_policies_are_made_uniform(fake_api, run_module):
    body = copy.deepcopy(described("Stop"))
    body["shards"][1]["scheduling_policy"] = "Pause"
    fake_api.add("GET", PATH, body)
    fake_api.add("PUT", PATH + "/policy", None)
    run = run_module(storcon_tenant_policy, args(fake_api))
    assert run.changed
    assert run["previous_scheduling"] == {SHARDS[0]: "Stop", SHARDS[1]: "Pause"}
    assert len(fake_api.mutating_requests) == 1


def test_check_mode_reports_and_sends_nothing(fake_api, run_module):
    fake_api.add("GET", PATH, described("Active"))
    run = run_module(storcon_tenant_policy, args(fake_api), check_mode=True)
    assert run.changed
    assert run["scheduling"] == dict.fromkeys(SHARDS, "Stop")
    assert fake_api.mutating_requests == []


def test_unknown_tenant_fails_unless_missing_ok(fake_api, run_module):
    fake_api.add("GET", PATH, {"msg": f"NotFound: Tenant {TENANT_ID} not found"}, 404)
    run = run_module(storcon_tenant_policy, args(fake_api))
    assert run.failed
    assert run["msg"] == f"tenant_id: the storage controller does not know tenant {TENANT_ID}"
    run = run_module(storcon_tenant_policy, args(fake_api, missing_ok=True))
    assert not run.failed and not run.changed
    assert (run["found"], run["previous_scheduling"]) == (False, {})
    assert fake_api.mutating_requests == []


def test_a_refused_put_fails_with_the_status(fake_api, run_module):
    fake_api.add("GET", PATH, described("Active"))
    fake_api.add("PUT", PATH + "/policy", {"msg": "Forbidden: JWT authentication error"}, 403)
    run = run_module(storcon_tenant_policy, args(fake_api))
    assert run.failed
    assert run["status"] == 403
    assert f"set scheduling policy Stop for tenant {TENANT_ID}" in run["msg"]
    assert SECRET_TOKEN not in run.raw


@pytest.mark.parametrize("bad", ["nope", f"{TENANT_ID}-0002", "../control/v1/node"])
def test_bad_tenant_id_fails_before_any_request(fake_api, run_module, bad):
    run = run_module(storcon_tenant_policy, args(fake_api, tenant_id=bad))
    assert run.failed
    assert run["msg"].startswith(f"tenant_id: invalid tenant id {bad!r}")
    assert fake_api.requests == []


def test_unknown_policy_is_refused_before_any_request(fake_api, run_module):
    run = run_module(storcon_tenant_policy, args(fake_api, scheduling="Halt"))
    assert run.failed
    assert "scheduling" in run["msg"] and "Halt" in run["msg"]
    assert fake_api.requests == []
