from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import timeline_catchup
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID, TIMELINE_ID, TIMELINE_ID_2
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import timeline_info

TIMELINES = f"/v1/tenant/{TENANT_ID}/timeline"
SOURCE_TOKEN = "source-tok3n-SHOULD-NEVER-LEAK"
SK_TOKEN = "sk-tok3n-SHOULD-NEVER-LEAK"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(timeline_catchup, "_sleep", lambda seconds: None)


def args(api, **kw):
    return {"api_url": api.url, "api_token": SECRET_TOKEN, "tenant_shard_id": TENANT_ID, "poll_interval": 0, **kw}


def no_leak(run):
    for token in (SECRET_TOKEN, SOURCE_TOKEN, SK_TOKEN):
        assert token not in run.raw


def test_explicit_targets_poll_until_reached_with_history(fake_api, run_module):
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/100"), timeline_info(TIMELINE_ID_2, "0/50")])
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/180"), timeline_info(TIMELINE_ID_2, "0/60")])
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/200"), timeline_info(TIMELINE_ID_2, "0/60")])
    run = run_module(timeline_catchup, args(fake_api, target_lsns={TIMELINE_ID: "0/200", TIMELINE_ID_2.upper(): 0x60}))
    assert not run.failed and not run.changed and run["reached"]
    assert run["targets"] == {TIMELINE_ID: "0/200", TIMELINE_ID_2: "0/60"}
    assert [(h["lag_bytes"], h["lagging"]) for h in run["history"]] == [(0x100 + 0x10, 2), (0x80, 1), (0, 0)]
    assert run["timelines"][TIMELINE_ID]["last_record_lsn_int"] == 0x200
    assert fake_api.mutating_requests == []
    no_leak(run)


def test_check_mode_behaves_the_same(fake_api, run_module):
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/200")])
    run = run_module(timeline_catchup, args(fake_api, target_lsns={TIMELINE_ID: "0/200"}), check_mode=True)
    assert run["reached"] and not run.changed


def test_source_pageserver_last_record_lsn_is_the_target(fake_api_factory, run_module):
    dest, source = fake_api_factory(), fake_api_factory()
    source.add("GET", TIMELINES, [timeline_info(last_record_lsn="1/0"), timeline_info(TIMELINE_ID_2, "0/10")])
    dest.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/FFFFFFFF"), timeline_info(TIMELINE_ID_2, "0/10")])
    dest.add("GET", TIMELINES, [timeline_info(last_record_lsn="1/0"), timeline_info(TIMELINE_ID_2, "0/10")])
    run = run_module(timeline_catchup, args(dest, source_api_url=source.url, source_api_token=SOURCE_TOKEN))
    assert run["reached"]
    assert run["targets"] == {TIMELINE_ID: "1/0", TIMELINE_ID_2: "0/10"}
    assert run["history"][0] == {"elapsed": run["history"][0]["elapsed"], "lag_bytes": 1, "lagging": 1}
    assert source.requests[0].headers["Authorization"] == f"Bearer {SOURCE_TOKEN}"
    assert len(source.requests) == 1  # targets are read once
    no_leak(run)


def test_safekeeper_commit_lsn_max_is_the_target(fake_api_factory, run_module):
    dest, sk1, sk2, sk3 = (fake_api_factory() for _server in range(4))
    sk_path = f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID}"
    sk1.add("GET", sk_path, {"commit_lsn": "0/300", "flush_lsn": "0/300"})
    sk2.add("GET", sk_path, {"commit_lsn": "0/2F0", "flush_lsn": "0/300"})
    sk3.add("GET", sk_path, {"msg": "NotFound: Timeline not found"}, 404)
    dest.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/300")])
    run = run_module(
        timeline_catchup,
        args(
            dest,
            safekeeper_urls=[sk1.url, sk2.url, sk3.url],
            safekeeper_api_token=SK_TOKEN,
            timelines=[TIMELINE_ID],
        ),
    )
    assert run["reached"] and run["targets"] == {TIMELINE_ID: "0/300"}
    assert sk1.requests[0].headers["Authorization"] == f"Bearer {SK_TOKEN}"
    no_leak(run)


def test_safekeepers_without_timelines_use_the_destination_list(fake_api_factory, run_module):
    dest, sk1 = fake_api_factory(), fake_api_factory()
    sk1.add("GET", f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID}", {"commit_lsn": "0/10"})
    dest.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/10")])
    run = run_module(timeline_catchup, args(dest, safekeeper_urls=[sk1.url]))
    assert run["reached"] and list(run["targets"]) == [TIMELINE_ID]


def test_no_safekeeper_knows_the_timeline(fake_api_factory, run_module):
    dest, sk1 = fake_api_factory(), fake_api_factory()
    sk1.add("GET", f"/v1/tenant/{TENANT_ID}/timeline/{TIMELINE_ID}", {"msg": "NotFound: Timeline not found"}, 404)
    run = run_module(timeline_catchup, args(dest, safekeeper_urls=[sk1.url], timelines=[TIMELINE_ID]))
    assert run.failed and f"no safekeeper reported a commit_lsn for timeline {TIMELINE_ID}" in run["msg"]
    assert dest.requests == []


def test_missing_timeline_on_destination_fails(fake_api, run_module):
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/200")])
    run = run_module(timeline_catchup, args(fake_api, target_lsns={TIMELINE_ID: "0/200", TIMELINE_ID_2: "0/1"}))
    assert run.failed
    assert run["msg"] == f"timelines missing on the destination for {TENANT_ID}: {TIMELINE_ID_2}"
    assert run["missing"] == [TIMELINE_ID_2]


def test_missing_timeline_ignored_when_asked(fake_api, run_module):
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/200")])
    run = run_module(
        timeline_catchup,
        args(fake_api, target_lsns={TIMELINE_ID: "0/200", TIMELINE_ID_2: "0/1"}, ignore_missing=True),
    )
    assert not run.failed and run["reached"]
    assert run["missing"] == [TIMELINE_ID_2]
    assert any(TIMELINE_ID_2 in w for w in run.warnings)


def test_deadline_fails_with_bounded_history(fake_api, run_module):
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/100")])
    run = run_module(timeline_catchup, args(fake_api, target_lsns={TIMELINE_ID: "0/200"}, wait_timeout=0.3))
    assert run.failed
    assert f"{TENANT_ID} did not catch up within 0.3s" in run["msg"]
    assert not run["reached"]
    assert 1 <= len(run["history"]) <= timeline_catchup.MAX_HISTORY
    assert run["history"][-1]["lag_bytes"] == 0x100
    assert run["timelines"][TIMELINE_ID]["lag_bytes"] == 0x100


def test_deadline_alias_still_works(fake_api, run_module):
    """deadline is the former name of wait_timeout, kept as an alias."""
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/100")])
    run = run_module(timeline_catchup, args(fake_api, target_lsns={TIMELINE_ID: "0/200"}, deadline=0))
    assert run.failed and f"{TENANT_ID} did not catch up within 0.0s" in run["msg"]
    assert len(fake_api.calls("GET")) == 1


def test_activating_destination_is_polled_until_ready(fake_api, run_module):
    fake_api.add("GET", TIMELINES, {"msg": "Tenant not yet active"}, 503)
    fake_api.add("GET", TIMELINES, [timeline_info(last_record_lsn="0/200")])
    run = run_module(timeline_catchup, args(fake_api, target_lsns={TIMELINE_ID: "0/200"}, retries=0))
    assert run["reached"]


def test_not_attached_destination_fails_clearly(fake_api, run_module):
    fake_api.add("GET", TIMELINES, {"msg": f"NotFound: tenant {TENANT_ID}"}, 404)
    run = run_module(timeline_catchup, args(fake_api, target_lsns={TIMELINE_ID: "0/200"}))
    assert run.failed and "not attached on the destination pageserver" in run["msg"]
    no_leak(run)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"target_lsns": {TIMELINE_ID: "0/XYZ"}}, f"target_lsns.{TIMELINE_ID}: invalid LSN '0/XYZ'"),
        ({"target_lsns": {"nope": "0/1"}}, "target_lsns: invalid timeline id 'nope'"),
        ({"target_lsns": {TIMELINE_ID: "0/1"}, "timelines": ["bad"]}, "timelines: invalid timeline id 'bad'"),
        ({"safekeeper_urls": ["sk1:7676"]}, "safekeeper_urls[0]: invalid API URL 'sk1:7676'"),
        ({"source_api_url": "ftp://x"}, "source_api_url: invalid API URL 'ftp://x'"),
        ({}, "one of the following is required"),
        ({"target_lsns": {}, "source_api_url": "http://127.0.0.1:1"}, "mutually exclusive"),
    ],
)
def test_invalid_input_fails_before_any_request(fake_api, run_module, extra, message):
    run = run_module(timeline_catchup, args(fake_api, **extra))
    assert run.failed and message in run["msg"]
    assert fake_api.requests == []


def test_history_thinning_keeps_first_and_last():
    history = []
    for i in range(1000):
        timeline_catchup.add_sample(history, {"i": i})
    assert len(history) <= timeline_catchup.MAX_HISTORY
    assert history[0]["i"] == 0 and history[-1]["i"] == 999
