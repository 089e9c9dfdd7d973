"""Safekeeper and compute_ctl HTTP ports in-process: routes, error shapes, auth scopes (upstream
`safekeeper/src/auth.rs`, `compute_tools/src/http/middleware/authorize.rs`)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from fleet_helpers import free_port, serve

from neonsim import _auth
from neonsim._server import NodeContext
from neonsim.compute import ComputeNode
from neonsim.safekeeper import SafekeeperNode

TENANT = "e" * 32
OTHER_TENANT = "f" * 32
TIMELINE = "1" * 32


@pytest.fixture
def fleet(tmp_path):
    private, public = _auth.generate_keypair(tmp_path / "keys")
    return {
        "dir": str(tmp_path),
        "auth": {"enabled": True, "public_key_pem_path": str(public), "private_key_pem_path": str(private)},
        "safekeepers": [
            {"name": "sk1", "node_id": 7, "http_port": free_port(), "pg_port": free_port(), "fsync": False}
        ],
        "computes": [
            {
                "name": "compute1",
                "compute_id": "compute-1",
                "http_port": free_port(),
                "tenant_id": TENANT,
                "timeline_id": TIMELINE,
                "workload": {"enabled": False},
            }
        ],
    }


def bearer(fleet, scope, tenant_id=None, **claims):
    token = _auth.mint_token(fleet["auth"]["private_key_pem_path"], scope, tenant_id, **claims)
    return {"Authorization": f"Bearer {token}"}


def create_body(tenant=TENANT):
    return {
        "tenant_id": tenant,
        "timeline_id": TIMELINE,
        "mconf": {"generation": 1, "members": []},
        "pg_version": 170000,
        "start_lsn": "0/2000000",
    }


def test_safekeeper_routes_and_scopes(tmp_path, fleet):
    url = f"http://127.0.0.1:{fleet['safekeepers'][0]['http_port']}"
    admin = bearer(fleet, "safekeeperdata")
    own = bearer(fleet, "tenant", TENANT)
    foreign = bearer(fleet, "tenant", OTHER_TENANT)
    pageserver = bearer(fleet, "pageserverapi")

    async def scenario():
        node = SafekeeperNode(NodeContext(tmp_path, "sk1", fleet=fleet))
        results = {}
        async with serve(node), aiohttp.ClientSession() as s:

            async def call(name, method, path, headers=None, **kw):
                async with s.request(method, url + path, headers=headers or {}, **kw) as r:
                    results[name] = (r.status, await r.json(content_type=None))

            await call("status_no_auth", "GET", "/v1/status")
            await call("missing", "GET", "/v1/tenant/timeline")
            await call("create_foreign", "POST", "/v1/tenant/timeline", foreign, json=create_body())
            await call("create_own", "POST", "/v1/tenant/timeline", own, json=create_body())
            await call("create_again", "POST", "/v1/tenant/timeline", admin, json=create_body())
            await call("bad_create", "POST", "/v1/tenant/timeline", admin, json={"tenant_id": TENANT})
            await call("list_tenant_scope", "GET", "/v1/tenant/timeline", own)
            await call("list", "GET", "/v1/tenant/timeline", admin)
            await call("get_own", "GET", f"/v1/tenant/{TENANT}/timeline/{TIMELINE}", own)
            await call("get_foreign", "GET", f"/v1/tenant/{TENANT}/timeline/{TIMELINE}", foreign)
            await call("get_ps_scope", "GET", f"/v1/tenant/{TENANT}/timeline/{TIMELINE}", pageserver)
            await call("get_missing", "GET", f"/v1/tenant/{TENANT}/timeline/{'2' * 32}", admin)
            await call("utilization", "GET", "/v1/utilization", admin)
            await call("delete_tl", "DELETE", f"/v1/tenant/{TENANT}/timeline/{TIMELINE}", own)
            await call("delete_tenant", "DELETE", f"/v1/tenant/{TENANT}", admin)
        return results

    r = asyncio.run(scenario())
    assert r["status_no_auth"] == (200, {"id": 7})
    assert r["missing"] == (401, {"msg": "Unauthorized: missing authorization header"})
    assert r["create_foreign"][0] == 403
    assert r["create_own"] == (200, None)
    assert r["create_again"] == (200, None)  # idempotent
    assert r["bad_create"][0] == 400 and "missing field" in r["bad_create"][1]["msg"]
    assert r["list_tenant_scope"][0] == 403  # listing spans tenants: safekeeperdata only
    assert r["list"] == (200, [{"tenant_id": TENANT, "timeline_id": TIMELINE}])
    assert r["get_own"][0] == 200 and r["get_own"][1]["timeline_start_lsn"] == "0/2000000"
    assert r["get_foreign"] == (403, {"msg": "Forbidden: JWT authentication error"})
    assert r["get_ps_scope"][0] == 403
    assert r["get_missing"][0] == 404 and r["get_missing"][1]["msg"].startswith("NotFound")
    assert r["utilization"] == (200, {"timeline_count": 1})
    assert r["delete_tl"] == (200, {"dir_existed": True, "was_active": False})
    assert r["delete_tenant"] == (200, {})


def test_wal_append_conflict_reports_expected_lsn(tmp_path, fleet):
    pg = f"http://127.0.0.1:{fleet['safekeepers'][0]['pg_port']}"

    async def scenario():
        node = SafekeeperNode(NodeContext(tmp_path, "sk1", fleet=fleet))
        node.sk.create_timeline(create_body())
        async with serve(node), aiohttp.ClientSession() as s:
            rec = {"lsn": "0/3000000", "end_lsn": "0/3000042", "key": "k", "value": "v"}
            body = {"tenant_id": TENANT, "timeline_id": TIMELINE, "records": [rec]}
            async with s.post(pg + "/sim/wal/append", json=body) as r:
                conflict = (r.status, await r.json())
            params = {"tenant_id": TENANT, "timeline_id": "3" * 32, "start_lsn": "0/0"}
            async with s.get(pg + "/sim/wal/stream", params=params) as r:
                unknown = r.status
        return conflict, unknown

    conflict, unknown = asyncio.run(scenario())
    assert conflict[0] == 409 and conflict[1]["expected_lsn"] == "0/2000000"
    assert unknown == 404


def test_compute_ctl_auth_rules(tmp_path, fleet):
    url = f"http://127.0.0.1:{fleet['computes'][0]['http_port']}"

    async def scenario():
        node = ComputeNode(NodeContext(tmp_path, "compute1", fleet=fleet))
        out = {}
        async with serve(node), aiohttp.ClientSession() as s:
            for name, headers in {
                "none": {},
                "own_id": bearer(fleet, None, compute_id="compute-1"),
                "other_id": bearer(fleet, None, compute_id="compute-2"),
                "admin_aud": bearer(fleet, "compute_ctl:admin", aud=["compute"]),
                "admin_no_aud": bearer(fleet, "compute_ctl:admin"),
            }.items():
                async with s.get(url + "/status", headers=headers) as r:
                    out[name] = (r.status, await r.json())
        return out

    out = asyncio.run(scenario())
    assert out["none"] == (400, {"error": "invalid authorization token"})
    assert out["own_id"][0] == 200 and out["own_id"][1]["status"] == "empty"
    assert out["other_id"][0] == 403
    assert out["admin_aud"][0] == 200
    assert out["admin_no_aud"][0] == 401
