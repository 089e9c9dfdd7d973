from __future__ import annotations

import json

import pytest
from ansible.module_utils.common.parameters import PASS_VARS
from ansible_collections.neonops.storage.plugins.modules import compute_pageserver
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID, TIMELINE_ID
from ansible_collections.neonops.storage.tests.unit.plugins.modules.test_tenant_generation import (
    assert_doc_matches_argspec,
)

PS1 = "postgres://no_user@127.0.0.1:64001"
PS2 = "postgres://no_user@127.0.0.1:64002"
PS3 = "postgresql://no_user@127.0.0.1:64003"
STORAGE_TOKEN = "storage-jwt-SHOULD-NOT-LEAK-91ab"
ROLE_PASSWORD = "md5-role-password-SHOULD-NOT-LEAK"
CTL_CONFIG = {"jwks": {"keys": []}}


def make_spec(urls, shard_count=0, stripe_size=None, legacy=True):
    shards = {
        f"{n:02x}{shard_count:02x}": {"pageservers": [{"id": n + 1, "libpq_url": url, "grpc_url": None}]}
        for n, url in enumerate(urls)
    }
    spec = {
        "format_version": 1.0,
        "suspend_timeout_seconds": -1,
        "cluster": {
            "roles": [{"name": "app", "encrypted_password": ROLE_PASSWORD}],
            "databases": [],
            "settings": [],
        },
        "tenant_id": TENANT_ID,
        "timeline_id": TIMELINE_ID,
        "storage_auth_token": STORAGE_TOKEN,
        "pageserver_connection_info": {
            "shard_count": shard_count,
            "stripe_size": stripe_size,
            "shards": shards,
            "prefer_protocol": "libpq",
        },
    }
    if legacy:
        spec["pageserver_connstring"] = ",".join(urls)
        spec["shard_stripe_size"] = stripe_size
    return spec


def conf_text(connstring, stripe_size=None):
    lines = ["listen_addresses = '127.0.0.1'", f"neon.pageserver_connstring = '{connstring}'"]
    if stripe_size is not None:
        lines.append(f"neon.stripe_size = {stripe_size}")
    return "\n".join(lines) + "\n"


class Compute:
    """A compute host: a fake compute_ctl whose /configure rewrites postgresql.conf like the real one."""

    def __init__(self, api, tmp_path, urls, shard_count=0, stripe_size=None):
        self.api = api
        self.pgdata = tmp_path / "pgdata"
        self.pgdata.mkdir()
        self.conf = self.pgdata / "postgresql.conf"
        self.conf.write_text(conf_text(",".join(urls), stripe_size))
        self.spec_path = tmp_path / "spec.json"
        self.spec_path.write_text(json.dumps(make_spec(urls, shard_count, stripe_size), indent=2))
        self.status = "running"
        self.apply_conf = True
        api.add("GET", "/status", handler=lambda r: (200, self.status_body()))
        api.add("POST", "/configure", handler=self.configure)

    def status_body(self):
        return {
            "start_time": "2026-01-01T00:00:00Z",
            "tenant": TENANT_ID,
            "timeline": TIMELINE_ID,
            "status": self.status,
            "last_active": None,
            "error": None,
        }

    def configure(self, request):
        info = request.body["spec"]["pageserver_connection_info"]
        urls = [info["shards"][k]["pageservers"][0]["libpq_url"] for k in sorted(info["shards"])]
        if self.apply_conf:
            self.conf.write_text(conf_text(",".join(urls), info["stripe_size"]))
        return 200, self.status_body()

    @property
    def configure_calls(self):
        return self.api.calls("POST", "/configure")

    def spec_on_disk(self):
        return json.loads(self.spec_path.read_text())


@pytest.fixture
def compute(fake_api, tmp_path):
    return Compute(fake_api, tmp_path, [PS1])


def args(compute, urls=(PS2,), **extra):
    base = {
        "api_url": compute.api.url,
        "api_token": SECRET_TOKEN,
        "spec_path": str(compute.spec_path),
        "pgdata": str(compute.pgdata),
        "compute_ctl_config": CTL_CONFIG,
        "pageservers": [{"node_id": 10 + n, "libpq_url": url} for n, url in enumerate(urls)],
        "wait_timeout": 5,
        "poll_interval": 0,
    }
    base.update(extra)
    return base


def assert_no_secrets(run):
    for secret in (SECRET_TOKEN, STORAGE_TOKEN, ROLE_PASSWORD):
        assert secret not in run.raw


def test_repoints_unsharded_compute(compute, run_module):
    run = run_module(compute_pageserver, args(compute), diff=True)
    assert not run.failed, run.result
    assert run.changed and run["configured"] and run["spec_written"]
    assert (run["previous_connstring"], run["connstring"], run["status"]) == (PS1, PS2, "running")
    assert run["diff"] == {
        "before": {"pageserver_connstring": PS1, "stripe_size": None},
        "after": {"pageserver_connstring": PS2, "stripe_size": None},
    }
    [call] = compute.configure_calls
    assert call.headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert call.body["compute_ctl_config"] == CTL_CONFIG
    sent = call.body["spec"]
    assert sent["pageserver_connection_info"] == {
        "shard_count": 0,
        "stripe_size": None,
        "shards": {"0000": {"pageservers": [{"id": 10, "libpq_url": PS2, "grpc_url": None}]}},
        "prefer_protocol": "libpq",
    }
    assert sent["pageserver_connstring"] == PS2  # legacy form kept consistent
    assert sent["shard_stripe_size"] is None
    assert sent["skip_pg_catalog_updates"] is True
    assert sent["storage_auth_token"] == STORAGE_TOKEN  # the rest of the spec is sent unchanged
    on_disk = compute.spec_on_disk()
    assert on_disk["pageserver_connection_info"] == sent["pageserver_connection_info"]
    assert on_disk["pageserver_connstring"] == PS2
    assert "skip_pg_catalog_updates" not in on_disk  # a request-only flag
    assert_no_secrets(run)


def test_second_run_is_unchanged_and_sends_nothing(compute, run_module):
    run_module(compute_pageserver, args(compute))
    compute.api.requests.clear()
    before = compute.spec_path.read_text()
    run = run_module(compute_pageserver, args(compute))
    assert not run.failed
    assert not run.changed
    assert not run["configured"] and not run["spec_written"]
    assert run["previous_connstring"] == run["connstring"] == PS2
    assert compute.api.mutating_requests == []
    assert compute.spec_path.read_text() == before


def test_check_mode_sends_nothing_and_writes_nothing(compute, run_module):
    before = compute.spec_path.read_text()
    run = run_module(compute_pageserver, args(compute), check_mode=True, diff=True)
    assert not run.failed
    assert run.changed
    assert run["connstring"] == PS2 and run["previous_connstring"] == PS1
    assert run["diff"]["after"]["pageserver_connstring"] == PS2
    assert compute.api.mutating_requests == []
    assert compute.spec_path.read_text() == before
    assert PS1 in compute.conf.read_text()


def test_busy_compute_is_retried(compute, run_module):
    compute.api.routes = [r for r in compute.api.routes if r.path != "/configure"]
    answers = iter([(412, {"error": "invalid compute status: configuration-pending"})] * 2)

    def configure(request):
        return next(answers, None) or compute.configure(request)

    compute.api.add("POST", "/configure", handler=configure)
    run = run_module(compute_pageserver, args(compute))
    assert not run.failed, run.result
    assert run["busy_retries"] == 2
    assert len(compute.configure_calls) == 3
    assert PS2 in compute.conf.read_text()


def test_busy_until_wait_timeout_fails_naming_the_attempt(compute, run_module):
    compute.api.routes = [r for r in compute.api.routes if r.path != "/configure"]
    compute.api.add("POST", "/configure", {"error": "invalid compute status: configuration"}, 412)
    run = run_module(compute_pageserver, args(compute, wait_timeout=0.2, poll_interval=0.05))
    assert run.failed
    assert "Configuring the compute with the new pageserver connection (busy for 0.2s" in run["msg"]
    assert "HTTP 412: invalid compute status: configuration" in run["msg"]
    assert compute.spec_on_disk()["pageserver_connstring"] == PS1  # not written when not applied
    assert_no_secrets(run)


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, "Failed to deserialize the JSON body"), (401, "invalid token"), (500, "compute configuration failed")],
)
def test_configure_errors_fail_with_compute_ctl_message(compute, run_module, status, error):
    compute.api.routes = [r for r in compute.api.routes if r.path != "/configure"]
    compute.api.add("POST", "/configure", {"error": error}, status)
    run = run_module(compute_pageserver, args(compute))
    assert run.failed
    assert run["msg"].startswith("Configuring the compute with the new pageserver connection failed")
    assert f"HTTP {status}: {error}" in run["msg"]
    assert run["error"] == error
    assert len(compute.configure_calls) == 1  # POST is never retried
    assert_no_secrets(run)


def test_waits_until_running_after_configure(compute, run_module):
    statuses = iter(["running", "configuration", "configuration"])  # first read is before /configure

    compute.api.routes = [r for r in compute.api.routes if r.path != "/status"]

    def status(request):
        compute.status = next(statuses, "running")
        return 200, compute.status_body()

    compute.api.add("GET", "/status", handler=status)
    run = run_module(compute_pageserver, args(compute))
    assert not run.failed, run.result
    assert run["status"] == "running"
    assert len(compute.api.calls("GET", "/status")) == 4


def test_compute_failing_after_configure_is_reported(compute, run_module):
    statuses = iter(["running", "failed"])
    compute.api.routes = [r for r in compute.api.routes if r.path != "/status"]

    def status(request):
        body = compute.status_body()
        body["status"] = next(statuses, "failed")
        body["error"] = "postgres exited" if body["status"] == "failed" else None
        return 200, body

    compute.api.add("GET", "/status", handler=status)
    run = run_module(compute_pageserver, args(compute))
    assert run.failed
    assert "status is failed: postgres exited" in run["msg"]


def test_failed_compute_is_not_configured(compute, run_module):
    compute.status = "failed"
    run = run_module(compute_pageserver, args(compute))
    assert run.failed
    assert "status is failed" in run["msg"]
    assert compute.configure_calls == []


def test_postgresql_conf_is_verified(compute, run_module):
    compute.apply_conf = False  # compute_ctl says running but never rewrote the file
    run = run_module(compute_pageserver, args(compute, wait_timeout=0.2, poll_interval=0.05))
    assert run.failed
    assert "postgresql.conf after /configure failed" in run["msg"]
    assert PS1 in run["msg"] and PS2 in run["msg"]


def test_sharded_tenant(fake_api, tmp_path, run_module):
    compute = Compute(fake_api, tmp_path, [PS1, PS2], shard_count=2, stripe_size=2048)
    run = run_module(compute_pageserver, args(compute, urls=(PS3, PS1)))
    assert not run.failed, run.result
    assert run["connstring"] == f"{PS3},{PS1}"
    assert (run["shard_count"], run["stripe_size"]) == (2, 2048)  # both taken from the spec
    info = compute.configure_calls[0].body["spec"]["pageserver_connection_info"]
    assert info["shards"]["0002"]["pageservers"][0]["libpq_url"] == PS3
    assert info["shards"]["0102"]["pageservers"][0]["libpq_url"] == PS1
    assert info["stripe_size"] == 2048
    assert compute.configure_calls[0].body["spec"]["shard_stripe_size"] == 2048
    assert "neon.stripe_size = 2048" in compute.conf.read_text()
    again = run_module(compute_pageserver, args(compute, urls=(PS3, PS1)))
    assert not again.changed


def test_stripe_size_change_alone_reconfigures(fake_api, tmp_path, run_module):
    compute = Compute(fake_api, tmp_path, [PS1, PS2], shard_count=2, stripe_size=2048)
    run = run_module(compute_pageserver, args(compute, urls=(PS1, PS2), shard_stripe_size=32768), diff=True)
    assert run.changed and run["configured"]
    assert run["diff"]["before"]["stripe_size"] == 2048 and run["diff"]["after"]["stripe_size"] == 32768


def test_stripe_size_alias_still_works(fake_api, tmp_path, run_module):
    """stripe_size is the former name of shard_stripe_size (the location config's name), kept as an alias."""
    compute = Compute(fake_api, tmp_path, [PS1, PS2], shard_count=2, stripe_size=2048)
    run = run_module(compute_pageserver, args(compute, urls=(PS1, PS2), stripe_size=32768))
    assert run.changed and run["configured"] and run["stripe_size"] == 32768
    assert compute.configure_calls[0].body["spec"]["pageserver_connection_info"]["stripe_size"] == 32768


def test_only_the_stale_spec_file_is_rewritten(compute, run_module):
    compute.conf.write_text(conf_text(PS2))  # the compute already reads from PS2
    run = run_module(compute_pageserver, args(compute))
    assert run.changed
    assert not run["configured"] and run["spec_written"]
    assert compute.api.mutating_requests == []
    assert compute.spec_on_disk()["pageserver_connstring"] == PS2


def test_inline_spec_writes_no_file_and_its_credentials_stay_out_of_the_invocation(compute, run_module):
    spec = make_spec([PS1])
    params = args(compute, spec=spec)
    if "inject_invocation" in PASS_VARS:  # ansible-core >= 2.20 adds the invocation on request (-vvv); older always
        params["_ansible_inject_invocation"] = True
    del params["spec_path"]
    run = run_module(compute_pageserver, params)
    assert not run.failed, run.result
    assert run["configured"] and not run["spec_written"]
    assert compute.spec_on_disk()["pageserver_connstring"] == PS1
    assert run["invocation"]["module_args"]["spec"]["tenant_id"] == TENANT_ID  # the rest stays readable
    assert_no_secrets(run)


def test_compute_ctl_config_from_a_wrapped_spec_file(compute, run_module):
    wrapped = {"spec": make_spec([PS1]), "compute_ctl_config": {"jwks": {"keys": [{"kty": "OKP"}]}}}
    compute.spec_path.write_text(json.dumps(wrapped))
    params = args(compute)
    del params["compute_ctl_config"]
    run = run_module(compute_pageserver, params)
    assert not run.failed, run.result
    assert compute.configure_calls[0].body["compute_ctl_config"] == wrapped["compute_ctl_config"]
    on_disk = compute.spec_on_disk()
    assert on_disk["compute_ctl_config"] == wrapped["compute_ctl_config"]  # same shape written back
    assert on_disk["spec"]["pageserver_connstring"] == PS2


def test_missing_compute_ctl_config_fails_before_sending(compute, run_module):
    params = args(compute)
    del params["compute_ctl_config"]
    run = run_module(compute_pageserver, params)
    assert run.failed
    assert run["msg"].startswith("compute_ctl_config: required")
    assert compute.api.mutating_requests == []


def test_legacy_only_spec_gains_connection_info_and_keeps_legacy(compute, run_module):
    spec = make_spec([PS1])
    del spec["pageserver_connection_info"]
    del spec["shard_stripe_size"]
    compute.spec_path.write_text(json.dumps(spec))
    run = run_module(compute_pageserver, args(compute))
    assert not run.failed, run.result
    sent = compute.configure_calls[0].body["spec"]
    assert sent["pageserver_connstring"] == PS2
    assert "shard_stripe_size" not in sent  # not added when the spec did not have it
    assert sent["pageserver_connection_info"]["shards"]["0000"]["pageservers"][0]["libpq_url"] == PS2


def test_cluster_settings_guc_is_kept_consistent(compute, run_module):
    spec = make_spec([PS1], legacy=False)
    spec["cluster"]["settings"] = [{"name": "neon.pageserver_connstring", "value": PS1, "vartype": "string"}]
    compute.spec_path.write_text(json.dumps(spec))
    run_module(compute_pageserver, args(compute))
    sent = compute.configure_calls[0].body["spec"]
    assert sent["cluster"]["settings"][0]["value"] == PS2
    assert "pageserver_connstring" not in sent


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"pageservers": [{"libpq_url": "http://127.0.0.1:64000"}]}, "pageservers[0].libpq_url"),
        ({"pageservers": [{"libpq_url": "postgres://127.0.0.1:64000"}]}, "pageservers[0].libpq_url"),
        ({"pageservers": [{"libpq_url": "postgres://u@host:99999"}]}, "pageservers[0].libpq_url"),
        ({"pageservers": [{"libpq_url": "postgres://u@host"}]}, "pageservers[0].libpq_url"),
        ({"shard_count": 256}, "shard_count"),
        ({"shard_count": -1}, "shard_count"),
        ({"shard_count": 2}, "pageservers"),
        ({"shard_stripe_size": 0}, "shard_stripe_size: must be an integer from 1 to"),
        ({"shard_stripe_size": 2**32}, "shard_stripe_size"),
        ({"stripe_size": 0}, "stripe_size (alias of shard_stripe_size): must be an integer from 1 to"),
        ({"prefer_protocol": "grpc"}, "pageservers[0].grpc_url"),
        ({"pageservers": [{"libpq_url": PS2, "grpc_url": "http://h:1"}]}, "pageservers[0].grpc_url"),
        ({"wait_timeout": -1}, "wait_timeout"),
    ],
)
def test_bad_input_fails_before_any_request(compute, run_module, overrides, expected):
    run = run_module(compute_pageserver, args(compute, **overrides))
    assert run.failed
    assert run["msg"].startswith(expected), run["msg"]
    assert compute.api.mutating_requests == []


def test_sharded_without_a_known_stripe_size_fails(compute, run_module):
    run = run_module(compute_pageserver, args(compute, urls=(PS1, PS2)))
    assert run.failed
    assert run["msg"].startswith("shard_stripe_size: required for a sharded tenant (shard_count 2)")


def test_unsharded_stripe_size_is_ignored(compute, run_module):
    run = run_module(compute_pageserver, args(compute, shard_stripe_size=2048))
    assert not run.failed, run.result
    assert compute.configure_calls[0].body["spec"]["pageserver_connection_info"]["stripe_size"] is None


def test_spec_and_spec_path_are_exclusive(compute, run_module):
    run = run_module(compute_pageserver, args(compute, spec=make_spec([PS1])))
    assert run.failed
    assert "mutually exclusive" in run["msg"]


def test_unreadable_files_fail_naming_the_option(compute, tmp_path, run_module):
    run = run_module(compute_pageserver, args(compute, pgdata=str(tmp_path / "nope")))
    assert run.failed and run["msg"].startswith("pgdata: cannot read")
    compute.spec_path.write_text("{not json")
    run = run_module(compute_pageserver, args(compute))
    assert run.failed and run["msg"].startswith("spec_path:") and "not valid JSON" in run["msg"]


def test_documentation_renders_and_matches_argspec():
    assert_doc_matches_argspec(compute_pageserver)
