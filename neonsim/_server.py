"""Base HTTP server shared by every simulated node (asyncio + aiohttp).

How a node module plugs in
--------------------------
`python -m neonsim.node --dir DIR --name NAME` loads DIR/fleet.json, builds a `NodeContext` for NAME, imports
the module for the node's kind (`neonsim.storcon`, `neonsim.pageserver`, `neonsim.safekeeper`,
`neonsim.compute`) and awaits its `create_node(ctx) -> Node`. A module looks like this::

    from neonsim._server import Node, NodeContext, ApiError, json_response, read_json
    from neonsim._auth import pageserver_scope_rule, PAGESERVER_ALLOW

    class Pageserver(Node):
        def __init__(self, ctx: NodeContext):
            super().__init__(ctx)
            self.http = ctx.make_http_app(scope_rule=pageserver_scope_rule, allow=PAGESERVER_ALLOW)
            self.http.router.add_get("/v1/status", self.status)
            self.pg = ctx.make_pg_app()
            self.pg.router.add_get("/sim/page", self.page)

        def apps(self):                      # {port: aiohttp app}; node.py serves them on 127.0.0.1
                                             # (http_port with the node's certificate in a TLS fleet)
            return {self.ctx.node["http_port"]: self.http, self.ctx.node["pg_port"]: self.pg}

        async def start(self): ...           # called once the ports listen; /sim/health is 503 until it returns
        async def stop(self): ...            # SIGTERM; SIGKILL skips it (only DIR/<name>/ survives)

    async def create_node(ctx):
        return Pageserver(ctx)

What `make_http_app` gives every node's HTTP port, outermost first:
0. routing: every route also answers with one trailing slash (`/v1/status/`, `.../timeline/{id}/`) like upstream's
   routerify-based routers (pageserver, safekeeper, storage controller); `trailing_slash=False` keeps paths exact
   (compute_ctl's axum router). Sim-only `/sim/...` routes are always exact;
1. request log (DIR/requests/<name>.jsonl, contracts §5.1);
2. upstream error shapes: `raise ApiError(status, msg)` anywhere → `{"msg": msg}` (or `{"error": msg}` for
   `error_key="error"`, compute_ctl); unknown route → 404 `{"msg": "page not found"}`; uncaught exception → 500;
3. fault injection (`neonsim._faults`; never on `/sim/*`);
4. JWT auth when fleet auth is enabled: `scope_rule(request, claims) -> bool` decides per route (claims are
   also left in `request["claims"]`); paths in `allow` and `/sim/*` need no token. `auth_mode="compute"` applies
   compute_ctl's rules instead (upstream `compute_tools/src/http/middleware/authorize.rs`).
It also registers `POST/GET/DELETE /sim/fault` and `GET /sim/health`. `make_pg_app` is the sim-only page/WAL
port (contracts §5.3): request log and error shapes only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute, UrlMappingMatchInfo
from yarl import URL

from neonsim import _auth, _tls
from neonsim._faults import FaultSpec, FaultSpecError, FaultState
from neonsim._reqlog import DEFAULT_READ_ONLY_POSTS, RequestLog, is_sim_path
from neonsim.sharding import TenantShardId

log = logging.getLogger("neonsim.server")

# fleet.json group → node kind → module implementing it
GROUP_KINDS = {"pageservers": "pageserver", "safekeepers": "safekeeper", "computes": "compute"}
KIND_MODULES = {
    "storcon": "neonsim.storcon",
    "pageserver": "neonsim.pageserver",
    "safekeeper": "neonsim.safekeeper",
    "compute": "neonsim.compute",
}

ScopeRule = Callable[[web.Request, dict], bool]
# app[CTX_KEY] is the NodeContext of the app's node.
CTX_KEY: web.AppKey = web.AppKey("neonsim_ctx")


class ApiError(Exception):
    """Raise from a handler to answer `{"msg": msg}` (or the app's error key) with this status."""

    def __init__(self, status: int, msg: str):
        super().__init__(msg)
        self.status = status
        self.msg = msg


def json_response(data, status: int = 200, headers=None) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json", headers=headers)


def json_error(status: int, msg: str, key: str = "msg") -> web.Response:
    return json_response({key: msg}, status=status)


def compute_error(status: int, msg: str) -> web.Response:
    """compute_ctl's error shape (axum): {"error": ...}."""
    return json_error(status, msg, key="error")


def parse_tenant_shard_id(text: str) -> TenantShardId:
    """A `{tenant_shard_id}` from a path or body (`neonsim.sharding.TenantShardId`); ApiError 400 with upstream's
    wording (`failed to parse tenant_shard_id`) when it is not one."""
    try:
        return TenantShardId.parse(text)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


async def read_json(request: web.Request, required: bool = True):
    """Parsed JSON body; ApiError 400 with upstream wording when missing or unparsable."""
    body = await request.read()
    if not body:
        if required:
            raise ApiError(400, "missing request body")
        return None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Failed to parse json request: {exc}") from exc


def route_path(request: web.Request) -> str:
    """The path of the route a request reached: without the one trailing slash `_TrailingSlashRoutes` accepts. Scope
    rules and fault matching use it; the request log and the auth allow-list see the path as sent."""
    path = request.path
    if len(path) > 1 and path.endswith("/") and request.match_info.http_exception is None:
        return path[:-1]
    return path


class _TrailingSlashRoutes(web.AbstractResource):
    """`/path/` reaches the route of `/path`. Upstream's pageserver, safekeeper and storage controller build their
    routers with routerify (`libs/http-utils/src/endpoint.rs`, `make_router`), which matches a path with or without
    one trailing slash; aiohttp matches exactly. Registered once per app (`make_http_app`): a request whose path ends
    in a slash and matches nothing else is resolved again without the slash. `/sim/...` stays exact."""

    def __init__(self, router: web.UrlDispatcher):
        super().__init__(name=None)
        self._router = router

    @property
    def canonical(self) -> str:
        return "/"  # indexed at the root: tried last, after every resource a longer prefix selects

    def url_for(self, *args: str, **kwargs: str) -> URL:
        raise RuntimeError("the trailing-slash alias has no URL of its own")

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("the trailing-slash alias cannot be prefixed")

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        path = request.rel_url.path
        if len(path) < 2 or not path.endswith("/") or path.endswith("//") or is_sim_path(path):
            return None, set()
        match = await self._router.resolve(request.clone(rel_url=request.rel_url.with_path(path[:-1])))
        error = match.http_exception
        if error is None:
            return match, {match.route.method}
        if isinstance(error, web.HTTPMethodNotAllowed):
            return None, set(error.allowed_methods)
        return None, set()

    def get_info(self):  # aiohttp annotates it with a private TypedDict
        return {"path": "/{path}/"}

    def raw_match(self, path: str) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter(())


def find_node(fleet: dict, name: str) -> tuple[str, dict]:
    """(kind, entry) of a node in fleet.json; KeyError when absent."""
    storcon = fleet.get("storage_controller")
    if storcon and storcon.get("name") == name:
        return "storcon", storcon
    for group, kind in GROUP_KINDS.items():
        for entry in fleet.get(group) or []:
            if entry.get("name") == name:
                return kind, entry
    raise KeyError(f"no node named {name!r} in fleet.json")


def load_fleet(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "fleet.json").read_text())


class Node:
    """What `create_node(ctx)` returns. Subclass it (or duck-type the three methods)."""

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx

    def apps(self) -> dict[int, web.Application]:
        raise NotImplementedError

    async def start(self) -> None:
        """Called after every port listens; /sim/health answers 503 until this returns."""

    async def stop(self) -> None:
        """Graceful shutdown on SIGTERM."""

    def health(self) -> dict:
        """Extra fields for GET /sim/health; raise ApiError(503, ...) to report unhealthy."""
        return {}


class NodeContext:
    """Everything a node needs: its config, data dir, peers' URLs, tokens, an HTTP client, app builders."""

    def __init__(self, directory: str | Path, name: str, fleet: dict | None = None):
        self.dir = Path(directory).resolve()
        self.name = name
        self.fleet = fleet if fleet is not None else load_fleet(self.dir)
        self.kind, self.node = find_node(self.fleet, name)
        self.data_dir = self.dir / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.faults = FaultState()
        self.reqlog = RequestLog(self.dir / "requests" / f"{name}.jsonl", name)
        self.ready = False
        self.node_impl: Node | None = None
        auth = self.fleet.get("auth") or {}
        self.auth_enabled = bool(auth.get("enabled"))
        self.public_key = _auth.load_public_key(auth["public_key_pem_path"]) if self.auth_enabled else None
        self._private_key = _auth.load_private_key(auth["private_key_pem_path"]) if self.auth_enabled else None
        # TLS fleet (contracts §5.6): the API port serves HTTPS and calls to other nodes' APIs trust the fleet CA.
        self.tls_enabled = _tls.enabled(self.fleet)
        self._client_ssl = _tls.client_context(self.fleet)
        self._session: aiohttp.ClientSession | None = None

    # --- HTTP client for calling other nodes ---

    @property
    def session(self) -> aiohttp.ClientSession:
        """Shared client session; created on first use inside the running loop, closed by node.py."""
        if self._session is None or self._session.closed:
            # The connector's SSL context applies to https URLs only; the sim-only pg ports stay plain HTTP.
            connector = aiohttp.TCPConnector(ssl=self._client_ssl) if self._client_ssl is not None else None
            self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    def server_ssl(self) -> ssl.SSLContext | None:
        """What the node's API port (`http_port`) serves with: its certificate in a TLS fleet, else None."""
        return _tls.server_context(self.fleet, self.name)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self.reqlog.close()

    # --- peers ---

    @property
    def node_id(self):
        return self.node.get("node_id")

    def find(self, name: str) -> tuple[str, dict]:
        return find_node(self.fleet, name)

    def http_url(self, name: str | None = None) -> str:
        """Base URL of a node's management API: https:// in a TLS fleet."""
        entry = self.node if name is None else self.find(name)[1]
        return _tls.api_url(self.fleet, entry)

    def pg_url(self, name: str | None = None) -> str:
        """Base URL of the sim-only pg port (HTTP stand-in for libpq)."""
        entry = self.node if name is None else self.find(name)[1]
        return f"http://127.0.0.1:{entry['pg_port']}"

    @property
    def storcon_url(self) -> str:
        return _tls.api_url(self.fleet, self.fleet["storage_controller"])

    @property
    def upcall_url(self) -> str:
        """control_plane_api: the storcon upcall prefix, trailing slash included (a node's own `control_plane_api`
        wins: the pageserver binary stand-in reads it from pageserver.toml)."""
        own = self.node.get("control_plane_api")
        if own:
            return own if own.endswith("/") else own + "/"
        return self.storcon_url + "/upcall/v1/"

    def pageservers(self) -> list[dict]:
        return list(self.fleet.get("pageservers") or [])

    def safekeepers(self) -> list[dict]:
        return list(self.fleet.get("safekeepers") or [])

    def computes(self) -> list[dict]:
        return list(self.fleet.get("computes") or [])

    def pageserver_by_id(self, node_id: int) -> dict:
        for entry in self.pageservers():
            if entry["node_id"] == node_id:
                return entry
        raise KeyError(f"no pageserver with node_id {node_id}")

    # --- tokens ---

    def token(self, scope: str, tenant_id: str | None = None, **claims) -> str | None:
        """A fresh EdDSA token, or None when fleet auth is off."""
        if self._private_key is None:
            return None
        return _auth.mint_token(self._private_key, scope, tenant_id, **claims)

    def auth_headers(self, service: str) -> dict:
        """Authorization header for calling `service` (pageserver|safekeeper|storcon|compute|<scope>)."""
        if not self.auth_enabled:
            return {}
        if service == "compute":
            token = self.token("compute_ctl:admin", aud=["compute"])
        else:
            token = self.token(_auth.SERVICE_SCOPES.get(service, service))
        return {"Authorization": f"Bearer {token}"}

    # --- app builders ---

    def make_http_app(
        self,
        scope_rule: ScopeRule | None = None,
        allow: tuple[str, ...] = (),
        error_key: str = "msg",
        auth_mode: str = "storage",
        read_only_posts: tuple[str, ...] = (),
        trailing_slash: bool = True,
    ) -> web.Application:
        """The node's admin HTTP app with logging, error shapes, faults, auth and the /sim/* routes."""
        if read_only_posts:
            self.reqlog.read_only_posts = tuple(DEFAULT_READ_ONLY_POSTS) + tuple(read_only_posts)
        middlewares = [
            _reqlog_middleware(self),
            _error_middleware(error_key),
            _fault_middleware(self, error_key),
        ]
        if self.auth_enabled:
            if auth_mode == "compute":
                middlewares.append(_compute_auth_middleware(self, set(allow)))
            else:
                middlewares.append(_storage_auth_middleware(self, scope_rule, set(allow)))
        app = web.Application(middlewares=middlewares, client_max_size=64 * 1024 * 1024)
        app[CTX_KEY] = self
        if trailing_slash:
            app.router.register_resource(_TrailingSlashRoutes(app.router))
        app.router.add_post("/sim/fault", self._set_fault)
        app.router.add_get("/sim/fault", self._get_fault)
        app.router.add_delete("/sim/fault", self._clear_fault)
        app.router.add_get("/sim/health", self._health)
        return app

    def make_pg_app(self, error_key: str = "msg") -> web.Application:
        """The sim-only pg port app: request log and error shapes, no auth, no faults."""
        app = web.Application(
            middlewares=[_reqlog_middleware(self), _error_middleware(error_key)], client_max_size=64 * 1024 * 1024
        )
        app[CTX_KEY] = self
        return app

    # --- /sim routes ---

    async def _set_fault(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        try:
            spec = FaultSpec.from_json(body)
        except FaultSpecError as exc:
            raise ApiError(400, str(exc)) from exc
        self.faults.set(spec)
        log.warning("fault set: %s", spec.to_json())
        return json_response(self.faults.to_json())

    async def _get_fault(self, request: web.Request) -> web.Response:
        return json_response(self.faults.to_json())

    async def _clear_fault(self, request: web.Request) -> web.Response:
        self.faults.clear()
        log.warning("fault cleared")
        return json_response(self.faults.to_json())

    async def _health(self, request: web.Request) -> web.Response:
        base = {"name": self.name, "kind": self.kind, "node_id": self.node_id, "pid": os.getpid()}
        if not self.ready:
            return json_response({**base, "status": "starting", "msg": "starting"}, status=503)
        extra = self.node_impl.health() if self.node_impl is not None else {}
        return json_response({**base, "status": "ok", **extra})


def _reqlog_middleware(ctx: NodeContext):
    @web.middleware
    async def reqlog(request: web.Request, handler):
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # client went away
            raise
        finally:
            ctx.reqlog.record(
                request.method, request.path, request.query_string, status, (time.monotonic() - started) * 1000.0
            )

    return reqlog


def _error_middleware(error_key: str):
    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            return await handler(request)
        except ApiError as exc:
            return json_error(exc.status, exc.msg, error_key)
        except web.HTTPNotFound as exc:
            if exc.text and exc.content_type == "application/json":
                raise
            return json_error(404, "page not found", error_key)
        except web.HTTPMethodNotAllowed:
            return json_error(405, "method not allowed", error_key)
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("unhandled error in %s %s", request.method, request.path)
            return json_error(500, f"{type(exc).__name__}: {exc}", error_key)

    return errors


def _fault_middleware(ctx: NodeContext, error_key: str):
    @web.middleware
    async def faults(request: web.Request, handler):
        status = await ctx.faults.apply(request.method, route_path(request))
        if status is not None:
            return json_error(status, f"injected fault (status {status})", error_key)
        return await handler(request)

    return faults


def _unrouted(request: web.Request) -> bool:
    """No route matched: let the 404/405 answer win over auth."""
    return request.match_info.http_exception is not None


def _bearer(request: web.Request) -> tuple[str | None, str | None]:
    """(token, problem) from the Authorization header; the prefix must be exactly `Bearer `."""
    header = request.headers.get("Authorization")
    if header is None:
        return None, "missing"
    if not header.startswith("Bearer "):
        return None, "malformed"
    return header[len("Bearer ") :], None


def _storage_auth_middleware(ctx: NodeContext, scope_rule: ScopeRule | None, allow: set[str]):
    @web.middleware
    async def auth(request: web.Request, handler):
        if request.path in allow or request.path.startswith("/sim/") or _unrouted(request):
            return await handler(request)
        token, problem = _bearer(request)
        if problem == "missing":
            return json_error(401, "Unauthorized: missing authorization header")
        if token is None:
            return json_error(401, "Unauthorized: malformed authorization header")
        assert ctx.public_key is not None  # this middleware is only installed when fleet auth is on
        try:
            claims = _auth.verify_token(token, ctx.public_key)
        except _auth.AuthError as exc:
            log.warning("rejected token on %s %s: %s", request.method, request.path, exc)
            return json_error(403, "Forbidden: JWT authentication error")
        if scope_rule is not None and not scope_rule(request, claims):
            return json_error(403, "Forbidden: JWT authentication error")
        request["claims"] = claims
        return await handler(request)

    return auth


def _compute_auth_middleware(ctx: NodeContext, allow: set[str]):
    @web.middleware
    async def auth(request: web.Request, handler):
        if request.path in allow or request.path.startswith("/sim/") or _unrouted(request):
            return await handler(request)
        token, _problem = _bearer(request)
        if token is None:
            return compute_error(400, "invalid authorization token")
        assert ctx.public_key is not None  # this middleware is only installed when fleet auth is on
        try:
            claims = _auth.verify_token(token, ctx.public_key)
        except _auth.AuthError:
            return compute_error(401, "invalid authorization token")
        allowed, status = _auth.compute_claims_ok(claims, ctx.node.get("compute_id", ""))
        if not allowed:
            return compute_error(status, "unauthorized")
        request["claims"] = claims
        return await handler(request)

    return auth
