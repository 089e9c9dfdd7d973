from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import tenant_location
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import location, tenant_details

LOC = f"/v1/location_config/{TENANT_ID}"
PUT = f"/v1/tenant/{TENANT_ID}/location_config"
TENANT = f"/v1/tenant/{TENANT_ID}"
NOT_FOUND = {"msg": "NotFound: Tenant shard not found"}


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(tenant_location, "_sleep", lambda seconds: None)


def args(api, **kw):
    base = {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_shard_id": TENANT_ID}
    base.update(kw)
    return base


def puts(api):
    return api.calls("PUT", PUT)


def test_attach_on_empty_slot_sends_full_config_and_waits_for_active(fake_api, run_module):
    fake_api.add("GET", LOC, NOT_FOUND, 404)
    fake_api.add("GET", LOC, location(generation=5))
    fake_api.add("PUT", PUT, {"shards": [{"shard_id": TENANT_ID, "node_id": 1}], "stripe_size": None})
    fake_api.add("GET", TENANT, {"msg": "Tenant not yet active"}, 503)
    fake_api.add("GET", TENANT, tenant_details(slug="Activating", data="Attaching"))
    fake_api.add("GET", TENANT, tenant_details(generation=5))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=5), diff=True)
    assert not run.failed, run.result
    assert run.changed
    (put,) = puts(fake_api)
    assert put.body == {
        "mode": "AttachedSingle",
        "generation": 5,
        "secondary_conf": None,
        "shard_number": 0,
        "shard_count": 0,
        "shard_stripe_size": 0,
        "tenant_conf": {},
    }
    assert put.query == {}
    assert run["tenant_state"] == {"slug": "Active"}
    assert run["previous_location"] is None
    assert run["location"]["generation"] == 5
    assert run["diff"]["before"] == {}
    assert run["diff"]["after"]["mode"] == "AttachedSingle"
    assert SECRET_TOKEN not in run.raw


def test_second_run_is_unchanged_and_sends_nothing(fake_api, run_module):
    fake_api.add("GET", LOC, location(generation=5))
    fake_api.add("GET", TENANT, tenant_details(generation=5))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=5))
    assert not run.failed and not run.changed
    assert fake_api.mutating_requests == []
    assert run["tenant_state"] == {"slug": "Active"}
    assert run["location"] == run["previous_location"]


def test_check_mode_reads_only_and_predicts_the_location(fake_api, run_module):
    fake_api.add("GET", LOC, location(generation=3, tenant_conf={"gc_period": "0s"}))
    run = run_module(tenant_location, args(fake_api, mode="AttachedMulti", generation=4), check_mode=True, diff=True)
    assert run.changed
    assert fake_api.mutating_requests == []
    assert run["location"]["mode"] == "AttachedMulti" and run["location"]["generation"] == 4
    assert run["location"]["tenant_conf"] == {"gc_period": "0s"}
    assert run["diff"]["before"]["generation"] == 3 and run["diff"]["after"]["generation"] == 4


def test_lower_generation_is_refused_before_sending(fake_api, run_module):
    fake_api.add("GET", LOC, location(generation=5))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=4))
    assert run.failed
    assert "refusing generation 4" in run["msg"] and "current generation 5" in run["msg"]
    assert fake_api.mutating_requests == []


def test_generation_on_secondary_is_refused_without_any_request(fake_api, run_module):
    run = run_module(tenant_location, args(fake_api, mode="Secondary", generation=4))
    assert run.failed
    assert run["msg"] == "generation: must be omitted for mode Secondary (got 4)"
    assert fake_api.requests == []


def test_attach_without_generation_and_nothing_to_keep_fails(fake_api, run_module):
    fake_api.add("GET", LOC, location("Secondary"))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle"))
    assert run.failed and "generation is required" in run["msg"]
    assert fake_api.mutating_requests == []


def test_stale_keeps_generation_overrides_and_sends_flush_ms(fake_api, run_module):
    suspended = {"gc_period": "0s", "compaction_period": "0s"}
    fake_api.add("GET", LOC, location(generation=7, tenant_conf=suspended))
    fake_api.add("GET", LOC, location("AttachedStale", generation=7, tenant_conf=suspended))
    fake_api.add("PUT", PUT, {"shards": [], "stripe_size": None})
    fake_api.add("GET", TENANT, tenant_details(generation=7))
    run = run_module(tenant_location, args(fake_api, mode="AttachedStale", flush_ms=5000, lazy=False))
    assert run.changed and not run.failed
    (put,) = puts(fake_api)
    assert put.body["generation"] == 7
    assert put.body["tenant_conf"] == suspended  # omitted tenant_conf never drops a suspension
    assert put.body["shard_stripe_size"] == 2048
    assert put.query == {"flush_ms": "5000", "lazy": "false"}


def test_durations_compare_by_value(fake_api, run_module):
    fake_api.add("GET", LOC, location(generation=2, tenant_conf={"gc_period": "1h"}))
    fake_api.add("GET", TENANT, tenant_details(generation=2))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", tenant_conf={"gc_period": "60m"}))
    assert not run.changed
    assert fake_api.mutating_requests == []


def test_empty_tenant_conf_clears_overrides(fake_api, run_module):
    fake_api.add("GET", LOC, location(generation=2, tenant_conf={"gc_period": "0s"}))
    fake_api.add("GET", LOC, location(generation=2))
    fake_api.add("PUT", PUT, {"shards": [], "stripe_size": None})
    fake_api.add("GET", TENANT, tenant_details(generation=2))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", tenant_conf={}))
    assert run.changed
    assert puts(fake_api)[0].body["tenant_conf"] == {}


def test_secondary_keeps_warm_setting_and_sends_no_generation(fake_api, run_module):
    fake_api.add("GET", LOC, location(generation=2))
    fake_api.add("GET", LOC, location("Secondary"))
    fake_api.add("PUT", PUT, {"shards": [], "stripe_size": None})
    run = run_module(tenant_location, args(fake_api, mode="Secondary", secondary_conf={"warm": True}))
    assert run.changed
    (put,) = puts(fake_api)
    assert put.body["generation"] is None and put.body["secondary_conf"] == {"warm": True}
    assert fake_api.calls("GET", TENANT) == []  # no activation wait for Secondary
    assert run["tenant_state"] is None


def test_secondary_warm_change_is_detected(fake_api, run_module):
    fake_api.add("GET", LOC, location("Secondary"))  # warm: true
    run = run_module(tenant_location, args(fake_api, mode="Secondary", secondary_conf={"warm": False}), check_mode=True)
    assert run.changed


def test_detached_on_absent_slot_is_unchanged(fake_api, run_module):
    fake_api.add("GET", LOC, NOT_FOUND, 404)
    run = run_module(tenant_location, args(fake_api, mode="Detached"))
    assert not run.changed and not run.failed
    assert fake_api.mutating_requests == []
    assert run["location"] is None


def test_detach_sends_detached_and_returns_null_location(fake_api, run_module):
    fake_api.add("GET", LOC, location("Secondary"))
    fake_api.add("PUT", PUT, None)
    run = run_module(tenant_location, args(fake_api, mode="Detached"), diff=True)
    assert run.changed
    (put,) = puts(fake_api)
    assert put.body["mode"] == "Detached" and put.body["tenant_conf"] == {}
    assert run["location"] is None
    assert run["diff"] == {"before": location("Secondary"), "after": {}}


def test_broken_tenant_fails_with_the_reason(fake_api, run_module):
    fake_api.add("GET", LOC, NOT_FOUND, 404)
    fake_api.add("PUT", PUT, {"shards": [], "stripe_size": None})
    fake_api.add("GET", TENANT, tenant_details(slug="Broken", data={"reason": "index_part.json not found"}))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=1))
    assert run.failed
    assert run["msg"].startswith(f"tenant shard {TENANT_ID} is Broken after attaching: index_part.json not found")
    # The PUT was accepted: the failure still reports the change.
    assert run.changed and f"after the server accepted PUT {fake_api.url}{PUT}" in run["msg"]
    assert SECRET_TOKEN not in run.raw


def test_activation_timeout_fails(fake_api, run_module):
    fake_api.add("GET", LOC, NOT_FOUND, 404)
    fake_api.add("PUT", PUT, {"shards": [], "stripe_size": None})
    fake_api.add("GET", TENANT, tenant_details(slug="Attaching"))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=1, wait_timeout=0.2))
    assert run.failed
    assert "did not become Active within 0.2s" in run["msg"]
    assert run["tenant_state"] == {"slug": "Attaching"}


def test_no_wait_when_disabled(fake_api, run_module):
    fake_api.add("GET", LOC, NOT_FOUND, 404)
    fake_api.add("GET", LOC, location(generation=1))
    fake_api.add("PUT", PUT, {"shards": [], "stripe_size": None})
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=1, wait_active=False))
    assert run.changed and run["tenant_state"] is None
    assert fake_api.calls("GET", TENANT) == []


def test_conflict_is_retried_with_a_warning(fake_api, run_module):
    fake_api.add("GET", LOC, NOT_FOUND, 404)
    fake_api.add("GET", LOC, location(generation=1))
    fake_api.add("PUT", PUT, {"msg": "Conflict: location config in progress"}, 409)
    fake_api.add("PUT", PUT, {"shards": [], "stripe_size": None})
    fake_api.add("GET", TENANT, tenant_details(generation=1))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=1))
    assert not run.failed and run.changed
    assert len(puts(fake_api)) == 2
    assert any("HTTP 409" in w for w in run.warnings), run.warnings
    assert SECRET_TOKEN not in run.raw


def test_bad_request_fails_naming_the_attempt(fake_api, run_module):
    fake_api.add("GET", LOC, NOT_FOUND, 404)
    fake_api.add("PUT", PUT, {"msg": "Generation must be set when attaching"}, 400)
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=1))
    assert run.failed
    assert run["msg"] == (
        f"set location of {TENANT_ID} to AttachedSingle failed: PUT {fake_api.url}{PUT}: HTTP 400: "
        "Generation must be set when attaching"
    )
    assert run["status"] == 400
    assert len(puts(fake_api)) == 1
    assert SECRET_TOKEN not in run.raw


def test_in_progress_slot_waits_until_settled(fake_api, run_module):
    fake_api.add("GET", LOC, None)
    fake_api.add("GET", LOC, location(generation=5))
    fake_api.add("GET", TENANT, tenant_details(generation=5))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", generation=5))
    assert not run.changed and not run.failed
    assert len(fake_api.calls("GET", LOC)) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tenant_conf": {"gc_period": "soon"}}, "tenant_conf.gc_period: invalid duration 'soon'"),
        ({"shard_count": 4}, "shard_count: 4 does not match tenant_shard_id"),
        ({"generation": -1}, "generation: must be an integer from 0 to 4294967295, got -1"),
        ({"secondary_conf": {"warm": True}}, "secondary_conf: only valid with mode Secondary"),
        ({"tenant_shard_id": "nope"}, "tenant_shard_id: invalid tenant shard id 'nope'"),
        ({"api_url": "localhost:9898"}, "api_url: invalid API URL 'localhost:9898'"),
    ],
)
def test_invalid_input_fails_before_any_request(fake_api, run_module, extra, message):
    run = run_module(tenant_location, args(fake_api, **{"mode": "AttachedSingle", "generation": 1, **extra}))
    assert run.failed
    assert message in run["msg"]
    assert fake_api.requests == []


def test_sharded_new_slot_requires_stripe_size(fake_api, run_module):
    tsid = f"{TENANT_ID}-0102"
    fake_api.add("GET", f"/v1/location_config/{tsid}", NOT_FOUND, 404)
    run = run_module(tenant_location, args(fake_api, tenant_shard_id=tsid, mode="AttachedSingle", generation=1))
    assert run.failed and "shard_stripe_size is required" in run["msg"]
    assert fake_api.mutating_requests == []


def test_sharded_attach_sends_shard_identity(fake_api, run_module):
    tsid = f"{TENANT_ID}-0102"
    loc = f"/v1/location_config/{tsid}"
    fake_api.add("GET", loc, NOT_FOUND, 404)
    fake_api.add("GET", loc, location(generation=1, shard_number=1, shard_count=2, stripe=32768))
    fake_api.add("PUT", f"/v1/tenant/{tsid}/location_config", {"shards": [], "stripe_size": 32768})
    fake_api.add("GET", f"/v1/tenant/{tsid}", tenant_details(tsid))
    run = run_module(
        tenant_location,
        args(fake_api, tenant_shard_id=tsid, mode="AttachedSingle", generation=1, shard_stripe_size=32768),
    )
    assert run.changed and not run.failed
    body = fake_api.calls("PUT")[0].body
    assert (body["shard_number"], body["shard_count"], body["shard_stripe_size"]) == (1, 2, 32768)


def test_stripe_size_change_is_refused(fake_api, run_module):
    fake_api.add("GET", LOC, location(generation=1, stripe=2048))
    run = run_module(tenant_location, args(fake_api, mode="AttachedSingle", shard_stripe_size=4096))
    assert run.failed and "refusing shard_stripe_size 4096" in run["msg"]
    assert fake_api.mutating_requests == []
