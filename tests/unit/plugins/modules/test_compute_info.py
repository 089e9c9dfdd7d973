from __future__ import annotations

import json

import pytest
from ansible_collections.neonops.storage.plugins.modules import compute_info
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID, TIMELINE_ID
from ansible_collections.neonops.storage.tests.unit.plugins.modules.test_compute_pageserver import (
    PS1,
    PS2,
    ROLE_PASSWORD,
    STORAGE_TOKEN,
    conf_text,
    make_spec,
)
from ansible_collections.neonops.storage.tests.unit.plugins.modules.test_tenant_generation import (
    assert_doc_matches_argspec,
)

STATUS = {
    "start_time": "2026-01-01T00:00:00Z",
    "tenant": TENANT_ID,
    "timeline": TIMELINE_ID,
    "status": "running",
    "last_active": None,
    "error": None,
}


@pytest.fixture
def host(fake_api, tmp_path):
    fake_api.add("GET", "/status", STATUS)
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "postgresql.conf").write_text(conf_text(f"{PS1},{PS2}", 2048))
    (tmp_path / "spec.json").write_text(json.dumps(make_spec([PS1, PS2], shard_count=2, stripe_size=2048)))
    return tmp_path


def args(api, host, **extra):
    return {
        "api_url": api.url,
        "api_token": SECRET_TOKEN,
        "pgdata": str(host / "pgdata"),
        "spec_path": str(host / "spec.json"),
        **extra,
    }


def test_reads_status_conf_and_spec(fake_api, host, run_module):
    run = run_module(compute_info, args(fake_api, host))
    assert not run.failed, run.result
    assert not run.changed
    assert run["status"] == "running"
    assert run["compute"] == STATUS
    assert run["pageserver_connstring"] == f"{PS1},{PS2}"
    assert run["pageservers"] == [PS1, PS2]
    assert (run["stripe_size"], run["connstring_source"]) == (2048, "postgresql.conf")
    assert run["spec_connection"] == {
        "connstring": f"{PS1},{PS2}",
        "stripe_size": 2048,
        "shard_count": 2,
        "source": "pageserver_connection_info",
    }
    assert run["in_sync"] is True
    assert run["spec"]["storage_auth_token"] == "********"
    assert run["spec"]["cluster"]["roles"][0]["encrypted_password"] == "********"
    assert run["spec"]["tenant_id"] == TENANT_ID
    for secret in (SECRET_TOKEN, STORAGE_TOKEN, ROLE_PASSWORD):
        assert secret not in run.raw
    assert fake_api.requests[0].headers["Authorization"] == f"Bearer {SECRET_TOKEN}"


def test_postgresql_conf_wins_and_drift_is_reported(fake_api, host, run_module):
    (host / "pgdata" / "postgresql.conf").write_text(conf_text(f"{PS2},{PS1}", 2048))
    run = run_module(compute_info, args(fake_api, host))
    assert run["pageserver_connstring"] == f"{PS2},{PS1}"
    assert run["in_sync"] is False


def test_spec_only(fake_api, host, run_module):
    run = run_module(compute_info, args(fake_api, host, pgdata=None))
    assert run["pageserver_connstring"] == f"{PS1},{PS2}"
    assert run["connstring_source"] == "pageserver_connection_info"
    assert run["in_sync"] is None


def test_status_only(fake_api, run_module):
    fake_api.add("GET", "/status", STATUS)
    run = run_module(compute_info, {"api_url": fake_api.url})
    assert not run.failed
    assert run["status"] == "running"
    assert run["pageserver_connstring"] is None and run["pageservers"] == []
    assert "spec" not in run.result


def test_check_mode_only_reads(fake_api, host, run_module):
    run = run_module(compute_info, args(fake_api, host), check_mode=True)
    assert not run.failed
    assert fake_api.mutating_requests == []


@pytest.mark.parametrize(("status", "error"), [(400, "invalid authorization token"), (403, "compute_id mismatch")])
def test_compute_ctl_errors_use_the_error_key(fake_api, tmp_path, run_module, status, error):
    fake_api.add("GET", "/status", {"error": error}, status)
    run = run_module(compute_info, {"api_url": fake_api.url, "api_token": SECRET_TOKEN})
    assert run.failed
    assert run["msg"].startswith("Reading the compute status failed")
    assert f"HTTP {status}: {error}" in run["msg"]
    assert SECRET_TOKEN not in run.raw


def test_missing_files_fail_naming_the_option(fake_api, host, run_module):
    run = run_module(compute_info, args(fake_api, host, pgdata=str(host / "missing")))
    assert run.failed and run["msg"].startswith("pgdata: cannot read")
    (host / "spec.json").write_text("[1, 2]")
    run = run_module(compute_info, args(fake_api, host))
    assert run.failed and run["msg"].startswith("spec_path:") and "expected a JSON object" in run["msg"]


def test_documentation_renders_and_matches_argspec():
    assert_doc_matches_argspec(compute_info)
