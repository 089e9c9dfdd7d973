"""HTTP routes of the simulated pageserver (upstream `pageserver/src/http/routes.rs`) and its sim-only page
service (contracts §5.3)."""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from neonsim._auth import PAGESERVER_ALLOW, pageserver_scope_rule
from neonsim._server import ApiError, NodeContext, json_response, read_json
from neonsim.lsn import format_lsn, parse_lsn
from neonsim.pageserver import layers as L
from neonsim.pageserver.config import UPSTREAM_DEFAULTS, BadRequest, parse_location_config, validate_tenant_conf
from neonsim.pageserver.node import IN_PROGRESS, PageserverCore, now_rfc3339, parse_tsid
from neonsim.pageserver.remote import index_generation
from neonsim.pageserver.secondary import SecondaryShard
from neonsim.pageserver.tenant import TenantShard
from neonsim.pageserver.timeline import INITDB_LSN, LayerReadError, Timeline
from neonsim.sharding import TenantShardId, key_in_shard

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
TENANT = "/v1/tenant/{tenant_shard_id}"
TIMELINE = TENANT + "/timeline/{timeline_id}"
# Handlers that upstream runs without a scope check (a valid token of any scope passes;
# `pageserver/src/http/routes.rs`).
NO_SCOPE_CHECK = re.compile(r"^/v1/(location_config|tenant/[^/]+/(heatmap_upload|secondary/download))$")
TENANT_CONF_KEYS = set(UPSTREAM_DEFAULTS) | {
    "compaction_shard_ancestor", "compaction_l0_first", "compaction_l0_semaphore", "image_layer_force_creation_period",
    "timeline_get_throttle", "image_layer_creation_check_threshold", "image_creation_preempt_threshold",
    "rel_size_v2_enabled", "gc_compaction_verification", "gc_compaction_initial_threshold_kb",
    "gc_compaction_ratio_percent", "sampling_ratio", "relsize_snapshot_cache_capacity", "basebackup_cache_enabled",
}  # fmt: skip


def scope_rule(request: web.Request, claims: dict) -> bool:
    if NO_SCOPE_CHECK.match(request.path):
        return True
    if request.path == "/v1/tenant/config" and claims.get("scope") == "tenant":
        return True  # the tenant id is in the body; the handler checks it
    return pageserver_scope_rule(request, claims)


def timeline_id_of(request: web.Request, key: str = "timeline_id") -> str:
    value = request.match_info[key].lower()
    if not _HEX32.match(value):
        raise ApiError(400, f"failed to parse {key}: {request.match_info[key]}")
    return value


def bool_query(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


class Pageserver(PageserverCore):
    def __init__(self, ctx: NodeContext):
        super().__init__(ctx)
        self.http = ctx.make_http_app(scope_rule=scope_rule, allow=PAGESERVER_ALLOW)
        r = self.http.router
        r.add_get("/v1/status", self.status)
        r.add_get("/v1/utilization", self.get_utilization)
        r.add_get("/metrics", self.metrics)
        r.add_get("/v1/tenant", self.tenant_list)
        r.add_post("/v1/tenant", self.removed_route)
        r.add_put("/v1/tenant/config", self.tenant_config_put)
        r.add_patch("/v1/tenant/config", self.tenant_config_patch)
        r.add_get("/v1/location_config", self.location_list)
        r.add_get("/v1/location_config/{tenant_shard_id}", self.location_get)
        r.add_put("/v1/deletion_queue/flush", self.deletion_flush)
        r.add_get(TENANT, self.tenant_get)
        r.add_delete(TENANT, self.tenant_delete)
        r.add_get(TENANT + "/config", self.tenant_config_get)
        r.add_put(TENANT + "/location_config", self.location_put)
        r.add_post(TENANT + "/reset", self.tenant_reset)
        r.add_post(TENANT + "/heatmap_upload", self.heatmap_upload)
        r.add_post(TENANT + "/secondary/download", self.secondary_download)
        r.add_get(TENANT + "/secondary/status", self.secondary_status)
        r.add_post(TENANT + "/wait_lsn", self.wait_lsn)
        r.add_get("/v1/tenant/{tenant_id}/scan_remote_storage", self.scan_remote_storage)
        r.add_get(TENANT + "/timeline", self.timeline_list)
        r.add_post(TENANT + "/timeline", self.timeline_create)
        r.add_get(TENANT + "/timeline_and_offloaded", self.timeline_and_offloaded)
        r.add_get(TIMELINE, self.timeline_get)
        r.add_get(TIMELINE + "/layer", self.layer_map)
        r.add_delete(TIMELINE, self.timeline_delete)
        r.add_post(TIMELINE + "/block_gc", self.block_gc)
        r.add_post(TIMELINE + "/unblock_gc", self.unblock_gc)
        r.add_put(TIMELINE + "/do_gc", self.do_gc)
        r.add_get(TIMELINE + "/compact", self.compact_info)
        r.add_put(TIMELINE + "/compact", self.compact)
        r.add_delete(TIMELINE + "/compact", self.compact_cancel)
        r.add_put(TIMELINE + "/checkpoint", self.checkpoint)
        r.add_post("/sim/tenant/{tenant_shard_id}/evict", self.sim_evict)
        r.add_post("/sim/tenant/{tenant_shard_id}/synthetic", self.sim_synthetic)
        r.add_get("/sim/pageserver", self.sim_stats)
        r.add_get("/sim/background", self.sim_background)
        r.add_post("/sim/walreceiver", self.sim_walreceiver)
        self.pg = ctx.make_pg_app()
        self.pg.router.add_get("/sim/page", self.page)

    def apps(self):
        return {self.ctx.node["http_port"]: self.http, self.ctx.node["pg_port"]: self.pg}

    # ---- node-level ---------------------------------------------------------------------------------------
    async def status(self, request):
        return json_response({"id": self.node_id})

    async def removed_route(self, request):
        # removed upstream (tenant creation is location_config now); its router answers 404, not 405
        raise ApiError(404, "page not found")

    async def get_utilization(self, request):
        return json_response(self.utilization())

    async def metrics(self, request):
        dq = self.deletion_queue
        lines = [
            f"pageserver_deletion_queue_submitted_total {dq.submitted}",
            f"pageserver_deletion_queue_executed_total {dq.executed}",
            f"pageserver_deletion_queue_dropped_total {dq.dropped}",
            f"pageserver_on_demand_downloads_total {self.stats['on_demand_downloads']}",
            f"pageserver_heatmap_uploads_total {self.stats['heatmap_uploads']}",
            f"pageserver_remote_puts_total {self.remote.puts}",
            f"pageserver_resident_physical_size {self.local_bytes}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def sim_stats(self, request):
        dq = self.deletion_queue
        return json_response(
            {
                "deletions_submitted": dq.submitted,
                "deletions_executed": dq.executed,
                "deletions_dropped": dq.dropped,
                "deletions_pending": sum(len(k) for _, _, k in dq.pending) + len(dq.ready),
                "held_deletions": {
                    s.tsid: len(s.held_deletions) for s in self.slots.values() if isinstance(s, TenantShard)
                },
                "on_demand_downloads": self.stats["on_demand_downloads"],
                "heatmap_uploads": self.stats["heatmap_uploads"],
                "local_bytes": self.local_bytes,
                "tenants_ready": self.tenants_ready,
                "location_history": self.location_history,
            }
        )

    async def sim_background(self, request):
        """The periodic gc and compaction iterations started, oldest first (`tenant_shard_id`, `since` filter)."""
        tsid = request.query.get("tenant_shard_id")
        try:
            since = float(request.query.get("since") or 0)
        except ValueError:
            raise ApiError(400, f"invalid since: {request.query['since']!r}") from None
        iterations = [e for e in self.background_history if e["ts"] >= since and tsid in (None, e["tenant_shard_id"])]
        return json_response({"iterations": iterations})

    async def deletion_flush(self, request):
        self.require_ready()
        await self.deletion_queue.flush(execute=bool_query(request, "execute"))
        return json_response(None)

    # ---- tenants --------------------------------------------------------------------------------------------
    async def tenant_list(self, request):
        self.require_ready()
        return json_response([s.info() for s in self.slots.values() if isinstance(s, TenantShard)])

    async def tenant_get(self, request):
        shard_id = parse_tsid(request.match_info["tenant_shard_id"])
        tenant = await self.attached_tenant(shard_id, wait_active=False)
        await tenant.wait_active(5.0)  # advisory: answer with whatever state it is in
        return json_response(tenant.info(detail=True))

    async def tenant_delete(self, request):
        shard_id = parse_tsid(request.match_info["tenant_shard_id"])
        tsid = str(shard_id)
        slot = self.get_slot(tsid)
        if tsid in self._deleting_tenants or slot is IN_PROGRESS:
            raise ApiError(503, "tenant deletion already in progress")
        self._deleting_tenants.add(tsid)
        try:
            if slot is not None:
                self.slots[tsid] = IN_PROGRESS
                try:
                    await slot.shutdown()
                finally:
                    self.slots.pop(tsid, None)
            self._purge_local(tsid)
            # a prefix delete: an unsharded id also matches every `{tenant_id}-NNCC` shard prefix (upstream
            # `pageserver/src/http/routes.rs`, tenant delete)
            await self.remote.delete_prefix(f"{self.remote.prefix}tenants/{tsid}")
        finally:
            self._deleting_tenants.discard(tsid)
        return json_response(None)

    async def tenant_reset(self, request):
        shard_id = parse_tsid(request.match_info["tenant_shard_id"])
        tsid = str(shard_id)
        slot = self.get_slot(tsid)
        if not isinstance(slot, TenantShard):
            raise ApiError(500, f"tenant {tsid} not found or not attached")
        drop_cache = bool_query(request, "drop_cache")
        self.slots[tsid] = IN_PROGRESS
        try:
            await slot.shutdown()
            if drop_cache:
                self.remove_tree(self.tenants_dir / tsid / "timelines")
        finally:
            self.slots.pop(tsid, None)
        self._start_slot(tsid, slot.location)
        return json_response(None)

    async def location_put(self, request):
        shard_id = parse_tsid(request.match_info["tenant_shard_id"])
        body = await read_json(request)
        try:
            conf = parse_location_config(body)
            flush_ms = int(request.query["flush_ms"]) if "flush_ms" in request.query else None
        except BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        except ValueError:
            raise ApiError(400, f"Failed to parse flush_ms: {request.query['flush_ms']}") from None
        lazy = bool_query(request, "lazy")
        # upsert_location applies the change before its first await (the slot takes the new config, or is marked
        # InProgress and stops its background work), so this instant is when the change took effect.
        applied_at = time.time()
        result = await self.upsert_location(shard_id, conf, flush_ms, lazy)
        self.record_location(applied_at, shard_id, conf)
        return json_response(result)

    async def location_list(self, request):
        self.require_ready()
        items = [[tsid, None if s is IN_PROGRESS else s.location] for tsid, s in sorted(self.slots.items())]
        return json_response({"tenant_shards": items})

    async def location_get(self, request):
        shard_id = parse_tsid(request.match_info["tenant_shard_id"])
        slot = self.get_slot(str(shard_id))
        if slot is None:
            raise ApiError(404, "NotFound: Tenant shard not found")
        return json_response(None if slot is IN_PROGRESS else slot.location)

    # ---- tenant config (upstream `pageserver/src/http/routes.rs`) ----------------------------------------
    async def tenant_config_get(self, request):
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]))
        overrides = tenant.location.get("tenant_conf") or {}
        return json_response({"tenant_specific_overrides": overrides, "effective_config": tenant.effective_config()})

    async def _tenant_config_change(self, request, patch: bool):
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "Failed to parse json request: expected a map")
        unknown = sorted(set(body) - TENANT_CONF_KEYS - {"tenant_id"})
        if unknown:
            raise ApiError(400, f"Failed to parse json request: unknown field `{unknown[0]}`")
        tenant_id = str(body.get("tenant_id") or "").lower()
        if not _HEX32.match(tenant_id):
            raise ApiError(400, "Failed to parse json request: missing or invalid field `tenant_id`")
        claims = request.get("claims")
        if claims and claims.get("scope") == "tenant" and (claims.get("tenant_id") or "").lower() != tenant_id:
            raise ApiError(403, "Forbidden: JWT authentication error")
        tenant = await self.attached_tenant(TenantShardId(tenant_id))
        changes = {k: v for k, v in body.items() if k != "tenant_id"}
        if patch:
            overrides = dict(tenant.location.get("tenant_conf") or {})
            for key, value in changes.items():
                if value is None:
                    overrides.pop(key, None)
                else:
                    overrides[key] = value
        else:
            overrides = changes
        try:
            overrides = validate_tenant_conf(overrides)
        except BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        location = {**tenant.location, "tenant_conf": overrides}
        tenant.set_location(location)
        self.persist_location(tenant.tsid, location)
        return json_response(None)

    async def tenant_config_put(self, request):
        return await self._tenant_config_change(request, patch=False)

    async def tenant_config_patch(self, request):
        return await self._tenant_config_change(request, patch=True)

    # ---- heatmaps and secondaries (upstream `pageserver/src/tenant/secondary.rs`) -------------------------
    async def heatmap_upload(self, request):
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]), wait_active=False)
        if tenant.slug != "Active":
            raise ApiError(503, "Tenant not yet active")
        await tenant.upload_heatmap()
        return json_response(None)

    def _secondary(self, request) -> SecondaryShard:
        tsid = str(parse_tsid(request.match_info["tenant_shard_id"]))
        slot = self.get_slot(tsid)
        if not isinstance(slot, SecondaryShard):
            raise ApiError(404, f"NotFound: Shard {tsid} not found")
        return slot

    async def secondary_download(self, request):
        secondary = self._secondary(request)
        wait_ms = request.query.get("wait_ms")
        task = secondary.start_download()
        try:
            if wait_ms is None:
                await asyncio.shield(task)
            else:
                await asyncio.wait_for(asyncio.shield(task), int(wait_ms) / 1000)
        except TimeoutError:
            pass
        except ValueError:
            raise ApiError(400, f"invalid wait_ms: {wait_ms}") from None
        progress = dict(secondary.progress)
        complete = task.done() and progress["layers_downloaded"] >= progress["layers_total"]
        return json_response(progress, status=200 if complete else 202)

    async def secondary_status(self, request):
        return json_response(dict(self._secondary(request).progress))

    # ---- wait_lsn (upstream `pageserver/src/http/routes.rs`) ---------------------------------------------------
    async def wait_lsn(self, request):
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]))
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("timeout"), dict):
            raise ApiError(400, "Failed to parse json request: missing field `timeout`")
        timeout = float(body["timeout"].get("secs", 0)) + float(body["timeout"].get("nanos", 0)) / 1e9
        targets = {}
        for key, value in body.items():
            if key == "timeout":
                continue
            try:
                targets[key.lower()] = parse_lsn(value)
            except (ValueError, TypeError):
                raise ApiError(400, f"Failed to parse json request: invalid LSN for {key}") from None
        present = [(tenant.timelines[t], lsn) for t, lsn in targets.items() if t in tenant.timelines]
        if not present:
            return json_response(None, status=404)
        results = await asyncio.gather(*(tl.wait_lsn(lsn, timeout) for tl, lsn in present))
        return json_response(None, status=200 if all(results) else 202)

    async def scan_remote_storage(self, request):
        tenant_id = request.match_info["tenant_id"].lower()
        if not _HEX32.match(tenant_id):
            raise ApiError(400, f"failed to parse tenant_id: {tenant_id}")
        self.require_ready()
        base = f"{self.remote.prefix}tenants/"
        names = [n for n in await self.remote.list_dirs(base) if n.startswith(tenant_id)]
        shards = []
        for name in sorted(names):
            best = None
            for key in await self.remote.list_keys(f"{base}{name}/timelines/"):
                gen = index_generation(key)
                if gen is not None and gen >= 0 and (best is None or gen > best):
                    best = gen
            slot = self.slots.get(name)
            stripe = slot.location.get("shard_stripe_size") if slot is not None and slot is not IN_PROGRESS else None
            shards.append({"tenant_shard_id": name, "generation": best, "stripe_size": stripe or None})
        if not shards:
            raise ApiError(404, f"NotFound: no shards found for tenant {tenant_id}")
        return json_response({"shards": shards})

    # ---- timelines (upstream `pageserver/src/http/routes.rs`) ------------------------------------------------
    async def _timeline(self, request) -> tuple[TenantShard, Timeline]:
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]))
        timeline_id = timeline_id_of(request)
        tl = tenant.timelines.get(timeline_id)
        if tl is None:
            raise ApiError(404, f"NotFound: Timeline {tenant.tsid}/{timeline_id} was not found")
        return tenant, tl

    async def timeline_list(self, request):
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]))
        return json_response([tl.info() for _, tl in sorted(tenant.timelines.items())])

    async def timeline_and_offloaded(self, request):
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]))
        timelines = [tl.info() for _, tl in sorted(tenant.timelines.items())]
        return json_response({"timelines": timelines, "offloaded": []})

    async def layer_map(self, request):
        _, tl = await self._timeline(request)
        historic = [
            {
                "kind": "Delta" if d.kind == "delta" else "Image",
                "layer_file_name": d.name,
                "layer_file_size": d.file_size,
                "lsn_start": format_lsn(d.lsn_start),
                "lsn_end": format_lsn(d.lsn_end),
                "remote": not d.resident,
                "access_stats": {"residence_events_history": {}, "access_count_by_access_kind": {}},
                "visible": True,
            }
            for d in sorted(tl.layers.values(), key=lambda d: (d.lsn_end, d.name))
        ]
        in_memory = []
        if tl.open_records:
            start, end = format_lsn(tl.disk_consistent_lsn), format_lsn(tl.last_record_lsn)
            in_memory.append({"kind": "InMemory", "lsn_start": start, "lsn_end": end})
        return json_response({"in_memory_layers": in_memory, "historic_layers": historic})

    async def timeline_get(self, request):
        _, tl = await self._timeline(request)
        return json_response(tl.info())

    async def timeline_create(self, request):
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]))
        body = await read_json(request)
        if not isinstance(body, dict) or not _HEX32.match(str(body.get("new_timeline_id") or "").lower()):
            raise ApiError(400, "Failed to parse json request: missing or invalid field `new_timeline_id`")
        if body.get("import_pgdata") is not None:
            raise ApiError(400, "import_pgdata is not supported by the simulator")
        new_id = body["new_timeline_id"].lower()
        ancestor_id = (body.get("ancestor_timeline_id") or "").lower() or None
        try:
            start_lsn = parse_lsn(body["ancestor_start_lsn"]) if body.get("ancestor_start_lsn") else None
        except ValueError as exc:
            raise ApiError(400, f"Failed to parse json request: {exc}") from None
        pg_version = int(body.get("pg_version") or 17)
        existing = tenant.timelines.get(new_id)
        if existing is not None:
            same = existing.ancestor_timeline_id == ancestor_id and (
                ancestor_id is None or start_lsn is None or existing.ancestor_lsn == start_lsn
            )
            if not same:
                raise ApiError(409, "Conflict: Timeline already exists with different parameters")
            return json_response(existing.info(), status=201)
        if new_id in tenant.creating or new_id in tenant.deleting:
            raise ApiError(429, "Timeline creation already in progress")
        tenant.creating.add(new_id)
        try:
            if ancestor_id is not None:
                ancestor = tenant.timelines.get(ancestor_id)
                if ancestor is None:
                    raise ApiError(404, f"NotFound: ancestor timeline {ancestor_id} not found")
                lsn = ancestor.last_record_lsn if start_lsn is None else start_lsn
                if lsn < ancestor.applied_gc_cutoff_lsn:
                    cutoff = format_lsn(ancestor.applied_gc_cutoff_lsn)
                    raise ApiError(406, f"invalid branch start lsn: less than latest GC cutoff {cutoff}")
                if not await ancestor.wait_lsn(lsn, 10.0):
                    raise ApiError(406, f"invalid branch start lsn {format_lsn(lsn)}: ancestor has not reached it")
                tl = Timeline(tenant, new_id, ancestor_id, lsn, ancestor.initdb_lsn, ancestor.pg_version)
                tl.prev_record_lsn = ancestor.prev_record_lsn if lsn == ancestor.last_record_lsn else 0
            else:
                tl = Timeline(tenant, new_id, initdb_lsn=INITDB_LSN, pg_version=pg_version)
                image = L.LayerDesc(
                    name=L.image_layer_name(INITDB_LSN),
                    generation=tenant.generation,
                    shard=tenant.shard_index_or_none,
                    file_size=0,
                )
                await tl._write_local(image, "image", [])
                tl.layers[image.name] = image
            # durable before 201: the layers and the index are in remote storage
            await tl.upload()
            if tenant.cancelled:
                raise ApiError(503, "Shutting down")
            tenant.timelines[new_id] = tl
            self.walreceivers.start(tl)
            return json_response(tl.info(), status=201)
        finally:
            tenant.creating.discard(new_id)

    async def timeline_delete(self, request):
        tsid = str(parse_tsid(request.match_info["tenant_shard_id"]))
        slot = self.get_slot(tsid)
        if not isinstance(slot, TenantShard):
            if slot is IN_PROGRESS:
                raise ApiError(503, "Tenant not yet active")
            raise ApiError(412, "Precondition failed: Requested tenant is missing")
        tenant = await self.attached_tenant(slot.shard_id)
        timeline_id = timeline_id_of(request)
        if timeline_id in tenant.deleting:
            raise ApiError(409, "Conflict: Timeline deletion is already in progress")
        tl = tenant.timelines.get(timeline_id)
        if tl is None:
            raise ApiError(404, f"NotFound: Timeline {tsid}/{timeline_id} was not found")
        children = sorted(t.timeline_id for t in tenant.timelines.values() if t.ancestor_timeline_id == timeline_id)
        if children:
            raise ApiError(412, f"Precondition failed: Cannot delete timeline which has child timelines: {children}")
        tenant.deleting.add(timeline_id)
        del tenant.timelines[timeline_id]
        self.walreceivers.stop(tl)
        self.spawn(tenant.delete_timeline_remote(timeline_id), f"delete timeline {timeline_id}")
        return json_response(None, status=202)

    async def block_gc(self, request):
        tenant, tl = await self._timeline(request)
        async with tl.flush_lock:  # index uploads of one timeline never interleave
            if not tl.gc_blocking:
                tl.gc_blocking = {"started_at": now_rfc3339(), "reasons": ["Manual"]}
                await tl.upload_index()
        return json_response(None)

    async def unblock_gc(self, request):
        tenant, tl = await self._timeline(request)
        async with tl.flush_lock:
            if tl.gc_blocking:
                tl.gc_blocking = None
                await tl.upload_index()
        return json_response(None)

    async def do_gc(self, request):
        tenant, tl = await self._timeline(request)
        body = await read_json(request, required=False) or {}
        horizon = body.get("gc_horizon") if isinstance(body, dict) else None
        if tenant.mode != "AttachedSingle":
            # upstream skips GC in AttachedMulti/AttachedStale even when asked
            return json_response(tl.empty_gc_result())
        return json_response(await tl.gc(horizon=horizon))

    async def compact_info(self, request):
        await self._timeline(request)
        return json_response([])

    async def compact(self, request):
        _, tl = await self._timeline(request)
        try:
            await tl.compact(force=True)
        except LayerReadError as exc:
            raise ApiError(500, str(exc)) from None
        return json_response(None)

    async def compact_cancel(self, request):
        await self._timeline(request)
        return json_response(None)

    async def checkpoint(self, request):
        _, tl = await self._timeline(request)
        await tl.freeze_and_flush(upload=True)
        if bool_query(request, "compact"):
            await tl.compact()
        return json_response(None)

    # ---- sim-only ---------------------------------------------------------------------------------------------
    async def sim_evict(self, request):
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]), wait_active=False)
        evicted = sum(tl.evict_all() for tl in tenant.timelines.values())
        return json_response({"evicted": evicted})

    async def sim_walreceiver(self, request):
        body = await read_json(request)
        try:
            delay_ms = float(body.get("connect_delay_ms", 0))
        except (TypeError, ValueError, AttributeError):
            raise ApiError(400, "connect_delay_ms must be a number") from None
        if delay_ms < 0:
            raise ApiError(400, "connect_delay_ms must be >= 0")
        self.walreceivers.connect_delay_s = delay_ms / 1000.0
        return json_response({"connect_delay_ms": delay_ms})

    async def sim_synthetic(self, request):
        """Declared size and layer metadata without WAL, so thousands of tenants fit on a small machine."""
        tenant = await self.attached_tenant(parse_tsid(request.match_info["tenant_shard_id"]))
        body = await read_json(request)
        try:
            size = int(body.get("physical_size_bytes") or 0)
            count = max(int(body.get("layers") or 1), 1)
        except (TypeError, ValueError, AttributeError):
            raise ApiError(400, "physical_size_bytes and layers must be integers") from None
        wanted = body.get("timeline_id")
        timelines = [tl for tid, tl in tenant.timelines.items() if wanted in (None, tid)]
        if not timelines:
            raise ApiError(404, "NotFound: no timeline to make synthetic (create one first)")
        for tl in timelines:
            self.walreceivers.stop(tl)
            async with tl.flush_lock:
                for desc in list(tl.layers.values()):
                    if desc.resident:
                        tl._unlink_local(desc)
                tl.layers.clear()
                tl.synthetic = True
                per_layer = size // len(timelines) // count
                base = tl.disk_consistent_lsn
                for i in range(count):
                    desc = L.LayerDesc(
                        name=L.delta_layer_name(base + i * 0x100, base + (i + 1) * 0x100),
                        generation=tenant.generation,
                        shard=tenant.shard_index_or_none,
                        file_size=per_layer,
                        uploaded=True,
                        synthetic=True,
                    )
                    self.write_sparse(tl.local_path(desc), per_layer)
                    desc.resident = True
                    tl.layers[desc.name] = desc
                tl.synthetic_size = per_layer * count
                tl.disk_consistent_lsn = tl.last_record_lsn = base + count * 0x100
                await tl.upload_index()
        return json_response({"timelines": [tl.timeline_id for tl in timelines], "physical_size_bytes": size})

    # ---- page service (pg port) --------------------------------------------------------------------------------
    async def page(self, request):
        q = request.query
        try:
            shard_id = TenantShardId.parse(q.get("tenant_shard_id", ""))
            timeline_id = q.get("timeline_id", "").lower()
            key = q["key"]
            lsn = parse_lsn(q["lsn"]) if q.get("lsn") else None
            timeout = int(q.get("timeout_ms") or 10000) / 1000
        except (KeyError, ValueError) as exc:
            raise ApiError(400, f"invalid page request: {exc}") from None
        if not self.tenants_ready:
            raise ApiError(503, "pageserver is starting")
        tsid = str(shard_id)
        slot = self.slots.get(tsid)
        if slot is None or isinstance(slot, SecondaryShard):
            raise ApiError(404, f"tenant shard {tsid} is not attached here")
        if slot is IN_PROGRESS:
            raise ApiError(503, f"tenant shard {tsid} is being reconfigured")
        slot.activation_requested.set()
        if slot.slug in ("Attaching", "Activating"):
            raise ApiError(503, f"tenant shard {tsid} is activating")
        if slot.slug == "Broken":
            raise ApiError(500, f"tenant is broken: {slot.state['data']['reason']}")
        if slot.slug != "Active":
            raise ApiError(503, "Shutting down")
        tl = slot.timelines.get(timeline_id)
        if tl is None:
            raise ApiError(404, f"timeline {timeline_id} not found on {tsid}")
        if not key_in_shard(key, shard_id.shard_number, shard_id.shard_count, slot.stripe_size):
            raise ApiError(400, f"key {key!r} does not belong to shard {tsid}")
        if lsn is None:
            lsn = tl.last_record_lsn
        if not await tl.wait_lsn(lsn, timeout):
            raise ApiError(
                504, f"timed out waiting for LSN {format_lsn(lsn)} (last_record_lsn {format_lsn(tl.last_record_lsn)})"
            )
        try:
            value, _rec_lsn = await tl.get_value(key, lsn)
        except LayerReadError as exc:
            raise ApiError(500, str(exc)) from None
        return json_response({"key": key, "value": value, "lsn": format_lsn(lsn)})


async def create_node(ctx: NodeContext) -> Pageserver:
    return Pageserver(ctx)
