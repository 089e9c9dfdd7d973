from __future__ import annotations

from ansible_collections.neonops.storage.plugins.modules import secondary_download
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import progress

DOWNLOAD = f"/v1/tenant/{TENANT_ID}/secondary/download"
STATUS = f"/v1/tenant/{TENANT_ID}/secondary/status"


def args(api, **kw):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_shard_id": TENANT_ID, "wait_ms": 50, **kw}


def test_drives_download_until_complete_with_snapshots(fake_api, run_module):
    fake_api.add("GET", STATUS, progress(0, 0, mtime=None))
    fake_api.add("POST", DOWNLOAD, progress(4, 12), 202)
    fake_api.add("POST", DOWNLOAD, progress(9, 12), 202)
    fake_api.add("POST", DOWNLOAD, progress(12, 12), 200)
    run = run_module(secondary_download, args(fake_api))
    assert not run.failed and run.changed and run["complete"]
    assert run["progress"] == progress(12, 12)
    assert [(s["status"], s["layers_downloaded"]) for s in run["snapshots"]] == [(202, 4), (202, 9), (200, 12)]
    assert all(r.query == {"wait_ms": "50"} for r in fake_api.calls("POST"))
    assert SECRET_TOKEN not in run.raw


def test_already_complete_is_unchanged(fake_api, run_module):
    fake_api.add("GET", STATUS, progress(12, 12))
    fake_api.add("POST", DOWNLOAD, progress(12, 12), 200)
    run = run_module(secondary_download, args(fake_api))
    assert not run.changed and run["complete"]
    assert len(fake_api.calls("POST")) == 1


def test_check_mode_only_reads_status(fake_api, run_module):
    fake_api.add("GET", STATUS, progress(3, 12))
    run = run_module(secondary_download, args(fake_api), check_mode=True)
    assert run.changed and not run["complete"]
    assert run["progress"]["layers_downloaded"] == 3
    assert [(r.method, r.path) for r in fake_api.requests] == [("GET", STATUS)]


def test_missing_heatmap_fails_clearly(fake_api, run_module):
    fake_api.add("GET", STATUS, progress(0, 0, mtime=None))
    fake_api.add("POST", DOWNLOAD, progress(0, 0, mtime=None), 200)
    run = run_module(secondary_download, args(fake_api))
    assert run.failed
    assert run["msg"].startswith(f"no heatmap exists for {TENANT_ID}")
    assert "heatmap_upload" in run["msg"]
    assert len(fake_api.calls("POST")) == 1


def test_deadline_fails_with_bounded_snapshots(fake_api, run_module):
    fake_api.add("GET", STATUS, progress(0, 12))
    fake_api.add("POST", DOWNLOAD, progress(5, 12), 202)
    run = run_module(secondary_download, args(fake_api, wait_timeout=0.3))
    assert run.failed
    assert "not complete after 0.3s: 5/12 layers" in run["msg"]
    assert 1 <= len(run["snapshots"]) <= secondary_download.MAX_SNAPSHOTS


def test_deadline_without_require_complete_returns_incomplete(fake_api, run_module):
    fake_api.add("GET", STATUS, progress(0, 12))
    fake_api.add("POST", DOWNLOAD, progress(5, 12), 202)
    run = run_module(secondary_download, args(fake_api, wait_timeout=0, require_complete=False))
    assert not run.failed and run.changed and not run["complete"]
    assert len(fake_api.calls("POST")) == 1


def test_download_timeout_alias_still_works(fake_api, run_module):
    """download_timeout is the former name of wait_timeout, kept as an alias."""
    fake_api.add("GET", STATUS, progress(0, 12))
    fake_api.add("POST", DOWNLOAD, progress(5, 12), 202)
    run = run_module(secondary_download, args(fake_api, download_timeout=0))
    assert run.failed and "not complete after 0.0s: 5/12 layers" in run["msg"]
    assert len(fake_api.calls("POST")) == 1


def test_not_secondary_is_explained(fake_api, run_module):
    fake_api.add("GET", STATUS, {"msg": f"NotFound: Shard {TENANT_ID} not found"}, 404)
    run = run_module(secondary_download, args(fake_api))
    assert run.failed
    assert "no Secondary location for this shard on this pageserver" in run["msg"]
    assert fake_api.mutating_requests == []


def test_download_error_is_not_retried(fake_api, run_module):
    fake_api.add("GET", STATUS, progress(0, 12))
    fake_api.add("POST", DOWNLOAD, {"msg": "Shutting down"}, 503)
    run = run_module(secondary_download, args(fake_api))
    assert run.failed and f"secondary download of {TENANT_ID} failed" in run["msg"]
    assert len(fake_api.calls("POST")) == 1
    assert SECRET_TOKEN not in run.raw


def test_snapshot_thinning_keeps_first_and_last():
    snapshots = []
    for i in range(500):
        secondary_download.add_snapshot(snapshots, {"i": i})
    assert len(snapshots) <= secondary_download.MAX_SNAPSHOTS
    assert snapshots[0] == {"i": 0} and snapshots[-1] == {"i": 499}
    assert [s["i"] for s in snapshots] == sorted(s["i"] for s in snapshots)
