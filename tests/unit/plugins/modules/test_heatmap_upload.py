from __future__ import annotations

from ansible_collections.neonops.storage.plugins.modules import heatmap_upload
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID

UPLOAD = f"/v1/tenant/{TENANT_ID}/heatmap_upload"


def args(api, **kw):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_shard_id": TENANT_ID, **kw}


def test_upload_posts_once_and_reports_change(fake_api, run_module):
    fake_api.add("POST", UPLOAD, None)
    run = run_module(heatmap_upload, args(fake_api))
    assert run.changed and not run.failed
    assert [(r.method, r.path) for r in fake_api.requests] == [("POST", UPLOAD)]
    assert run["tenant_shard_id"] == TENANT_ID
    assert SECRET_TOKEN not in run.raw


def test_check_mode_sends_nothing(fake_api, run_module):
    run = run_module(heatmap_upload, args(fake_api), check_mode=True)
    assert run.changed
    assert fake_api.requests == []


def test_not_attached_is_explained(fake_api, run_module):
    fake_api.add("POST", UPLOAD, {"msg": f"NotFound: tenant {TENANT_ID}"}, 404)
    run = run_module(heatmap_upload, args(fake_api))
    assert run.failed
    assert run["msg"].startswith(f"upload heatmap of {TENANT_ID} failed: not attached on this pageserver (POST ")
    assert run["status"] == 404
    assert SECRET_TOKEN not in run.raw


def test_not_active_is_explained_and_not_retried(fake_api, run_module):
    fake_api.add("POST", UPLOAD, {"msg": "Tenant not yet active"}, 503)
    run = run_module(heatmap_upload, args(fake_api))
    assert run.failed and "attached here but not Active" in run["msg"]
    assert len(fake_api.requests) == 1


def test_bad_id_fails_before_any_request(fake_api, run_module):
    run = run_module(heatmap_upload, args(fake_api, tenant_shard_id="../v1/tenant"))
    assert run.failed and run["msg"].startswith("tenant_shard_id: invalid tenant shard id")
    assert fake_api.requests == []
