"""pageserver_disk_plan against a fake fleet: hostile input is refused before any request, naming the field and
the value; servers that are not pageservers fail clearly (issue 9). The planner itself is tested in
tests/unit/plugins/module_utils/test_disk_plan.py."""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import pageserver_disk_plan
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID
from ansible_collections.neonops.storage.tests.unit.lenient_fleet import lenient_fleet
from ansible_collections.neonops.storage.tests.unit.plugins.test_odd_servers_data import BODIES, NOT_FOUND_PAGES

MAX_MESSAGE = 2100


def args(api, **extra):
    pageservers = [{"name": "ps1", "api_url": api.url, "node_id": 1}, {"name": "ps2", "api_url": api.url, "node_id": 2}]
    return {"api_token": SECRET_TOKEN, "pageservers": pageservers, "source": "ps1", "destination": "ps2", **extra}


def entry(**changes):
    """ps1 with ``changes``, and a valid ps2."""
    ps2 = {"name": "ps2", "api_url": "http://127.0.0.1:9899", "node_id": 2}
    return [{"name": "ps1", "api_url": "http://127.0.0.1:9898", "node_id": 1, **changes}, ps2]


HOSTILE = [
    pytest.param("pageservers[0]", {"pageservers": [{"api_url": "http://127.0.0.1:9898"}]}, id="entry-without-name"),
    pytest.param("pageservers[0]", {"pageservers": entry(name="")}, id="entry-empty-name"),
    pytest.param("pageservers[0]", {"pageservers": entry(name="ps\x001")}, id="entry-nul-name"),
    pytest.param("pageservers[0].node_id", {"pageservers": entry(node_id=True)}, id="entry-node-id-boolean"),
    pytest.param("pageservers[0].node_id", {"pageservers": entry(node_id=-1)}, id="entry-node-id-negative"),
    pytest.param("pageservers[1].name", {"pageservers": entry(name="ps2")}, id="entry-name-twice"),
    pytest.param("ps1.api_url", {"pageservers": entry(api_url="http://a b:9898")}, id="entry-url-space"),
    pytest.param("ps1.api_url", {"pageservers": entry(api_url="http://u:pw@127.0.0.1:1")}, id="entry-url-userinfo"),
    pytest.param("destination", {"destination": "ps9"}, id="destination-unknown"),
    pytest.param("source", {"source": "ps9"}, id="source-unknown"),
    pytest.param("destination", {"destination": "ps1"}, id="destination-is-source"),
    pytest.param("source", {"source": "x" * 10_000_000}, id="source-10mb"),
    pytest.param("tenants[0]", {"tenants": [TENANT_ID + "\n"]}, id="tenant-newline"),
    pytest.param("tenants[1]", {"tenants": [TENANT_ID, "zz"]}, id="tenant-not-hex"),
    pytest.param("tenants[0]", {"tenants": [TENANT_ID + "-0001"]}, id="tenant-shard-id"),
    pytest.param("target_pct", {"target_pct": "nan"}, id="target-nan"),
    pytest.param("target_pct", {"target_pct": 200}, id="target-200"),
    pytest.param("target_pct", {"target_pct": 100}, id="target-100"),
    pytest.param("target_pct", {"target_pct": 0}, id="target-zero"),
    pytest.param("destination_max_pct", {"destination_max_pct": -1}, id="destination-max-negative"),
    pytest.param("destination_max_pct", {"destination_max_pct": 101}, id="destination-max-101"),
    pytest.param("max_tenants", {"max_tenants": True}, id="max-tenants-boolean"),
    pytest.param("max_tenants", {"max_tenants": 0}, id="max-tenants-zero"),
    pytest.param("max_tenants", {"max_tenants": "10\n"}, id="max-tenants-newline"),
]


def test_base_arguments_reach_the_server(fake_api, run_module):
    fake_api.fallback = lenient_fleet
    run = run_module(pageserver_disk_plan, args(fake_api))
    assert not run.failed and not run.changed, run.result
    assert fake_api.requests and fake_api.mutating_requests == []


@pytest.mark.parametrize(("field", "extra"), HOSTILE)
def test_hostile_input_fails_clearly_before_any_request(fake_api, run_module, field, extra):
    fake_api.fallback = lenient_fleet
    run = run_module(pageserver_disk_plan, args(fake_api, **extra))
    assert run.failed, run.result
    assert run["msg"].startswith(field), run["msg"][:300]
    assert len(run["msg"]) < MAX_MESSAGE
    assert fake_api.requests == [], [(r.method, r.path) for r in fake_api.requests]
    assert SECRET_TOKEN not in run.raw and "pw@" not in run.raw


@pytest.mark.parametrize("body", list(BODIES))
def test_a_body_that_is_not_the_routes_json_fails_clearly(fake_api, run_module, body):
    fake_api.fallback = lambda request: BODIES[body]
    run = run_module(pageserver_disk_plan, args(fake_api, retries=0))
    assert run.failed and "is this the right URL for the service?" in run["msg"], run["msg"]


@pytest.mark.parametrize("page", list(NOT_FOUND_PAGES))
def test_a_server_answering_404_everywhere_fails_clearly(fake_api, run_module, page):
    fake_api.fallback = lambda request: NOT_FOUND_PAGES[page]
    run = run_module(pageserver_disk_plan, args(fake_api, retries=0))
    assert run.failed and "does not serve" in run["msg"], run["msg"]
