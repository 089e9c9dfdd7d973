from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import tenant_info
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID, TIMELINE_ID, TIMELINE_ID_2
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import (
    location,
    tenant_config,
    tenant_details,
    timeline_info,
)


def args(api, tsid=TENANT_ID):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_shard_id": tsid}


def test_attached_shard_returns_state_timelines_with_int_lsns_and_config(fake_api, run_module):
    fake_api.add("GET", f"/v1/location_config/{TENANT_ID}", location(tenant_conf={"gc_period": "0s"}))
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}", tenant_details())
    fake_api.add(
        "GET",
        f"/v1/tenant/{TENANT_ID}/timeline",
        [timeline_info(), timeline_info(TIMELINE_ID_2, "1/A", ancestor=TIMELINE_ID)],
    )
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}/config", tenant_config({"gc_period": "0s"}))
    run = run_module(tenant_info, args(fake_api))
    assert not run.failed and not run.changed
    assert run["exists"] and run["attached"] and not run["in_progress"]
    assert run["location"]["generation"] == 3
    assert run["tenant"]["state"]["slug"] == "Active"
    first, second = run["timelines"]
    assert first["last_record_lsn"] == "0/16960E8" and first["last_record_lsn_int"] == 0x16960E8
    assert first["remote_consistent_lsn_visible_int"] == 0x1400000
    assert first["ancestor_lsn"] is None and first["ancestor_lsn_int"] is None
    assert second["last_record_lsn_int"] == (1 << 32) + 10
    assert second["ancestor_lsn_int"] == 0x1000000
    assert run["config"]["tenant_specific_overrides"] == {"gc_period": "0s"}
    assert run["config"]["effective_config"]["gc_period"] == "0s"
    assert fake_api.mutating_requests == []
    assert SECRET_TOKEN not in run.raw


def test_secondary_has_location_but_no_tenant_or_timelines(fake_api, run_module):
    tsid = f"{TENANT_ID}-0102"
    fake_api.add("GET", f"/v1/location_config/{tsid}", location("Secondary", shard_number=1, shard_count=2))
    run = run_module(tenant_info, args(fake_api, tsid))
    assert run["exists"] and not run["attached"]
    assert run["location"]["mode"] == "Secondary"
    assert run["tenant"] == {} and run["timelines"] == []
    assert [r.path for r in fake_api.requests] == [f"/v1/location_config/{tsid}"]


def test_absent_shard_is_not_an_error(fake_api, run_module):
    fake_api.add("GET", f"/v1/location_config/{TENANT_ID}", {"msg": "NotFound: Tenant shard not found"}, 404)
    run = run_module(tenant_info, args(fake_api))
    assert not run.failed
    assert run["exists"] is False and run["location"] is None and run["timelines"] == []


def test_in_progress_slot(fake_api, run_module):
    fake_api.add("GET", f"/v1/location_config/{TENANT_ID}", None)
    run = run_module(tenant_info, args(fake_api))
    assert run["exists"] and run["in_progress"] and run["location"] is None


def test_broken_tenant_timeline_read_fails_naming_the_shard(fake_api, run_module):
    fake_api.add("GET", f"/v1/location_config/{TENANT_ID}", location())
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}", tenant_details(slug="Broken", data={"reason": "disk"}))
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}/timeline", {"msg": "tenant is broken: disk"}, 500)
    run = run_module(tenant_info, args(fake_api))
    assert run.failed
    assert f"read attached tenant shard {TENANT_ID} failed" in run["msg"]
    assert "HTTP 500: tenant is broken: disk" in run["msg"]
    assert SECRET_TOKEN not in run.raw


@pytest.mark.parametrize("bad", ["xyz", TENANT_ID[:-1], f"{TENANT_ID}-0201", f"{TENANT_ID}-01"])
def test_bad_tenant_shard_id_fails_before_any_request(fake_api, run_module, bad):
    run = run_module(tenant_info, args(fake_api, bad))
    assert run.failed
    assert run["msg"].startswith("tenant_shard_id:") and repr(bad) in run["msg"]
    assert fake_api.requests == []


def test_check_mode_reads_the_same(fake_api, run_module):
    fake_api.add("GET", f"/v1/location_config/{TENANT_ID}", location())
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}", tenant_details())
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}/timeline", [timeline_info()])
    fake_api.add("GET", f"/v1/tenant/{TENANT_ID}/config", tenant_config())
    run = run_module(tenant_info, args(fake_api), check_mode=True)
    assert run["attached"] and not run.changed
    assert run["timelines"][0]["timeline_id"] == TIMELINE_ID
    assert fake_api.mutating_requests == []
