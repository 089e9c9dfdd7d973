from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonClient
from ansible_collections.neonops.storage.plugins.modules import timeline
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID, TIMELINE_ID, TIMELINE_ID_2
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import timeline_info

# TIMELINE_ID_2 is the branch, TIMELINE_ID its ancestor (timeline_info gives a branch ancestor_lsn 0/1000000).
BRANCH = f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID_2}"
CREATE = f"/v1/tenant/{TENANT_ID}/timeline"
NOT_FOUND = {"msg": f"NotFound: Timeline {TENANT_ID}/{TIMELINE_ID_2} was not found"}


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(timeline, "_sleep", lambda seconds: None)


def args(api, **kw):
    base = {
        "api_url": api.url,
        "api_token": SECRET_TOKEN,
        "tenant_shard_id": TENANT_ID,
        "timeline_id": TIMELINE_ID_2,
        "ancestor_timeline_id": TIMELINE_ID,
    }
    base.update(kw)
    return base


def branch(**kw):
    return timeline_info(TIMELINE_ID_2, ancestor=TIMELINE_ID, **kw)


def test_missing_branch_is_created_with_normalized_lsn(fake_api, run_module):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("POST", CREATE, branch(), 201)
    run = run_module(timeline, args(fake_api, ancestor_start_lsn="0/1000000", pg_version=16), diff=True)
    assert not run.failed, run.result
    assert run.changed
    (post,) = fake_api.calls("POST", CREATE)
    # pg_version is not sent for a branch: the pageserver ignores it there.
    assert post.body == {
        "new_timeline_id": TIMELINE_ID_2,
        "ancestor_timeline_id": TIMELINE_ID,
        "ancestor_start_lsn": "0/1000000",
    }
    assert post.headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert run["timeline"]["timeline_id"] == TIMELINE_ID_2
    assert run["timeline"]["ancestor_lsn_int"] == 0x1000000
    assert run["timeline"]["last_record_lsn_int"] == 0x16960E8
    assert run["diff"]["before"] == {}
    assert run["diff"]["after"] == {
        "timeline_id": TIMELINE_ID_2,
        "ancestor_timeline_id": TIMELINE_ID,
        "ancestor_lsn": "0/1000000",
        "pg_version": 16,
    }
    assert SECRET_TOKEN not in run.raw


def test_root_timeline_is_created_with_pg_version(fake_api, run_module):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("POST", CREATE, timeline_info(TIMELINE_ID_2), 201)
    run = run_module(timeline, args(fake_api, ancestor_timeline_id=None, pg_version=16))
    assert not run.failed, run.result
    assert [c.body for c in fake_api.calls("POST", CREATE)] == [{"new_timeline_id": TIMELINE_ID_2, "pg_version": 16}]


def test_existing_matching_branch_is_unchanged_and_sends_nothing(fake_api, run_module):
    fake_api.add("GET", BRANCH, branch())
    run = run_module(timeline, args(fake_api, ancestor_start_lsn="0/1000000"), diff=True)
    assert not run.failed, run.result
    assert not run.changed
    assert fake_api.mutating_requests == []
    assert run["timeline"]["ancestor_lsn"] == "0/1000000"
    assert run["diff"]["before"] == run["diff"]["after"]


def test_without_start_lsn_the_branch_point_is_not_compared(fake_api, run_module):
    fake_api.add("GET", BRANCH, branch())
    run = run_module(timeline, args(fake_api))
    assert not run.failed and not run.changed


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ancestor_start_lsn": "0/2000000"}, "ancestor_lsn: wanted 0/2000000, the timeline branches at 0/1000000"),
        (
            {"ancestor_timeline_id": "a" * 32},
            f"ancestor_timeline_id: wanted {'a' * 32}, the timeline has {TIMELINE_ID}",
        ),
        (
            {"ancestor_timeline_id": None},
            f"ancestor_timeline_id: wanted none (a root timeline), the timeline has {TIMELINE_ID}",
        ),
    ],
)
def test_existing_timeline_with_other_parameters_fails_naming_them(fake_api, run_module, overrides, expected):
    fake_api.add("GET", BRANCH, branch())
    run = run_module(timeline, args(fake_api, **overrides))
    assert run.failed
    assert f"timeline {TENANT_ID}/{TIMELINE_ID_2} exists with different parameters" in run["msg"]
    assert expected in run["msg"]
    assert run["differences"] == [expected]
    assert fake_api.mutating_requests == []


def test_root_timeline_with_other_pg_version_fails(fake_api, run_module):
    fake_api.add("GET", BRANCH, timeline_info(TIMELINE_ID_2))
    run = run_module(timeline, args(fake_api, ancestor_timeline_id=None, pg_version=15))
    assert run.failed
    assert "pg_version: wanted 15, the timeline has 16" in run["msg"]


def test_branch_pg_version_is_not_compared(fake_api, run_module):
    fake_api.add("GET", BRANCH, branch())
    run = run_module(timeline, args(fake_api, pg_version=15))
    assert not run.failed and not run.changed


def test_check_mode_reports_creation_without_posting(fake_api, run_module):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    run = run_module(timeline, args(fake_api), check_mode=True, diff=True)
    assert run.changed
    assert fake_api.mutating_requests == []
    assert run["timeline"] is None
    assert run["diff"]["after"]["ancestor_timeline_id"] == TIMELINE_ID


def test_check_mode_still_fails_on_a_mismatch(fake_api, run_module):
    fake_api.add("GET", BRANCH, branch())
    run = run_module(timeline, args(fake_api, ancestor_start_lsn="0/2000000"), check_mode=True)
    assert run.failed
    assert fake_api.mutating_requests == []


def test_being_created_is_retried_until_created(fake_api, run_module):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("POST", CREATE, {"msg": "Timeline creation already in progress"}, 429)
    fake_api.add("POST", CREATE, {"msg": "ancestor timeline is not active"}, 503)
    fake_api.add("POST", CREATE, branch(), 201)
    run = run_module(timeline, args(fake_api))
    assert not run.failed, run.result
    assert run.changed
    assert len(fake_api.calls("POST", CREATE)) == 3
    assert any("retrying the creation" in w for w in run.warnings)


def test_being_created_past_the_deadline_fails(fake_api, run_module):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("POST", CREATE, {"msg": "Timeline creation already in progress"}, 429)
    run = run_module(timeline, args(fake_api, wait_timeout=0))
    assert run.failed
    assert run["status"] == 429
    assert f"create timeline {TENANT_ID}/{TIMELINE_ID_2} failed" in run["msg"]
    assert len(fake_api.calls("POST", CREATE)) == 1


def test_conflict_on_create_reads_again_and_names_the_difference(fake_api, run_module):
    # Someone created it between the module's read and its POST, from another ancestor.
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("GET", BRANCH, timeline_info(TIMELINE_ID_2, ancestor="b" * 32))
    fake_api.add("POST", CREATE, {"msg": "Conflict: Timeline already exists with different parameters"}, 409)
    run = run_module(timeline, args(fake_api))
    assert run.failed
    assert f"ancestor_timeline_id: wanted {TIMELINE_ID}, the timeline has {'b' * 32}" in run["msg"]
    assert len(fake_api.calls("POST", CREATE)) == 1


def test_conflict_without_a_readable_timeline_reports_the_server(fake_api, run_module):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("POST", CREATE, {"msg": "Conflict: Timeline already exists with different parameters"}, 409)
    run = run_module(timeline, args(fake_api))
    assert run.failed
    assert run["status"] == 409
    assert "it exists with different parameters" in run["msg"]
    assert "HTTP 409: Conflict" in run["msg"]


@pytest.mark.parametrize("status", [400, 406, 500])
def test_other_create_errors_fail_at_once(fake_api, run_module, status):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("POST", CREATE, {"msg": "invalid branch start lsn"}, status)
    run = run_module(timeline, args(fake_api))
    assert run.failed
    assert run["status"] == status
    assert len(fake_api.calls("POST", CREATE)) == 1


def test_read_error_fails_before_any_change(fake_api, run_module):
    fake_api.add("GET", BRANCH, {"msg": "Forbidden: JWT authentication error"}, 403)
    run = run_module(timeline, args(fake_api))
    assert run.failed
    assert f"read timeline {TENANT_ID}/{TIMELINE_ID_2} failed" in run["msg"]
    assert fake_api.mutating_requests == []
    assert SECRET_TOKEN not in run.raw


# ---- state=absent ---------------------------------------------------------------------------------------------


def test_absent_timeline_is_unchanged(fake_api, run_module):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    run = run_module(timeline, args(fake_api, state="absent"), diff=True)
    assert not run.failed and not run.changed
    assert fake_api.mutating_requests == []
    assert run["timeline"] is None
    assert run["diff"] == {"before": {}, "after": {}}


def test_delete_waits_until_the_timeline_is_gone(fake_api, run_module):
    fake_api.add("GET", BRANCH, branch())
    fake_api.add("GET", BRANCH, branch())
    fake_api.add("GET", BRANCH, branch())
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("DELETE", BRANCH, None, 202)
    run = run_module(timeline, args(fake_api, state="absent"), diff=True)
    assert not run.failed, run.result
    assert run.changed
    assert len(fake_api.calls("DELETE", BRANCH)) == 1
    # One read before, then polls until the 404.
    assert len(fake_api.calls("GET", BRANCH)) == 4
    assert run["timeline"] is None
    assert run["diff"]["before"]["ancestor_timeline_id"] == TIMELINE_ID
    assert run["diff"]["after"] == {}


def test_deletion_already_running_is_waited_for(fake_api, run_module):
    fake_api.add("GET", BRANCH, branch())
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("DELETE", BRANCH, {"msg": "Conflict: Timeline deletion is already in progress"}, 409)
    run = run_module(timeline, args(fake_api, state="absent"))
    assert not run.failed, run.result
    assert run.changed


def test_delete_with_children_fails_with_the_server_message(fake_api, run_module):
    children = f"Precondition failed: Cannot delete timeline which has child timelines: ['{'c' * 32}']"
    fake_api.add("GET", BRANCH, branch())
    fake_api.add("DELETE", BRANCH, {"msg": children}, 412)
    run = run_module(timeline, args(fake_api, state="absent"))
    assert run.failed
    assert run["status"] == 412
    assert children in run["msg"]
    assert run["error"] == children


def test_delete_that_never_finishes_fails_after_the_timeout(fake_api, run_module):
    fake_api.add("GET", BRANCH, branch())
    fake_api.add("DELETE", BRANCH, None, 202)
    run = run_module(timeline, args(fake_api, state="absent", wait_timeout=0))
    assert run.failed
    assert "is still present 0.0s after its deletion started" in run["msg"]


def test_check_mode_delete_sends_nothing(fake_api, run_module):
    fake_api.add("GET", BRANCH, branch())
    run = run_module(timeline, args(fake_api, state="absent"), check_mode=True)
    assert run.changed
    assert fake_api.mutating_requests == []


# ---- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"tenant_shard_id": "nope"}, "tenant_shard_id: invalid tenant shard id 'nope'"),
        ({"timeline_id": "xyz"}, "timeline_id: invalid timeline id 'xyz'"),
        ({"ancestor_timeline_id": "short"}, "ancestor_timeline_id: invalid timeline id 'short'"),
        ({"ancestor_timeline_id": TIMELINE_ID_2}, "ancestor_timeline_id: "),
        ({"ancestor_start_lsn": "16960E8"}, "ancestor_start_lsn: invalid LSN '16960E8'"),
        (
            {"ancestor_start_lsn": "0/1", "ancestor_timeline_id": None},
            "ancestor_start_lsn: '0/1' needs ancestor_timeline_id",
        ),
        ({"pg_version": 0}, "pg_version: must be an integer from 14 to 99, got 0"),
        ({"api_url": "ftp://ps"}, "api_url"),
    ],
)
def test_bad_input_fails_before_any_request(fake_api, run_module, overrides, expected):
    run = run_module(timeline, args(fake_api, **overrides))
    assert run.failed
    assert run["msg"].startswith(expected), run["msg"]
    assert fake_api.requests == []


def test_ids_are_lowercased_in_paths_and_body(fake_api, run_module):
    fake_api.add("GET", BRANCH, NOT_FOUND, 404)
    fake_api.add("POST", CREATE, branch(), 201)
    run = run_module(
        timeline, args(fake_api, timeline_id=TIMELINE_ID_2.upper(), ancestor_timeline_id=TIMELINE_ID.upper())
    )
    assert not run.failed, run.result
    assert fake_api.unmatched == []
    assert fake_api.calls("POST", CREATE)[0].body["ancestor_timeline_id"] == TIMELINE_ID


# ---- the wrappers -------------------------------------------------------------------------------------------------


def test_create_timeline_wrapper_refuses_a_start_lsn_without_ancestor(fake_api):
    client = NeonClient(fake_api.url, backoff_factor=0)
    with pytest.raises(ValueError, match="ancestor_start_lsn"):
        ps.create_timeline(client, TENANT_ID, TIMELINE_ID_2, ancestor_start_lsn="0/1")
    assert fake_api.requests == []


def test_timeline_mismatches_treats_null_branch_point_as_zero():
    info = timeline_info(TIMELINE_ID_2, ancestor=TIMELINE_ID)
    info["ancestor_lsn"] = None
    assert ps.timeline_mismatches(info, TIMELINE_ID, "0/0") == []
    assert ps.timeline_mismatches(info, TIMELINE_ID, "0/1") == [
        "ancestor_lsn: wanted 0/1, the timeline branches at 0/0"
    ]
