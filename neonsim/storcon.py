"""Simulated storage controller: the fleet's generation authority (upstream `storage_controller/src/http.rs`,
`storage_controller/src/service.rs`; `docs/rfcs/025-generation-numbers.md`).

What it does: pageserver upcalls (re-attach, validate), the attach-hook and inspect debug helpers, node
registration/listing/config, tenant describe/locate/policy, and heartbeats (`GET /v1/utilization` on every
registered pageserver; a node is Offline after `offline_after_s` without an answer).

What it does NOT do (yet): reconcile or migrate by itself. Placement and scheduling policies are stored and
reported, but no location_config call is ever made by this process; the operator (or the test) drives the
pageservers. A reconciler comes with a later issue.

Durable state: DIR/storcon/state.json (temp file + fsync + rename), so generations survive a restart.
Availability and utilization are in memory only (re-learned by heartbeats, as upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import time
from typing import Any

import aiohttp
from aiohttp import web

from neonsim._auth import STORCON_ALLOW
from neonsim._durable import write_durably
from neonsim._server import ApiError, Node, NodeContext, json_response, parse_tenant_shard_id, read_json
from neonsim.sharding import TenantShardId

log = logging.getLogger("neonsim.storcon")

DEFAULT_STRIPE_SIZE = 2048
STATE_SECTIONS = ("nodes", "tenants", "shards")
AVAILABILITIES = ("Active", "WarmingUp", "Offline")
NODE_SCHEDULING = ("Active", "Filling", "Pause", "PauseForRestart", "Draining", "Deleting")
SHARD_SCHEDULING = ("Active", "Essential", "Pause", "Stop")
NODE_ADDRESS_FIELDS = (
    "listen_pg_addr",
    "listen_pg_port",
    "listen_grpc_addr",
    "listen_grpc_port",
    "listen_http_addr",
    "listen_http_port",
    "listen_https_port",
    "availability_zone_id",
)
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def parse_tenant_id(text: str) -> str:
    if not _HEX32.match(text or ""):
        raise ApiError(400, f"failed to parse tenant_id: {text!r}")
    return text.lower()


def _valid_placement(value) -> bool:
    if value in ("Secondary", "Detached"):
        return True
    return (
        isinstance(value, dict)
        and set(value) == {"Attached"}
        and isinstance(value["Attached"], int)
        and not isinstance(value["Attached"], bool)
        and value["Attached"] >= 0
    )


class StorageController(Node):
    def __init__(self, ctx: NodeContext):
        super().__init__(ctx)
        cfg = ctx.node
        self.heartbeat_interval_s = float(cfg.get("heartbeat_interval_s", 5.0))
        self.offline_after_s = float(cfg.get("offline_after_s", 30.0))
        self.state_path = ctx.data_dir / "state.json"
        self.state = self._load_state()
        now = time.monotonic()
        # In-memory only: re-learned from heartbeats after a restart (nodes start Offline, as upstream).
        self.availability: dict[int, str] = {int(n): "Offline" for n in self.state["nodes"]}
        self.last_seen: dict[int, float] = {int(n): now for n in self.state["nodes"]}
        self.utilization: dict[int, dict] = {}
        self._heartbeat_task: asyncio.Task | None = None
        self._route_scopes: dict[tuple[str, str], tuple[str, ...]] = {}
        self._persist_lock = asyncio.Lock()
        self._changes = 0  # mutations made in memory
        self._persisted = 0  # mutations known to be on disk
        self._cache_all_texts()

        self.http = ctx.make_http_app(scope_rule=self._scope_rule, allow=STORCON_ALLOW)
        r = self._route
        r("GET", "/status", self.status, ())
        r("GET", "/ready", self.status, ())
        r("GET", "/live", self.status, ())
        r("POST", "/upcall/v1/re-attach", self.re_attach, ("generations_api",))
        r("POST", "/upcall/v1/validate", self.validate, ("generations_api",))
        r("POST", "/debug/v1/attach-hook", self.attach_hook, ("admin",))
        r("POST", "/debug/v1/inspect", self.inspect, ("admin",))
        r("POST", "/control/v1/node", self.node_register, ("infra",))
        r("GET", "/control/v1/node", self.node_list, ("infra",))
        r("GET", "/control/v1/node/{node_id}", self.node_describe, ("infra",))
        r("PUT", "/control/v1/node/{node_id}/config", self.node_config, ("admin",))
        r("GET", "/control/v1/node/{node_id}/shards", self.node_shards, ("admin",))
        r("GET", "/control/v1/tenant/{tenant_id}", self.tenant_describe, ("scrubber", "admin"))
        r("PUT", "/control/v1/tenant/{tenant_id}/policy", self.tenant_policy, ("admin",))
        r("GET", "/debug/v1/tenant/{tenant_id}/locate", self.tenant_locate, ("admin",))
        self.http.router.add_get("/sim/state", self.sim_state)
        self.http.router.add_put("/sim/shard/{tenant_shard_id}/secondaries", self.sim_set_secondaries)

    def apps(self):
        return {self.ctx.node["http_port"]: self.http}

    async def start(self) -> None:
        await self._heartbeat_round()
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    async def stop(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task

    def health(self) -> dict:
        return {"nodes": len(self.state["nodes"]), "shards": len(self.state["shards"])}

    # --- routing and auth ---

    def _route(self, method: str, path: str, handler, scopes: tuple[str, ...]) -> None:
        self.http.router.add_route(method, path, handler)
        self._route_scopes[(method, path)] = scopes

    def _scope_rule(self, request: web.Request, claims: dict) -> bool:
        """scope == the route's required scope, or admin (upstream `storage_controller/src/http.rs`)."""
        resource = request.match_info.route.resource
        key = (request.method, resource.canonical if resource is not None else request.path)
        required = self._route_scopes.get(key, ("admin",))
        return claims.get("scope") in (*required, "admin")

    # --- persistence ---

    def _load_state(self) -> dict:
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            log.info("loaded state: %d nodes, %d shards", len(state["nodes"]), len(state["shards"]))
            return state
        return {"nodes": {}, "tenants": {}, "shards": {}}

    async def _persist(self, *dirty: tuple[str, str]) -> None:
        """Make the in-memory state durable before answering; `dirty` names the changed records.

        Handlers mutate `self.state` synchronously, then await this with ("shards", tsid), ("tenants", id) or
        ("nodes", id) for every record they touched (none: just wait until earlier changes are on disk).
        Each record's JSON text is cached, so a write re-serialises only what changed (thousands of shards
        stay cheap), and callers that arrive while a write is in flight share the next one (group commit).
        """
        for section, key in dirty:
            value = self.state[section].get(key)
            if value is None:
                self._texts[section].pop(key, None)
            else:
                self._texts[section][key] = json.dumps(value, sort_keys=True)
        if dirty:
            self._changes += 1
        wanted = self._changes
        async with self._persist_lock:
            if self._persisted >= wanted:
                return
            covered = self._changes
            text = self._state_text()  # assembled in the loop: a consistent snapshot
            await asyncio.to_thread(write_durably, self.state_path, text)
            self._persisted = covered

    def _state_text(self) -> str:
        sections = []
        for section in STATE_SECTIONS:
            records = ", ".join(f"{json.dumps(key)}: {text}" for key, text in self._texts[section].items())
            sections.append(f"{json.dumps(section)}: {{{records}}}")
        return "{" + ", ".join(sections) + "}"

    def _cache_all_texts(self) -> None:
        self._texts = {
            section: {key: json.dumps(value, sort_keys=True) for key, value in self.state[section].items()}
            for section in STATE_SECTIONS
        }

    # --- lookups ---

    def _node(self, node_id) -> dict:
        node = self.state["nodes"].get(str(node_id))
        if node is None:
            raise ApiError(404, f"NotFound: Node {node_id} not registered")
        return node

    def _path_node_id(self, request: web.Request) -> int:
        try:
            return int(request.match_info["node_id"])
        except ValueError as exc:
            raise ApiError(400, f"failed to parse node_id: {request.match_info['node_id']!r}") from exc

    def _tenant_shards(self, tenant_id: str) -> list[tuple[str, dict]]:
        shards = [(tsid, s) for tsid, s in self.state["shards"].items() if s["tenant_id"] == tenant_id]
        if not shards:
            raise ApiError(404, f"NotFound: Tenant {tenant_id} not found")
        return sorted(shards, key=lambda item: item[1]["shard_number"])

    def _describe_node(self, node: dict) -> dict:
        node_id = int(node["id"])
        out = {
            "id": node_id,
            "availability": self.availability.get(node_id, "Offline"),
            "scheduling": node["scheduling"],
        }
        for field in NODE_ADDRESS_FIELDS:
            out[field] = node.get(field)
        return out

    # --- handlers ---

    async def status(self, request: web.Request) -> web.Response:
        return json_response(None)

    async def sim_state(self, request: web.Request) -> web.Response:
        """Sim-only: the whole durable state plus live availability, for tests and the checker."""
        return json_response({**self.state, "availability": {str(k): v for k, v in self.availability.items()}})

    async def sim_set_secondaries(self, request: web.Request) -> web.Response:
        """Sim-only: record a shard's intended secondaries (no reconciler here to choose them)."""
        shard = self.state["shards"].get(str(parse_tenant_shard_id(request.match_info["tenant_shard_id"])))
        if shard is None:
            raise ApiError(404, f"NotFound: Tenant shard {request.match_info['tenant_shard_id']} not found")
        body = await read_json(request)
        node_ids = body.get("node_ids") if isinstance(body, dict) else None
        if not isinstance(node_ids, list):
            raise ApiError(400, "Failed to parse json request: missing field `node_ids`")
        for node_id in node_ids:
            self._node(node_id)
        shard["intent_secondaries"] = sorted({int(n) for n in node_ids})
        await self._persist(("shards", _shard_key(shard)))
        return json_response(None)

    async def _register(self, req: dict) -> None:
        """Register or confirm a node; 409 if the id is known with a different address (upstream
        `storage_controller/src/service.rs`)."""
        try:
            node_id = int(req["node_id"])
            record: dict[str, Any] = {field: req.get(field) for field in NODE_ADDRESS_FIELDS}
            for field in ("listen_pg_addr", "listen_http_addr", "availability_zone_id"):
                if not isinstance(record[field], str) or not record[field]:
                    raise KeyError(field)
            for field in ("listen_pg_port", "listen_http_port"):
                record[field] = int(record[field])
            if record["listen_https_port"] is not None:
                record["listen_https_port"] = int(record["listen_https_port"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(400, f"Failed to parse json request: missing or invalid field {exc}") from exc
        if self.ctx.tls_enabled and record["listen_https_port"] is None:
            # With --use-https-pageserver-api the controller only talks HTTPS to nodes (Node::register_pending in
            # storage_controller/src/node.rs refuses a node without an https port).
            raise ApiError(
                412,
                f"Precondition failed: cannot create node {node_id}: https is enabled, but https port is not specified",
            )
        if str(node_id) not in self.state["nodes"]:
            try:
                await asyncio.get_running_loop().getaddrinfo(
                    _resolvable_host(record["listen_http_addr"]), record["listen_http_port"]
                )
            except OSError as exc:
                raise ApiError(
                    503, f"Node {node_id} listen_http_addr {record['listen_http_addr']} does not resolve: {exc}"
                ) from exc
        existing = self.state["nodes"].get(str(node_id))  # re-read: the lookup above yielded to other requests
        if existing is not None:
            if any(existing.get(f) != record[f] for f in NODE_ADDRESS_FIELDS):
                raise ApiError(409, f"Conflict: Node {node_id} is already registered with different address")
            await self._persist()  # an identical registration may still be in flight
            return
        self.state["nodes"][str(node_id)] = {"id": node_id, "scheduling": "Active", **record}
        # New nodes start Offline and become Active after a successful heartbeat.
        self.availability[node_id] = "Offline"
        self.last_seen[node_id] = time.monotonic()
        await self._persist(("nodes", str(node_id)))
        log.info("registered node %s at %s:%s", node_id, record["listen_http_addr"], record["listen_http_port"])

    async def node_register(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "Failed to parse json request: expected an object")
        await self._register(body)
        return json_response(None)

    async def node_list(self, request: web.Request) -> web.Response:
        nodes = sorted(self.state["nodes"].values(), key=lambda n: int(n["id"]))
        return json_response([self._describe_node(n) for n in nodes])

    async def node_describe(self, request: web.Request) -> web.Response:
        return json_response(self._describe_node(self._node(self._path_node_id(request))))

    async def node_config(self, request: web.Request) -> web.Response:
        node_id = self._path_node_id(request)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "Failed to parse json request: expected an object")
        if body.get("node_id") != node_id:
            raise ApiError(400, f"Path and body node_id differ ({node_id} vs {body.get('node_id')})")
        node = self._node(node_id)
        availability, scheduling = body.get("availability"), body.get("scheduling")
        if availability is not None and availability not in AVAILABILITIES:
            raise ApiError(400, f"Failed to parse json request: unknown availability {availability!r}")
        if scheduling is not None and scheduling not in NODE_SCHEDULING:
            raise ApiError(400, f"Failed to parse json request: unknown scheduling policy {scheduling!r}")
        if availability is not None:
            self.availability[node_id] = availability
            if availability == "Active":
                self.last_seen[node_id] = time.monotonic()
        if scheduling is not None and scheduling != node["scheduling"]:
            node["scheduling"] = scheduling
            await self._persist(("nodes", str(node_id)))
        return json_response(None)

    async def node_shards(self, request: web.Request) -> web.Response:
        node_id = self._path_node_id(request)
        self._node(node_id)
        shards = []
        for tsid, shard in sorted(self.state["shards"].items()):
            secondary = node_id in shard["intent_secondaries"]
            if shard["intent_attached"] == node_id or secondary:
                shards.append(
                    {"tenant_shard_id": tsid, "is_observed_secondary": None, "is_intended_secondary": secondary}
                )
        return json_response({"node_id": node_id, "shards": shards})

    async def re_attach(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or "node_id" not in body:
            raise ApiError(400, "Failed to parse json request: missing field `node_id`")
        node_id = int(body["node_id"])
        register = body.get("register")
        if register:
            await self._register(_register_request_from_metadata(node_id, register))
        node = self._node(node_id)

        tenants = []
        dirty = [("nodes", str(node_id))]
        for tsid, shard in sorted(self.state["shards"].items()):
            if shard["generation_pageserver"] == node_id:
                shard["generation"] = int(shard["generation"] or 0) + 1
                dirty.append(("shards", tsid))
                tenants.append(
                    {
                        "id": tsid,
                        "gen": shard["generation"],
                        "mode": "AttachedSingle",
                        "stripe_size": shard["stripe_size"],
                    }
                )
            elif node_id in shard["intent_secondaries"]:
                tenants.append({"id": tsid, "gen": None, "mode": "Secondary", "stripe_size": shard["stripe_size"]})
        # Scheduling policy reset on restart (upstream `storage_controller/src/service.rs`, re_attach).
        if node["scheduling"] in ("Draining", "Filling", "PauseForRestart"):
            node["scheduling"] = "Active"
        elif node["scheduling"] == "Deleting":
            node["scheduling"] = "Pause"
        await self._persist(*dirty)
        self.availability[node_id] = "WarmingUp"
        self.last_seen[node_id] = time.monotonic()
        log.info("re-attach node %s: %d tenants", node_id, len(tenants))
        # Let a prompt heartbeat move it to Active instead of waiting a full interval.
        asyncio.get_running_loop().call_later(0.5, lambda: asyncio.ensure_future(self._heartbeat_node(node_id)))
        return json_response({"tenants": tenants})

    async def validate(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("tenants"), list):
            raise ApiError(400, "Failed to parse json request: missing field `tenants`")
        out = []
        for item in body["tenants"]:
            shard = self.state["shards"].get(str(item.get("id")))
            if shard is None:
                continue  # unknown shards are omitted (treated as invalid by the pageserver)
            out.append(
                {"id": item["id"], "valid": shard["generation"] is not None and item.get("gen") == shard["generation"]}
            )
        return json_response({"tenants": out})

    def _ensure_shard(self, tsid: str, stripe_size: int | None, override: int | None) -> dict:
        shard_id = parse_tenant_shard_id(tsid)
        tenant_id, number, count = shard_id.tenant_id, shard_id.shard_number, shard_id.shard_count
        tsid = str(shard_id)
        tenant = self.state["tenants"].setdefault(
            tenant_id,
            {
                "stripe_size": stripe_size or DEFAULT_STRIPE_SIZE,
                "policy": {"Attached": 0},
                "scheduling": "Active",
                "config": {},
                "preferred_az": None,
                "shard_count": count,
            },
        )
        shard = self.state["shards"].get(tsid)
        if shard is None:
            shard = {
                "tenant_id": tenant_id,
                "shard_number": number,
                "shard_count": count,
                "stripe_size": tenant["stripe_size"],
                "generation": override if override is not None else 0,
                "generation_pageserver": None,
                "intent_attached": None,
                "intent_secondaries": [],
            }
            self.state["shards"][tsid] = shard
        elif override is not None and override > int(shard["generation"] or 0):
            shard["generation"] = override
        return shard

    async def attach_hook(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or "tenant_shard_id" not in body:
            raise ApiError(400, "Failed to parse json request: missing field `tenant_shard_id`")
        override = body.get("generation_override")
        # stripe_size is a sim-only extension used by neonsim bootstrap; upstream takes it from tenant creation.
        shard = self._ensure_shard(str(body["tenant_shard_id"]), body.get("stripe_size"), override)
        tenant = self.state["tenants"][shard["tenant_id"]]
        if body.get("config") is not None:
            tenant["config"] = body["config"]
        node_id = body.get("node_id")
        if node_id is None:
            shard["generation_pageserver"] = None
            shard["intent_attached"] = None
            tenant["policy"] = "Detached"
            await self._persist(("shards", _shard_key(shard)), ("tenants", shard["tenant_id"]))
            return json_response({"gen": None})
        generation = int(shard["generation"] or 0) + 1
        shard["generation"] = generation
        shard["generation_pageserver"] = int(node_id)
        shard["intent_attached"] = int(node_id)
        if not isinstance(tenant["policy"], dict):
            tenant["policy"] = {"Attached": 0}
        await self._persist(("shards", _shard_key(shard)), ("tenants", shard["tenant_id"]))
        # `generation`, not shard["generation"]: other requests may have bumped it while we waited for the disk.
        return json_response({"gen": generation})

    async def inspect(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or "tenant_shard_id" not in body:
            raise ApiError(400, "Failed to parse json request: missing field `tenant_shard_id`")
        shard = self.state["shards"].get(str(parse_tenant_shard_id(str(body["tenant_shard_id"]))))
        if shard is None or shard["generation_pageserver"] is None or shard["generation"] is None:
            return json_response({"attachment": None})
        return json_response({"attachment": [shard["generation"], shard["generation_pageserver"]]})

    async def tenant_describe(self, request: web.Request) -> web.Response:
        tenant_id = parse_tenant_id(request.match_info["tenant_id"])
        shards = self._tenant_shards(tenant_id)
        tenant = self.state["tenants"][tenant_id]
        return json_response(
            {
                "tenant_id": tenant_id,
                "shards": [
                    {
                        "tenant_shard_id": tsid,
                        "node_attached": s["intent_attached"],
                        "node_secondary": list(s["intent_secondaries"]),
                        "last_error": "",
                        "is_reconciling": False,
                        "is_pending_compute_notification": False,
                        "is_splitting": False,
                        "is_importing": False,
                        "scheduling_policy": tenant["scheduling"],
                        "preferred_az_id": tenant.get("preferred_az"),
                    }
                    for tsid, s in shards
                ],
                "stripe_size": tenant["stripe_size"],
                "policy": tenant["policy"],
                "config": tenant["config"],
            }
        )

    async def tenant_locate(self, request: web.Request) -> web.Response:
        tenant_id = parse_tenant_id(request.match_info["tenant_id"])
        shards = self._tenant_shards(tenant_id)
        tenant = self.state["tenants"][tenant_id]
        out = []
        for tsid, s in shards:
            if s["intent_attached"] is None:
                raise ApiError(503, f"Shard {tsid} is not attached to any node")
            node = self._node(s["intent_attached"])
            addresses = {k: node.get(k) for k in NODE_ADDRESS_FIELDS if k != "availability_zone_id"}
            out.append({"shard_id": tsid, "node_id": s["intent_attached"], **addresses})
        return json_response(
            {
                "shards": out,
                "shard_params": {"count": shards[0][1]["shard_count"], "stripe_size": tenant["stripe_size"]},
            }
        )

    async def tenant_policy(self, request: web.Request) -> web.Response:
        tenant_id = parse_tenant_id(request.match_info["tenant_id"])
        shards = self._tenant_shards(tenant_id)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "Failed to parse json request: expected an object")
        placement, scheduling = body.get("placement"), body.get("scheduling")
        if placement is not None and not _valid_placement(placement):
            raise ApiError(400, f"Failed to parse json request: invalid placement {placement!r}")
        if scheduling is not None and scheduling not in SHARD_SCHEDULING:
            raise ApiError(400, f"Failed to parse json request: invalid scheduling {scheduling!r}")
        tenant = self.state["tenants"][tenant_id]
        if placement is not None:
            tenant["policy"] = placement
            if not isinstance(placement, dict):
                # Away from Attached: scheduling resets to Active and no pageserver keeps the generation.
                tenant["scheduling"] = "Active"
                for _, shard in shards:
                    shard["generation_pageserver"] = None
                    shard["intent_attached"] = None
        if scheduling is not None:
            tenant["scheduling"] = scheduling
        await self._persist(("tenants", tenant_id), *(("shards", tsid) for tsid, _ in shards))
        return json_response(None)

    # --- heartbeats ---

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            try:
                await self._heartbeat_round()
            except Exception:  # a heartbeat bug must not stop future rounds
                log.exception("heartbeat round failed")

    async def _heartbeat_round(self) -> None:
        await asyncio.gather(*(self._heartbeat_node(int(n)) for n in list(self.state["nodes"])))

    async def _heartbeat_node(self, node_id: int) -> None:
        node = self.state["nodes"].get(str(node_id))
        if node is None:
            return
        if self.ctx.tls_enabled:
            # A TLS fleet's controller runs as with --use-https-pageserver-api (storage_controller/src/main.rs).
            url = f"https://{node['listen_http_addr']}:{node['listen_https_port']}/v1/utilization"
        else:
            url = f"http://{node['listen_http_addr']}:{node['listen_http_port']}/v1/utilization"
        timeout = aiohttp.ClientTimeout(total=max(1.0, min(self.heartbeat_interval_s, 5.0)))
        ok = False
        try:
            async with self.ctx.session.get(url, headers=self.ctx.auth_headers("pageserver"), timeout=timeout) as resp:
                if resp.status == 200:
                    self.utilization[node_id] = await resp.json()
                    ok = True
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("heartbeat to node %s failed: %s", node_id, exc)
        now = time.monotonic()
        if ok:
            self.last_seen[node_id] = now
            if self.availability.get(node_id) != "Active":
                log.info("node %s is Active", node_id)
            self.availability[node_id] = "Active"
        elif now - self.last_seen.get(node_id, now) >= self.offline_after_s:
            if self.availability.get(node_id) != "Offline":
                log.warning("node %s is Offline (no heartbeat for %.0fs)", node_id, now - self.last_seen[node_id])
            self.availability[node_id] = "Offline"


def _resolvable_host(addr: str) -> str:
    """The host part upstream resolves: it looks up ``"{listen_http_addr}:{port}"`` (``tokio::net::lookup_host`` in
    storage_controller/src/service.rs), which reads a bracketed IPv6 address as a socket address."""
    if addr.startswith("[") and addr.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(addr[1:-1]))
        except ValueError:
            return addr
    return addr


def _shard_key(shard: dict) -> str:
    return str(TenantShardId(shard["tenant_id"], shard["shard_number"], shard["shard_count"]))


def _register_request_from_metadata(node_id: int, meta: dict) -> dict:
    """re-attach's `register` (pageserver metadata.json shape) → NodeRegisterRequest fields."""
    if "listen_http_addr" in meta:  # already in NodeRegisterRequest form
        return {"node_id": node_id, **meta}
    return {
        "node_id": node_id,
        "listen_pg_addr": meta.get("host"),
        "listen_pg_port": meta.get("port"),
        "listen_http_addr": meta.get("http_host"),
        "listen_http_port": meta.get("http_port"),
        "listen_https_port": meta.get("https_port"),
        "listen_grpc_addr": meta.get("grpc_host"),
        "listen_grpc_port": meta.get("grpc_port"),
        "availability_zone_id": meta.get("availability_zone_id"),
    }


async def create_node(ctx: NodeContext) -> StorageController:
    return StorageController(ctx)
