from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import safekeeper_timeline_info
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID, TIMELINE_ID
from ansible_collections.neonops.storage.tests.unit.plugins.modules.test_tenant_generation import (
    assert_doc_matches_argspec,
)

PATH = f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID}"


def timeline_status(commit_lsn, flush_lsn, **extra):
    return {
        "tenant_id": TENANT_ID,
        "timeline_id": TIMELINE_ID,
        "acceptor_state": {"term": 3, "epoch": 3, "term_history": [{"term": 3, "lsn": "0/1000"}]},
        "flush_lsn": flush_lsn,
        "commit_lsn": commit_lsn,
        "backup_lsn": "0/0",
        "peer_horizon_lsn": "0/1000",
        "remote_consistent_lsn": "0/1500",
        "timeline_start_lsn": "0/1000",
        "local_start_lsn": "0/1000",
        "peers": [],
        "walsenders": [],
        "walreceivers": [],
        **extra,
    }


@pytest.fixture
def safekeepers(fake_api_factory):
    servers = [fake_api_factory() for _number in range(3)]
    servers[0].add("GET", PATH, timeline_status("0/9", "0/A"))
    servers[1].add("GET", PATH, timeline_status("0/10", "0/10"))
    servers[2].add("GET", PATH, timeline_status("0/F", "0/20"))
    return servers


def args(urls, **extra):
    return {
        "safekeeper_urls": urls,
        "api_token": SECRET_TOKEN,
        "tenant_id": TENANT_ID,
        "timeline_id": TIMELINE_ID,
        "retries": 0,
        **extra,
    }


def test_reports_max_commit_and_flush_lsn_numerically(safekeepers, run_module):
    run = run_module(safekeeper_timeline_info, args([s.url for s in safekeepers]))
    assert not run.failed, run.result
    assert not run.changed
    # "0/9" > "0/10" as strings: the maximum must be numeric.
    assert (run["commit_lsn"], run["commit_lsn_int"]) == ("0/10", 16)
    assert (run["flush_lsn"], run["flush_lsn_int"]) == ("0/20", 32)
    assert (run["answered"], run["quorum"], run["quorum_size"]) == (3, True, 2)
    first = run["safekeepers"][0]
    assert first["url"] == safekeepers[0].url
    assert first["ok"] and first["error"] is None
    assert (first["commit_lsn"], first["commit_lsn_int"]) == ("0/9", 9)
    assert first["timeline"]["remote_consistent_lsn_int"] == 0x1500
    assert first["timeline"]["acceptor_state"]["term"] == 3
    for server in safekeepers:
        assert [r.headers["Authorization"] for r in server.requests] == [f"Bearer {SECRET_TOKEN}"]
        assert server.mutating_requests == []


def test_check_mode_is_the_same_read(safekeepers, run_module):
    run = run_module(safekeeper_timeline_info, args([s.url for s in safekeepers]), check_mode=True)
    assert run["commit_lsn"] == "0/10"
    assert all(server.mutating_requests == [] for server in safekeepers)


def test_minority_failure_is_reported_not_fatal(safekeepers, run_module):
    safekeepers[1].routes.clear()
    safekeepers[1].add("GET", PATH, {"msg": "NotFound: Timeline not found"}, 404)
    run = run_module(safekeeper_timeline_info, args([s.url for s in safekeepers]))
    assert not run.failed
    assert run["answered"] == 2 and run["quorum"]
    assert run["commit_lsn"] == "0/F"  # the failed safekeeper's 0/10 is not counted
    failed = run["safekeepers"][1]
    assert not failed["ok"]
    assert failed["http_status"] == 404
    assert "Timeline not found" in failed["error"]
    assert failed["commit_lsn"] is None and failed["timeline"] is None
    assert any(safekeepers[1].url in str(warning) and "HTTP 404" in str(warning) for warning in run.warnings)


def test_fails_without_a_majority(safekeepers, run_module):
    for server in safekeepers[1:]:
        server.routes.clear()
        server.add("GET", PATH, {"msg": "Forbidden: JWT authentication error"}, 403)
    run = run_module(safekeeper_timeline_info, args([s.url for s in safekeepers]))
    assert run.failed
    assert f"Reading timeline {TENANT_ID}/{TIMELINE_ID} from the safekeepers failed" in run["msg"]
    assert "only 1 of 3 answered, a quorum needs 2" in run["msg"]
    assert "HTTP 403" in run["msg"]
    assert SECRET_TOKEN not in run.raw
    assert run["safekeepers"][0]["ok"]


def test_unreachable_safekeeper_is_an_error_entry(safekeepers, fake_api_factory, run_module):
    dead = fake_api_factory()
    dead_url = dead.url
    dead.close()  # nothing listens there any more
    run = run_module(safekeeper_timeline_info, args([safekeepers[0].url, dead_url]))
    # One of two answered: no majority.
    assert run.failed
    assert run["safekeepers"][1]["http_status"] is None
    assert run["safekeepers"][1]["error"].startswith(f"GET {dead_url}")


def test_require_quorum_false_succeeds_with_nothing(fake_api_factory, run_module):
    server = fake_api_factory()
    server.add("GET", PATH, {"msg": "boom"}, 500)
    run = run_module(safekeeper_timeline_info, args([server.url], require_quorum=False))
    assert not run.failed
    assert run["answered"] == 0
    assert run["commit_lsn"] is None and run["commit_lsn_int"] is None
    assert run["safekeepers"][0]["http_status"] == 500


def test_single_safekeeper_through_api_url(safekeepers, run_module):
    run = run_module(
        safekeeper_timeline_info,
        {"api_url": safekeepers[2].url, "tenant_id": TENANT_ID, "timeline_id": TIMELINE_ID},
    )
    assert not run.failed
    assert (run["answered"], run["quorum_size"], run["commit_lsn"]) == (1, 1, "0/F")
    assert [r.path for r in safekeepers[2].requests] == [PATH]
    assert safekeepers[0].requests == []


def test_safekeeper_urls_take_precedence_over_api_url(safekeepers, run_module):
    run = run_module(safekeeper_timeline_info, args([safekeepers[0].url], api_url=safekeepers[1].url))
    assert run["commit_lsn"] == "0/9"
    assert safekeepers[1].requests == []


def test_unparsable_lsn_is_a_per_safekeeper_error(fake_api_factory, run_module):
    server = fake_api_factory()
    server.add("GET", PATH, timeline_status("garbage", "0/1"))
    run = run_module(safekeeper_timeline_info, args([server.url], require_quorum=False))
    assert not run["safekeepers"][0]["ok"]
    assert "'garbage'" in run["safekeepers"][0]["error"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"tenant_id": f"{TENANT_ID}-0104"}, "tenant_id"),
        ({"timeline_id": "xyz"}, "timeline_id"),
        ({"safekeeper_urls": []}, "safekeeper_urls"),
        ({"safekeeper_urls": ["sk-1:7676"]}, "safekeeper_urls[0]"),
        (
            {"safekeeper_urls": ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:1/"]},
            "safekeeper_urls[2]",
        ),
    ],
)
def test_bad_input_fails_before_any_request(safekeepers, run_module, overrides, expected):
    run = run_module(safekeeper_timeline_info, args([s.url for s in safekeepers], **overrides))
    assert run.failed
    assert run["msg"].startswith(expected)
    assert all(server.requests == [] for server in safekeepers)


def test_needs_api_url_or_safekeeper_urls(run_module):
    run = run_module(safekeeper_timeline_info, {"tenant_id": TENANT_ID, "timeline_id": TIMELINE_ID})
    assert run.failed
    assert "api_url" in run["msg"] and "safekeeper_urls" in run["msg"]


def test_documentation_renders_and_matches_argspec():
    assert_doc_matches_argspec(safekeeper_timeline_info)
