from __future__ import annotations

from ansible_collections.neonops.storage.plugins.modules import pageserver_info
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import UTILIZATION, location

SECONDARY_TSID = "aa" * 16 + "-0102"


def serve_node(api):
    api.add("GET", "/v1/status", {"id": 7})
    api.add("GET", "/v1/utilization", UTILIZATION)
    api.add(
        "GET",
        "/v1/location_config",
        {
            "tenant_shards": [
                [TENANT_ID, location()],
                [SECONDARY_TSID, location("Secondary", shard_number=1, shard_count=2)],
                ["bb" * 16, None],
            ]
        },
    )
    api.add("GET", "/v1/tenant", [{"id": TENANT_ID, "state": {"slug": "Active"}, "generation": 3}])


def test_reads_everything_and_changes_nothing(fake_api, run_module):
    serve_node(fake_api)
    run = run_module(pageserver_info, {"api_url": fake_api.url, "api_token": SECRET_TOKEN})
    assert not run.failed and not run.changed
    assert run["node_id"] == 7
    assert run["utilization"]["utilization_score"] == 800
    assert run["locations"][TENANT_ID]["mode"] == "AttachedSingle"
    assert run["locations"][SECONDARY_TSID]["mode"] == "Secondary"
    assert run["locations"]["bb" * 16] is None
    assert [t["id"] for t in run["tenants"]] == [TENANT_ID]
    assert fake_api.mutating_requests == []
    assert SECRET_TOKEN not in run.raw
    assert all(r.headers["Authorization"] == f"Bearer {SECRET_TOKEN}" for r in fake_api.requests)


def test_check_mode_reads_the_same(fake_api, run_module):
    serve_node(fake_api)
    run = run_module(pageserver_info, {"api_url": fake_api.url}, check_mode=True)
    assert run["node_id"] == 7 and not run.changed
    assert fake_api.mutating_requests == []


def test_error_names_the_read_and_hides_the_token(fake_api, run_module):
    fake_api.add("GET", "/v1/status", {"id": 7})
    fake_api.add("GET", "/v1/utilization", {"msg": "Forbidden: JWT authentication error"}, 403)
    run = run_module(pageserver_info, {"api_url": fake_api.url, "api_token": SECRET_TOKEN})
    assert run.failed
    assert run["msg"] == (
        f"read pageserver utilization failed: GET {fake_api.url}/v1/utilization: HTTP 403: "
        "Forbidden: JWT authentication error"
    )
    assert run["status"] == 403
    assert SECRET_TOKEN not in run.raw


def test_transport_error_fails_clearly(fake_api, run_module):
    url = fake_api.url
    fake_api.close()
    run = run_module(pageserver_info, {"api_url": url, "api_token": SECRET_TOKEN, "retries": 0})
    assert run.failed
    assert run["msg"].startswith(f"read pageserver status failed: GET {url}/v1/status: ")
    assert run["status"] is None
    assert SECRET_TOKEN not in run.raw


def test_bad_url_fails_before_any_request(fake_api, run_module):
    run = run_module(pageserver_info, {"api_url": "ps-1:9898", "api_token": SECRET_TOKEN})
    assert run.failed
    assert run["msg"].startswith("api_url: invalid API URL 'ps-1:9898'")
    assert fake_api.requests == []


def test_url_and_token_from_environment(fake_api, run_module, monkeypatch):
    serve_node(fake_api)
    monkeypatch.setenv("NEONOPS_API_URL", fake_api.url)
    monkeypatch.setenv("NEONOPS_API_TOKEN", SECRET_TOKEN)
    run = run_module(pageserver_info, {})
    assert run["node_id"] == 7
    assert fake_api.requests[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert SECRET_TOKEN not in run.raw
