"""JWT auth: EdDSA only, exact Bearer prefix, per-service scope rules, allow-lists.

Upstream: `libs/utils/src/auth.rs`, `libs/http-utils/src/endpoint.rs`, `pageserver/src/auth.rs`,
`safekeeper/src/auth.rs`, `compute_tools/src/http/middleware/authorize.rs`, `storage_controller/src/http.rs`.
"""

from __future__ import annotations

import asyncio
import json

import jwt
import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from neonsim import _auth
from neonsim._server import NodeContext, json_response

TENANT = "ab" * 16
OTHER_TENANT = "cd" * 16


def make_ctx(tmp_path, kind_entry: dict, group: str, auth: bool = True) -> NodeContext:
    private, public = _auth.generate_keypair(tmp_path)
    fleet = {
        "dir": str(tmp_path),
        "auth": {"enabled": auth, "public_key_pem_path": str(public), "private_key_pem_path": str(private)},
        "storage_controller": {"name": "storcon", "http_port": 1},
        "pageservers": [],
        "safekeepers": [],
        "computes": [],
    }
    if group == "storage_controller":
        fleet[group] = kind_entry
    else:
        fleet[group] = [kind_entry]
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    return NodeContext(tmp_path, kind_entry["name"])


async def ok(request):
    return json_response({"ok": True, "claims": request.get("claims")})


def run(app: web.Application, calls):
    """Run `calls(client)` against app in a fresh loop; returns its result."""

    async def main():
        async with TestClient(TestServer(app)) as client:
            return await calls(client)

    return asyncio.run(main())


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_pageserver_rules(tmp_path):
    ctx = make_ctx(tmp_path, {"name": "ps1", "node_id": 1, "http_port": 1, "pg_port": 2}, "pageservers")
    key = _auth.load_private_key(ctx.fleet["auth"]["private_key_pem_path"])
    app = ctx.make_http_app(scope_rule=_auth.pageserver_scope_rule, allow=_auth.PAGESERVER_ALLOW)
    app.router.add_get("/v1/status", ok)
    app.router.add_get("/v1/tenant", ok)
    app.router.add_put("/v1/tenant/{tenant_shard_id}/location_config", ok)
    hs256 = jwt.encode({"scope": "pageserverapi"}, "s" * 32, algorithm="HS256")
    other_key = _auth.load_private_key(_auth.generate_keypair(tmp_path / "other")[0])

    async def calls(client):
        out = {}
        out["status_no_token"] = (await client.get("/v1/status")).status
        out["no_token"] = await (await client.get("/v1/tenant")).json(), (await client.get("/v1/tenant")).status
        resp = await client.get("/v1/tenant", headers={"Authorization": "bearer " + _auth.mint_token(key, "admin")})
        out["lowercase_bearer"] = resp.status, await resp.json()
        out["wrong_scope"] = (await client.get("/v1/tenant", headers=bearer(_auth.mint_token(key, "admin")))).status
        out["right_scope"] = (
            await client.get("/v1/tenant", headers=bearer(_auth.mint_token(key, "pageserverapi")))
        ).status
        out["hs256"] = (await client.get("/v1/tenant", headers=bearer(hs256))).status
        out["foreign_key"] = (
            await client.get("/v1/tenant", headers=bearer(_auth.mint_token(other_key, "pageserverapi")))
        ).status
        tenant_token = _auth.mint_token(key, "tenant", TENANT)
        out["tenant_no_tenant_route"] = (await client.get("/v1/tenant", headers=bearer(tenant_token))).status
        out["tenant_own"] = (
            await client.put(f"/v1/tenant/{TENANT}-0102/location_config", headers=bearer(tenant_token))
        ).status
        out["tenant_other"] = (
            await client.put(f"/v1/tenant/{OTHER_TENANT}/location_config", headers=bearer(tenant_token))
        ).status
        out["sim_no_token"] = (await client.get("/sim/health")).status
        out["unknown_route"] = (await client.get("/v1/nope")).status
        return out

    out = run(app, calls)
    assert out["status_no_token"] == 200
    assert out["no_token"] == ({"msg": "Unauthorized: missing authorization header"}, 401)
    assert out["lowercase_bearer"] == (401, {"msg": "Unauthorized: malformed authorization header"})
    assert out["wrong_scope"] == 403
    assert out["right_scope"] == 200
    assert out["hs256"] == 403  # EdDSA only
    assert out["foreign_key"] == 403
    assert out["tenant_no_tenant_route"] == 403
    assert out["tenant_own"] == 200
    assert out["tenant_other"] == 403
    assert out["sim_no_token"] == 503  # not started yet, but no 401
    assert out["unknown_route"] == 404


def test_safekeeper_rules(tmp_path):
    ctx = make_ctx(tmp_path, {"name": "sk1", "node_id": 101, "http_port": 1, "pg_port": 2}, "safekeepers")
    key = _auth.load_private_key(ctx.fleet["auth"]["private_key_pem_path"])
    app = ctx.make_http_app(scope_rule=_auth.safekeeper_scope_rule, allow=_auth.SAFEKEEPER_ALLOW)
    app.router.add_get("/v1/tenant/{tenant_id}/timeline/{timeline_id}", ok)
    path = f"/v1/tenant/{TENANT}/timeline/{'1' * 32}"

    cases = {
        "safekeeperdata": ("safekeeperdata", None),
        "admin": ("admin", None),
        "pageserverapi": ("pageserverapi", None),
        "own_tenant": ("tenant", TENANT),
        "other_tenant": ("tenant", OTHER_TENANT),
    }

    async def calls(client):
        return {
            name: (await client.get(path, headers=bearer(_auth.mint_token(key, scope, tenant)))).status
            for name, (scope, tenant) in cases.items()
        }

    out = run(app, calls)
    assert out == {"safekeeperdata": 200, "admin": 403, "pageserverapi": 403, "own_tenant": 200, "other_tenant": 403}


def test_compute_rules(tmp_path):
    entry = {"name": "compute1", "compute_id": "compute-1", "http_port": 1}
    ctx = make_ctx(tmp_path, entry, "computes")
    key = _auth.load_private_key(ctx.fleet["auth"]["private_key_pem_path"])
    app = ctx.make_http_app(error_key="error", auth_mode="compute", allow=_auth.COMPUTE_ALLOW)
    app.router.add_get("/status", ok)

    async def calls(client):
        async def get(headers):
            resp = await client.get("/status", headers=headers)
            return resp.status, await resp.json()

        return {
            "missing": await get({}),
            "own_id": await get(bearer(_auth.mint_token(key, "", compute_id="compute-1"))),
            "other_id": await get(bearer(_auth.mint_token(key, "", compute_id="compute-2"))),
            "admin": await get(bearer(_auth.mint_token(key, "compute_ctl:admin", aud=["compute"]))),
            "admin_no_aud": await get(bearer(_auth.mint_token(key, "compute_ctl:admin"))),
            "hs256": await get(bearer(jwt.encode({"compute_id": "compute-1"}, "k" * 32, algorithm="HS256"))),
        }

    out = run(app, calls)
    assert out["missing"] == (400, {"error": "invalid authorization token"})
    assert out["own_id"][0] == 200 and out["admin"][0] == 200
    assert out["other_id"][0] == 403 and out["admin_no_aud"][0] == 401 and out["hs256"][0] == 401


def test_auth_off_needs_no_token(tmp_path):
    ctx = make_ctx(tmp_path, {"name": "ps1", "node_id": 1, "http_port": 1, "pg_port": 2}, "pageservers", auth=False)
    app = ctx.make_http_app(scope_rule=_auth.pageserver_scope_rule)
    app.router.add_get("/v1/tenant", ok)

    async def calls(client):
        return (await client.get("/v1/tenant")).status

    assert run(app, calls) == 200


def test_public_jwk_verifies_minted_tokens(tmp_path):
    private, public = _auth.generate_keypair(tmp_path)
    jwk = _auth.public_jwk(public)
    token = _auth.mint_token(private, "tenant", TENANT)
    key = jwt.PyJWK(jwk).key
    assert jwt.decode(token, key, algorithms=["EdDSA"])["tenant_id"] == TENANT


@pytest.mark.neonsim
def test_storcon_scopes_on_a_running_fleet(neonsim_fleet):
    sim = neonsim_fleet("storcon-only", auth=True)
    url = sim.storcon_url
    tokens = sim.tokens
    assert set(tokens) >= {"pageserver", "safekeeper", "storcon", "compute", "generations_api", "infra"}
    assert json.loads((sim.dir / "tokens.json").read_text()) == tokens

    def status(method, path, service=None, body=None):
        headers = sim.headers(service) if service else {}
        return requests.request(method, url + path, headers=headers, json=body, timeout=5).status_code

    assert status("GET", "/status") == 200  # allow-list
    assert status("GET", "/control/v1/node") == 401
    assert status("GET", "/control/v1/node", "infra") == 200
    assert status("GET", "/control/v1/node", "storcon") == 200  # admin passes everywhere
    assert status("GET", "/control/v1/node", "generations_api") == 403
    assert status("GET", "/control/v1/node", "pageserver") == 403
    inspect = {"tenant_shard_id": "a" * 32}
    assert status("POST", "/debug/v1/inspect", "infra", inspect) == 403
    assert status("POST", "/debug/v1/inspect", "storcon", inspect) == 200
    assert status("POST", "/upcall/v1/validate", "generations_api", {"tenants": []}) == 200
    assert status("POST", "/upcall/v1/validate", "infra", {"tenants": []}) == 403
    hs256 = jwt.encode({"scope": "admin"}, "s" * 32, algorithm="HS256")
    resp = requests.get(url + "/control/v1/node", headers=bearer(hs256), timeout=5)
    assert resp.status_code in (401, 403) and "msg" in resp.json()
