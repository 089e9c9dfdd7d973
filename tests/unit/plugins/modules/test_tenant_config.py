from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import tenant_config
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import location

LOC = f"/v1/location_config/{TENANT_ID}"
SHARD = f"{TENANT_ID}-0102"
SHARD_LOC = f"/v1/location_config/{SHARD}"
SHARD_PUT = f"/v1/tenant/{SHARD}/location_config"


def args(api, **kw):
    base = {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_shard_id": TENANT_ID}
    base.update(kw)
    return base


def test_suspend_on_unsharded_uses_patch_and_returns_previous(fake_api, run_module):
    before = {"heatmap_period": "60s", "gc_period": "2h"}
    after = {"heatmap_period": "60s", "gc_period": "0s", "compaction_period": "0s"}
    fake_api.add("GET", LOC, location(tenant_conf=before))
    fake_api.add("GET", LOC, location(tenant_conf=after))
    fake_api.add("PATCH", "/v1/tenant/config", None)
    run = run_module(tenant_config, args(fake_api, background_ops="suspended"), diff=True)
    assert not run.failed and run.changed
    (patch,) = fake_api.calls("PATCH")
    assert patch.body == {"tenant_id": TENANT_ID, "gc_period": "0s", "compaction_period": "0s"}
    assert run["previous_overrides"] == before
    assert run["overrides"] == after
    assert run["method"] == "PATCH /v1/tenant/config"
    assert run["diff"] == {"before": before, "after": after}
    assert len(fake_api.mutating_requests) == 1
    assert SECRET_TOKEN not in run.raw


def test_second_run_is_unchanged(fake_api, run_module):
    fake_api.add("GET", LOC, location(tenant_conf={"gc_period": "0s", "compaction_period": "0 s"}))
    run = run_module(tenant_config, args(fake_api, background_ops="suspended"))
    assert not run.changed and run["method"] is None
    assert fake_api.mutating_requests == []


def test_check_mode_sends_nothing(fake_api, run_module):
    fake_api.add("GET", LOC, location(tenant_conf={}))
    run = run_module(tenant_config, args(fake_api, overrides={"heatmap_period": "60s"}), check_mode=True, diff=True)
    assert run.changed
    assert run["overrides"] == {"heatmap_period": "60s"}
    assert run["diff"] == {"before": {}, "after": {"heatmap_period": "60s"}}
    assert fake_api.mutating_requests == []


def test_resume_removes_only_zero_durations_with_null_in_patch(fake_api, run_module):
    fake_api.add("GET", LOC, location(tenant_conf={"gc_period": "0s", "compaction_period": "30s", "x": 1}))
    fake_api.add("GET", LOC, location(tenant_conf={"compaction_period": "30s", "x": 1}))
    fake_api.add("PATCH", "/v1/tenant/config", None)
    run = run_module(tenant_config, args(fake_api, background_ops="resumed"))
    assert run.changed
    assert fake_api.calls("PATCH")[0].body == {"tenant_id": TENANT_ID, "gc_period": None}


def test_exclusive_restore_uses_put_with_the_whole_set(fake_api, run_module):
    previous = {"heatmap_period": "60s"}
    fake_api.add("GET", LOC, location(tenant_conf={"heatmap_period": "60s", "gc_period": "0s"}))
    fake_api.add("GET", LOC, location(tenant_conf=previous))
    fake_api.add("PUT", "/v1/tenant/config", None)
    run = run_module(tenant_config, args(fake_api, overrides=previous, exclusive=True))
    assert run.changed and run["method"] == "PUT /v1/tenant/config"
    assert fake_api.calls("PUT")[0].body == {"tenant_id": TENANT_ID, "heatmap_period": "60s"}
    assert run["overrides"] == previous


def test_remove_and_null_values(fake_api, run_module):
    fake_api.add("GET", LOC, location(tenant_conf={"a": 1, "b": 2, "c": 3}))
    fake_api.add("GET", LOC, location(tenant_conf={"c": 3}))
    fake_api.add("PATCH", "/v1/tenant/config", None)
    run = run_module(tenant_config, args(fake_api, overrides={"a": None}, remove=["b"]))
    assert run.changed
    assert fake_api.calls("PATCH")[0].body == {"tenant_id": TENANT_ID, "a": None, "b": None}


def test_sharded_tenant_resends_location_config_preserving_everything_else(fake_api, run_module):
    current = location("AttachedMulti", generation=9, shard_number=1, shard_count=2, stripe=32768)
    current["tenant_conf"] = {"heatmap_period": "60s"}
    updated = dict(current, tenant_conf={"heatmap_period": "60s", "gc_period": "0s", "compaction_period": "0s"})
    fake_api.add("GET", SHARD_LOC, current)
    fake_api.add("GET", SHARD_LOC, updated)
    fake_api.add("PUT", SHARD_PUT, {"shards": [{"shard_id": SHARD, "node_id": 1}], "stripe_size": 32768})
    run = run_module(tenant_config, args(fake_api, tenant_shard_id=SHARD, background_ops="suspended"))
    assert run.changed and run["method"] == f"PUT {SHARD_PUT}"
    (put,) = fake_api.calls("PUT")
    assert put.body == {
        "mode": "AttachedMulti",
        "generation": 9,
        "secondary_conf": None,
        "shard_number": 1,
        "shard_count": 2,
        "shard_stripe_size": 32768,
        "tenant_conf": {"heatmap_period": "60s", "gc_period": "0s", "compaction_period": "0s"},
    }
    assert fake_api.calls("PATCH") == []


def test_secondary_unsharded_uses_location_config(fake_api, run_module):
    fake_api.add("GET", LOC, location("Secondary"))
    fake_api.add("GET", LOC, location("Secondary", tenant_conf={"heatmap_period": "60s"}))
    fake_api.add("PUT", f"/v1/tenant/{TENANT_ID}/location_config", {"shards": [], "stripe_size": None})
    run = run_module(tenant_config, args(fake_api, overrides={"heatmap_period": "60s"}))
    assert run.changed
    put = fake_api.calls("PUT")[0]
    assert put.body["mode"] == "Secondary" and put.body["generation"] is None
    assert put.body["secondary_conf"] == {"warm": True}


def test_absent_shard_fails_clearly(fake_api, run_module):
    fake_api.add("GET", LOC, {"msg": "NotFound: Tenant shard not found"}, 404)
    run = run_module(tenant_config, args(fake_api, background_ops="suspended"))
    assert run.failed and f"tenant shard {TENANT_ID} has no location on this pageserver" in run["msg"]
    assert fake_api.mutating_requests == []


def test_api_error_names_the_attempt_and_hides_token(fake_api, run_module):
    fake_api.add("GET", LOC, location())
    fake_api.add("PATCH", "/v1/tenant/config", {"msg": "Tenant not yet active"}, 503)
    run = run_module(tenant_config, args(fake_api, background_ops="suspended"))
    assert run.failed
    assert run["msg"].startswith(f"set tenant config overrides of {TENANT_ID} failed: PATCH ")
    assert "HTTP 503: Tenant not yet active" in run["msg"]
    assert len(fake_api.calls("PATCH")) == 1  # PATCH is never retried
    assert SECRET_TOKEN not in run.raw


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"overrides": {"gc_period": "whenever"}}, "overrides.gc_period: invalid duration 'whenever'"),
        ({"overrides": {"pitr_interval": 5}}, "overrides.pitr_interval: invalid duration 5"),
        ({"tenant_shard_id": TENANT_ID + "-zz"}, "tenant_shard_id: invalid tenant shard id"),
        ({"overrides": {"tenant_id": TENANT_ID}}, "overrides: 'tenant_id' is not a tenant-config key"),
    ],
)
def test_invalid_input_fails_before_any_request(fake_api, run_module, extra, message):
    run = run_module(tenant_config, args(fake_api, **extra))
    assert run.failed and message in run["msg"]
    assert fake_api.requests == []


@pytest.mark.parametrize("value", ["0s", "20 s", "1h", "1 hr", "10 m", "7days"])
def test_upstream_humantime_examples_are_accepted(fake_api, run_module, value):
    fake_api.add("GET", LOC, location(tenant_conf={"gc_period": value}))
    run = run_module(tenant_config, args(fake_api, overrides={"gc_period": value}))
    assert not run.failed and not run.changed
