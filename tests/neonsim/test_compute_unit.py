"""compute_ctl simulator without a fleet: spec validation, /configure state machine, files it writes."""

from __future__ import annotations

import asyncio
import json

import pytest

from neonsim._server import ApiError
from neonsim.compute import ComputeCtl, SpecError, pageserver_conn, validate_request

TENANT = "a" * 32
TIMELINE = "b" * 32


def spec(**overrides) -> dict:
    base = {
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": []},
        "suspend_timeout_seconds": -1,
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "safekeeper_connstrings": ["127.0.0.1:5454"],
        "pageserver_connection_info": {
            "shard_count": 0,
            "stripe_size": None,
            "shards": {"0000": {"pageservers": [{"id": 1, "libpq_url": "postgres://no_user@127.0.0.1:64000"}]}},
        },
    }
    base.update(overrides)
    return base


def sharded_info(urls, stripe=8) -> dict:
    n = len(urls)
    return {
        "shard_count": n,
        "stripe_size": stripe,
        "shards": {f"{i:02x}{n:02x}": {"pageservers": [{"id": i + 1, "libpq_url": u}]} for i, u in enumerate(urls)},
    }


def request(s=None) -> dict:
    return {"spec": s if s is not None else spec(), "compute_ctl_config": {"jwks": {"keys": []}}}


def test_compute_ctl_config_is_required():
    with pytest.raises(SpecError, match="missing field `compute_ctl_config`"):
        validate_request({"spec": spec()})
    with pytest.raises(SpecError, match="missing field `spec`"):
        validate_request({"compute_ctl_config": {"jwks": {"keys": []}}})
    with pytest.raises(SpecError, match="missing field `suspend_timeout_seconds`"):
        s = spec()
        del s["suspend_timeout_seconds"]
        validate_request(request(s))


@pytest.mark.parametrize(
    ("info", "match"),
    [
        ({"shard_count": 0, "stripe_size": 8, "shards": {"0000": {"pageservers": [{"libpq_url": "h:1"}]}}}, "null"),
        ({"shard_count": 2, "stripe_size": None, "shards": {}}, "required"),
        ({"shard_count": 2, "stripe_size": 8, "shards": {"0002": {"pageservers": [{"libpq_url": "h:1"}]}}}, "keys"),
        ({"shard_count": 1, "stripe_size": 8, "shards": {"0x01": {"pageservers": [{"libpq_url": "h:1"}]}}}, "index"),
        ({"shard_count": 0, "stripe_size": None, "shards": {"0000": {"pageservers": []}}}, "no pageservers"),
    ],
)
def test_connection_info_validation(info, match):
    with pytest.raises(SpecError, match=match):
        validate_request(request(spec(pageserver_connection_info=info)))


def test_legacy_connstring_must_agree():
    urls = ["postgres://no_user@127.0.0.1:1", "postgres://no_user@127.0.0.1:2"]
    ok = spec(pageserver_connection_info=sharded_info(urls), pageserver_connstring=",".join(urls), shard_stripe_size=8)
    conn, connstring, stripe = pageserver_conn(ok)
    assert conn.urls == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert (connstring, stripe, conn.shard_count) == (",".join(urls), 8, 2)
    with pytest.raises(SpecError, match="does not match"):
        pageserver_conn(spec(pageserver_connection_info=sharded_info(urls), pageserver_connstring=urls[0]))
    # the legacy form alone is accepted
    legacy = spec(pageserver_connection_info=None, pageserver_connstring=urls[1], shard_stripe_size=2048)
    conn, connstring, stripe = pageserver_conn(legacy)
    assert (conn.shard_count, conn.urls, stripe) == (0, ("http://127.0.0.1:2",), 2048)


def run(coro):
    return asyncio.run(coro)


def test_configure_writes_postgresql_conf_and_spec(tmp_path):
    ctl = ComputeCtl("compute-1", tmp_path, pending_delay_s=0, apply_delay_s=0)
    assert ctl.status_json()["status"] == "empty"
    urls = ["postgres://no_user@127.0.0.1:7001", "postgres://no_user@127.0.0.1:7002"]
    result = run(ctl.configure(request(spec(pageserver_connection_info=sharded_info(urls, stripe=16)))))
    assert result["status"] == "running"
    assert result["tenant"] == TENANT and result["timeline"] == TIMELINE
    conf = (tmp_path / "pgdata" / "postgresql.conf").read_text()
    assert f"neon.pageserver_connstring = '{urls[0]},{urls[1]}'" in conf.splitlines()
    assert "neon.stripe_size = 16" in conf.splitlines()
    applied = json.loads((tmp_path / "spec.json").read_text())
    assert applied["pageserver_connection_info"]["shard_count"] == 2

    # a pageserver-only change while running rewrites the file and switches reads
    run(ctl.configure(request(spec())))
    assert (
        "neon.pageserver_connstring = 'postgres://no_user@127.0.0.1:64000'"
        in (tmp_path / "pgdata" / "postgresql.conf").read_text().splitlines()
    )
    assert ctl.conn.urls == ("http://127.0.0.1:64000",)


def test_configure_rejects_second_request_while_configuring(tmp_path):
    ctl = ComputeCtl("compute-1", tmp_path, pending_delay_s=0.05, apply_delay_s=0.05)

    async def scenario():
        first = asyncio.ensure_future(ctl.configure(request()))
        await asyncio.sleep(0)
        assert ctl.status == "configuration_pending"
        with pytest.raises(ApiError) as info:
            await ctl.configure(request())
        return await first, info.value

    result, error = run(scenario())
    assert result["status"] == "running"
    assert (error.status, error.msg) == (412, "invalid compute status: configuration-pending")


def test_invalid_spec_is_400_and_leaves_state(tmp_path):
    ctl = ComputeCtl("compute-1", tmp_path, pending_delay_s=0, apply_delay_s=0)
    run(ctl.configure(request()))
    with pytest.raises(ApiError) as info:
        run(ctl.configure({"spec": spec()}))
    assert info.value.status == 400
    assert ctl.status == "running"
    assert ctl.conn.urls == ("http://127.0.0.1:64000",)


def test_failed_configuration_is_500_then_412(tmp_path):
    ctl = ComputeCtl("compute-1", tmp_path, pending_delay_s=0, apply_delay_s=0)
    ctl.apply_failure = "disk full"
    with pytest.raises(ApiError) as info:
        run(ctl.configure(request()))
    assert info.value.status == 500
    assert info.value.msg.startswith("compute configuration failed: ")
    assert ctl.status_json()["status"] == "failed"
    assert "disk full" in ctl.status_json()["error"]
    with pytest.raises(ApiError) as info:
        run(ctl.configure(request()))
    assert (info.value.status, info.value.msg) == (412, "invalid compute status: failed")


def test_restarted_compute_resumes_applied_spec(tmp_path):
    ctl = ComputeCtl("compute-1", tmp_path, pending_delay_s=0, apply_delay_s=0)
    run(ctl.configure(request()))
    again = ComputeCtl("compute-1", tmp_path)
    assert again.resume()
    assert again.status == "running"
    assert again.conn.urls == ("http://127.0.0.1:64000",)
    assert not ComputeCtl("compute-2", tmp_path / "other").resume()


def test_reads_see_old_or_new_pageserver_during_reconfigure_never_none(tmp_path):
    ctl = ComputeCtl("compute-1", tmp_path, pending_delay_s=0.01, apply_delay_s=0.01)
    run(ctl.configure(request()))
    old = ctl.conn
    new_url = "postgres://no_user@127.0.0.1:65000"
    moved = spec()
    moved["pageserver_connection_info"]["shards"]["0000"]["pageservers"][0]["libpq_url"] = new_url

    async def scenario():
        seen = []
        task = asyncio.ensure_future(ctl.configure(request(moved)))
        while not task.done():
            seen.append((ctl.status, ctl.conn))
            await asyncio.sleep(0.001)
        await task
        return seen

    seen = run(scenario())
    assert all(conn in (old, ctl.conn) and conn is not None for _, conn in seen)
    assert {status for status, _ in seen} >= {"configuration_pending", "configuration"}
    assert ctl.conn.urls == ("http://127.0.0.1:65000",)
