from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils._client import (
    NeonAPIError,
    NeonClient,
    UnexpectedResponse,
)
from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID, TIMELINE_ID
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import location, progress


@pytest.fixture
def client(fake_api):
    return NeonClient(fake_api.url, backoff_factor=0)


def test_location_configs_become_a_dict(fake_api, client):
    fake_api.add("GET", "/v1/location_config", {"tenant_shards": [[TENANT_ID, location()], ["b" * 32, None]]})
    assert ps.location_configs(client) == {TENANT_ID: location(), "b" * 32: None}


def test_put_location_config_sends_only_known_keys_and_query(fake_api, client):
    fake_api.add("PUT", f"/v1/tenant/{TENANT_ID}/location_config", {"shards": [], "stripe_size": None})
    ps.put_location_config(client, TENANT_ID.upper(), {**location(), "junk": 1}, flush_ms=100, lazy=True)
    (request,) = fake_api.requests
    assert request.path == f"/v1/tenant/{TENANT_ID}/location_config"
    assert "junk" not in request.body and request.body["tenant_conf"] == {}
    assert request.query == {"flush_ms": "100", "lazy": "true"}


def test_tenant_config_put_and_patch_bodies(fake_api, client):
    fake_api.add("PUT", "/v1/tenant/config", None)
    fake_api.add("PATCH", "/v1/tenant/config", None)
    ps.put_tenant_config(client, TENANT_ID, {"gc_period": "0s"})
    ps.patch_tenant_config(client, TENANT_ID, {"gc_period": None})
    assert [r.body for r in fake_api.requests] == [
        {"tenant_id": TENANT_ID, "gc_period": "0s"},
        {"tenant_id": TENANT_ID, "gc_period": None},
    ]


def test_secondary_download_returns_status_and_progress(fake_api, client):
    fake_api.add("POST", f"/v1/tenant/{TENANT_ID}/secondary/download", progress(1, 2), 202)
    assert ps.secondary_download(client, TENANT_ID, wait_ms=10) == (202, progress(1, 2))
    assert fake_api.requests[0].query == {"wait_ms": "10"}


def test_wait_lsn_body_and_statuses(fake_api, client):
    fake_api.add("POST", f"/v1/tenant/{TENANT_ID}/wait_lsn", None, 202)
    assert ps.wait_lsn(client, TENANT_ID, {TIMELINE_ID: "0/10"}, 1.5) == 202
    assert fake_api.requests[0].body == {TIMELINE_ID: "0/10", "timeout": {"secs": 1, "nanos": 500000000}}
    assert not fake_api.requests[0].mutating


@pytest.mark.parametrize(
    "call",
    [
        lambda c: ps.location_config(c, "bad"),
        lambda c: ps.tenant(c, TENANT_ID + "-0201"),
        lambda c: ps.timeline(c, TENANT_ID, "bad"),
        lambda c: ps.put_tenant_config(c, "bad", {}),
        lambda c: ps.wait_lsn(c, TENANT_ID, {TIMELINE_ID: "zz"}, 1),
        lambda c: ps.heatmap_upload(c, "../../v1/tenant"),
    ],
)
def test_wrappers_validate_before_sending(fake_api, client, call):
    with pytest.raises(ValueError):
        call(client)
    assert fake_api.requests == []


def test_absent_location_is_a_404_error(fake_api, client):
    fake_api.add("GET", f"/v1/location_config/{TENANT_ID}", {"msg": "NotFound: Tenant shard not found"}, 404)
    with pytest.raises(NeonAPIError) as info:
        ps.location_config(client, TENANT_ID)
    assert info.value.status == 404


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ({"gc_period": "1h"}, {"gc_period": "60m"}, True),
        ({"gc_period": "0s"}, {"gc_period": "0 s"}, True),
        ({"gc_period": "1h"}, {"gc_period": "2h"}, False),
        ({"gc_horizon": 0}, {"gc_horizon": 0}, True),
        ({"gc_horizon": 0}, {}, False),
        (None, {}, True),
        ({"eviction_policy": {"kind": "NoEviction"}}, {"eviction_policy": {"kind": "NoEviction"}}, True),
    ],
)
def test_overrides_equal(a, b, equal):
    assert ps.overrides_equal(a, b) is equal


@pytest.mark.parametrize(
    ("call", "method", "path", "body", "problem"),
    [
        (lambda c: ps.location_config(c, TENANT_ID), "GET", f"/v1/location_config/{TENANT_ID}", {}, "mode"),
        (
            lambda c: ps.location_config(c, TENANT_ID),
            "GET",
            f"/v1/location_config/{TENANT_ID}",
            {**location(), "tenant_conf": "x"},
            "tenant_conf",
        ),
        (ps.location_configs, "GET", "/v1/location_config", {"tenant_shards": {}}, "tenant_shards"),
        (ps.location_configs, "GET", "/v1/location_config", {"tenant_shards": [[1]]}, "pairs"),
        (ps.tenants, "GET", "/v1/tenant", {"id": 1}, "JSON array"),
        (lambda c: ps.tenant(c, TENANT_ID), "GET", f"/v1/tenant/{TENANT_ID}", {"state": "Active"}, "state"),
        (lambda c: ps.timelines(c, TENANT_ID), "GET", f"/v1/tenant/{TENANT_ID}/timeline", [{"x": 1}], "timeline_id"),
        (
            lambda c: ps.timelines(c, TENANT_ID),
            "GET",
            f"/v1/tenant/{TENANT_ID}/timeline",
            [{"timeline_id": TIMELINE_ID}],
            "no last_record_lsn",
        ),
        (
            lambda c: ps.timeline(c, TENANT_ID, TIMELINE_ID),
            "GET",
            f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID}",
            {"timeline_id": TIMELINE_ID, "last_record_lsn": "nonsense"},
            "last_record_lsn",
        ),
        (
            lambda c: ps.secondary_status(c, TENANT_ID),
            "GET",
            f"/v1/tenant/{TENANT_ID}/secondary/status",
            {"layers_total": "3"},
            "layers_total",
        ),
        (lambda c: ps.heatmap_upload(c, TENANT_ID), "POST", f"/v1/tenant/{TENANT_ID}/heatmap_upload", {}, "null"),
    ],
)
def test_answers_that_are_not_the_routes_json_are_refused(fake_api, client, call, method, path, body, problem):
    fake_api.add(method, path, body)
    with pytest.raises(UnexpectedResponse) as info:
        call(client)
    assert info.value.status == 200 and problem in info.value.message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gc\x00period": "1h"}, "tenant_conf: 'gc\\x00period' is not a tenant config key"),
        ({"GcPeriod": "1h"}, "tenant_conf: 'GcPeriod' is not a tenant config key"),
        ({"gc_period": "\u0661h"}, "tenant_conf.gc_period: invalid duration"),
        ([], "tenant_conf: expected a dict"),
    ],
)
def test_validate_overrides(overrides, message):
    with pytest.raises(ValueError) as info:
        ps.validate_overrides(overrides)
    assert str(info.value).startswith(message)
