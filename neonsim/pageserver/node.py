"""The pageserver's tenant slots and their lifecycle: re-attach at start, location_config upserts, tenant delete and
reset, lookups with upstream's error mapping, the background ticker and utilization.

This module is the one owner of `slots`: every change of a slot goes through `_slot_change` (the slot reads
`InProgress` meanwhile, as in upstream `pageserver/src/tenant/mgr.rs`); `neonsim.pageserver.http` only reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Final

import aiohttp

from neonsim._durable import write_durably
from neonsim._server import ApiError, NodeContext
from neonsim.pageserver.config import ATTACHED_MODES
from neonsim.pageserver.deletion import DeletionQueue
from neonsim.pageserver.secondary import SecondaryShard
from neonsim.pageserver.services import HISTORY_LIMIT, NodeServices
from neonsim.pageserver.tenant import TenantShard
from neonsim.pageserver.walreceiver import WalReceivers
from neonsim.sharding import TenantShardId

log = logging.getLogger("neonsim.pageserver")

ACTIVE_TENANT_TIMEOUT_S = 5.0
TICK_INTERVAL_S = 0.2
USAGE_SCAN_INTERVAL_S = 1.0
SHUTDOWN_FLUSH_S = 5.0
MAX_SHARD_COUNT = 2500
CONFIG_FILE = "config-v1.json"


class InProgress:
    """Marker for a slot that a location change, reset or delete is changing."""

    attached = False
    slug = "InProgress"

    def __repr__(self) -> str:
        return "InProgress"


IN_PROGRESS: Final = InProgress()

Slot = TenantShard | SecondaryShard


def now_rfc3339() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class SlotChange:
    """One change of one tenant shard's slot, from `PageserverCore._slot_change`. `old` is the previous occupant
    (None if the slot was empty); `shut_down_old()` stops it; the change ends with `install(new)` or `remove()`.
    A change that ends without either (an error, a cancelled request) puts the old occupant back if it was not shut
    down yet, else leaves the slot empty."""

    def __init__(self, old: Slot | None):
        self.old = old
        self.old_shut_down = False
        self.decided = False
        self.new: Slot | None = None

    async def shut_down_old(self) -> None:
        if self.old is not None:
            await self.old.shutdown()
        self.old_shut_down = True

    def install(self, new: Slot) -> None:
        self.new, self.decided = new, True

    def remove(self) -> None:
        self.new, self.decided = None, True


class PageserverCore(NodeServices):
    """Slots and lifecycle; the HTTP handlers live in `neonsim.pageserver.http`."""

    def __init__(self, ctx: NodeContext):
        super().__init__(ctx)
        self.slots: dict[str, Slot | InProgress] = {}
        self.tenants_ready = False
        self.deletion_queue = DeletionQueue(self)
        self.walreceivers = WalReceivers(self)
        # Sim-only record of accepted location changes (GET /sim/pageserver), so tests can order runbook steps.
        self.location_history: list[dict] = []
        self._utilization: tuple[float, dict] | None = None

    # ---- sim-only records ---------------------------------------------------------------------------------
    def record_location(self, ts: float, shard_id: TenantShardId, conf: dict) -> None:
        self.location_history.append(
            {"ts": round(ts, 6), "tenant_shard_id": str(shard_id), "mode": conf.get("mode"),
             "generation": conf.get("generation"), "tenant_conf": dict(conf.get("tenant_conf") or {})}
        )  # fmt: skip
        del self.location_history[:-HISTORY_LIMIT]

    # ---- slot changes: the one place that writes `slots` after start -----------------------------------------
    @contextlib.asynccontextmanager
    async def _slot_change(self, tsid: str, busy: ApiError) -> AsyncIterator[SlotChange]:
        """Hold tsid's slot `InProgress` for one change; `busy` is raised when another change holds it."""
        slot = self.slots.get(tsid)
        if isinstance(slot, InProgress):
            raise busy
        self.slots[tsid] = IN_PROGRESS
        change = SlotChange(slot)
        try:
            yield change
        finally:
            if not change.decided:
                change.new = None if change.old_shut_down else change.old
            if change.new is None:
                self.slots.pop(tsid, None)
            else:
                self.slots[tsid] = change.new

    def _make_slot(self, tsid: str, location: dict, lazy: bool = False) -> Slot:
        """A new slot for tsid in `location` (persisted first); an attached one starts attaching."""
        shard_id = TenantShardId.parse(tsid)
        self.persist_location(tsid, location)
        if location["mode"] == "Secondary":
            return SecondaryShard(self, shard_id, location)
        tenant = TenantShard(self, shard_id, location, self.deletion_queue, self.walreceivers)
        tenant.spawn_attach(lazy)
        return tenant

    # ---- config persistence -------------------------------------------------------------------------
    def persist_location(self, tsid: str, location: dict) -> None:
        path = self.tenants_dir / tsid / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "timelines").mkdir(exist_ok=True)
        write_durably(path, json.dumps(location, indent=1))

    def load_local_configs(self) -> dict[str, dict]:
        configs = {}
        for tenant_dir in self.tenants_dir.iterdir():
            if not tenant_dir.is_dir():
                continue
            path = tenant_dir / CONFIG_FILE
            try:
                configs[tenant_dir.name] = json.loads(path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                # a half-created or purged-in-flight dir: nothing to load
                self.remove_tree(tenant_dir)
        return configs

    # ---- start: re-attach (upstream `libs/pageserver_api/src/upcall_api.rs`) ----------------------------
    async def start(self) -> None:
        self.local_bytes = await asyncio.to_thread(self.scan_local_bytes)
        local = self.load_local_configs()
        response = await self._re_attach(empty_local_disk=not local)
        self._apply_re_attach(local, response)
        self.tenants_ready = True
        self.spawn(self._ticker(), "ticker")
        self.spawn(self._usage_loop(), "disk usage")
        self.spawn(self.deletion_queue.run(), "deletion queue")

    async def _re_attach(self, empty_local_disk: bool) -> dict:
        node = self.ctx.node
        register = node.get("metadata") or {
            "host": "127.0.0.1",
            "port": node["pg_port"],
            "http_host": "127.0.0.1",
            "http_port": node["http_port"],
            "availability_zone_id": self.az,
        }
        if self.ctx.tls_enabled:
            # metadata.json's `https_port` (NodeMetadata in libs/pageserver_api/src/config.rs): where HTTPS
            # listens. In the sim that is the API port itself, which serves HTTPS only (contracts §5.6).
            register["https_port"] = node["http_port"]
        body: dict = {"node_id": self.node_id, "empty_local_disk": empty_local_disk}
        if node.get("self_register", True):
            # Upstream sends `register` only when metadata.json sits next to pageserver.toml
            # (pageserver/src/controller_upcall_client.rs); without it the controller must already know the node
            # (POST /control/v1/node), and re-attach is retried until it does.
            body["register"] = register
        delay = 0.2
        while True:
            try:
                async with self.ctx.session.post(
                    self.ctx.upcall_url + "re-attach",
                    json=body,
                    headers=self.ctx.auth_headers("generations_api"),
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    if resp.status == 200:
                        return await resp.json()
                    log.warning("re-attach: HTTP %s %s", resp.status, (await resp.text())[:200])
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("re-attach failed: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _apply_re_attach(self, local: dict[str, dict], response: dict) -> None:
        entries = {t["id"]: t for t in response.get("tenants") or []}
        for tsid, conf in local.items():
            entry = entries.pop(tsid, None)
            if entry is None:
                log.info("re-attach: %s not in response, removing local data", tsid)
                self.remove_tree(self.tenants_dir / tsid)
                continue
            self.slots[tsid] = self._make_slot(tsid, self._re_attach_location(conf, entry))
        for tsid, entry in entries.items():
            # the controller knows an attachment this disk lost: start it from remote storage
            try:
                shard_id = TenantShardId.parse(tsid)
            except ValueError:
                continue
            base: dict = {
                "shard_number": shard_id.shard_number,
                "shard_count": shard_id.shard_count,
                "shard_stripe_size": entry.get("stripe_size") or 0,
                "tenant_conf": {},
                "generation": None,
            }
            self.slots[tsid] = self._make_slot(tsid, self._re_attach_location(base, entry))

    @staticmethod
    def _re_attach_location(conf: dict, entry: dict) -> dict:
        location = dict(conf)
        persisted = conf.get("generation")
        gen = entry.get("gen")
        if entry.get("mode") == "Secondary" or gen is None or (persisted is not None and gen < persisted):
            location.update(mode="Secondary", generation=None, secondary_conf={"warm": True})
        else:
            location.update(mode="AttachedSingle", generation=gen, secondary_conf=None)
        if entry.get("stripe_size"):
            location["shard_stripe_size"] = entry["stripe_size"]
        return location

    async def stop(self) -> None:
        # graceful shutdown freezes and flushes open layers first (upstream's FreezeAndFlush), within a budget
        flushes = [
            tl.freeze_and_flush()
            for slot in self.slots.values()
            if isinstance(slot, TenantShard) and slot.slug == "Active"
            for tl in slot.timelines.values()
            if not tl.synthetic
        ]
        if flushes:
            try:
                await asyncio.wait_for(asyncio.gather(*flushes, return_exceptions=True), SHUTDOWN_FLUSH_S)
            except TimeoutError:
                log.warning("shutdown flush did not finish within %ss", SHUTDOWN_FLUSH_S)
        for slot in list(self.slots.values()):
            if not isinstance(slot, InProgress):
                await slot.shutdown()
        await self.cancel_tasks()

    def health(self) -> dict:
        return {"tenants": len(self.slots)}

    async def _usage_loop(self) -> None:
        """Re-measure the local files every second; the incremental counter is only a between-scans estimate."""
        while True:
            await asyncio.sleep(USAGE_SCAN_INTERVAL_S)
            try:
                self.local_bytes = await asyncio.to_thread(self.scan_local_bytes)
            except OSError as exc:
                log.warning("disk usage scan failed: %s", exc)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            now = time.monotonic()
            for slot in list(self.slots.values()):
                if not isinstance(slot, InProgress):
                    try:
                        slot.tick(now)
                    except Exception:
                        log.exception("tick of %s failed", getattr(slot, "tsid", "?"))

    # ---- location_config (upstream `pageserver/src/tenant/mgr.rs`, `upsert_location`) ----------------------
    def require_ready(self) -> None:
        if not self.tenants_ready:
            raise ApiError(503, "Tenant map is not yet initialized (re-attach pending)")

    async def upsert_location(
        self, shard_id: TenantShardId, conf: dict, flush_ms: int | None, lazy: bool
    ) -> dict | None:
        self.require_ready()
        tsid = str(shard_id)
        busy = ApiError(409, "Conflict: tenant shard is being modified (InProgress)")
        slot = self.slots.get(tsid)
        if isinstance(slot, InProgress):
            raise busy
        mode = conf["mode"]
        if mode == "Detached":
            if slot is None:
                self._purge_local(tsid)
                return None
            async with self._slot_change(tsid, busy) as change:
                await change.shut_down_old()
                self._purge_local(tsid)
                change.remove()
            return None
        if isinstance(slot, TenantShard) and mode in ATTACHED_MODES:
            if conf["generation"] < slot.generation:
                raise ApiError(400, f"Generation {conf['generation']} is less than existing {slot.generation}")
            if conf["generation"] == slot.generation:
                # same generation: the slot stays, only mode and tenant_conf change
                old_mode = slot.mode
                slot.set_location(conf)
                self.persist_location(tsid, conf)
                if mode == "AttachedStale" and old_mode in ATTACHED_MODES and flush_ms is not None:
                    await self._flush_with_limit(slot, flush_ms)
                await self._maybe_heatmap(slot, flush_ms)
                return self._location_response(shard_id, conf)
        if isinstance(slot, SecondaryShard) and mode == "Secondary":
            slot.set_location(conf)
            self.persist_location(tsid, conf)
            return self._location_response(shard_id, conf)
        # any other change (a higher generation, Secondary <-> attached, a new shard): a new slot
        async with self._slot_change(tsid, busy) as change:
            if isinstance(slot, TenantShard) and mode in ATTACHED_MODES and slot.mode != "AttachedStale":
                try:
                    await asyncio.wait_for(self.deletion_queue.flush(execute=True), 10)
                except Exception as exc:  # advisory
                    log.warning("deletion flush before replacing %s: %s", tsid, exc)
            await change.shut_down_old()
            new = self._make_slot(tsid, conf, lazy)
            change.install(new)
        await self._maybe_heatmap(new, flush_ms)
        return self._location_response(shard_id, conf)

    # ---- tenant delete and reset (upstream `pageserver/src/http/routes.rs`) ------------------------------------
    async def delete_tenant(self, shard_id: TenantShardId) -> None:
        """Shut the slot down, purge local data and delete the remote prefix; the slot is InProgress throughout."""
        self.require_ready()
        tsid = str(shard_id)
        async with self._slot_change(tsid, ApiError(503, "tenant deletion already in progress")) as change:
            await change.shut_down_old()
            self._purge_local(tsid)
            # a prefix delete: an unsharded id also matches every `{tenant_id}-NNCC` shard prefix
            await self.remote.delete_prefix(f"{self.remote.prefix}tenants/{tsid}")
            change.remove()

    async def reset_tenant(self, shard_id: TenantShardId, drop_cache: bool) -> None:
        """Shut an attached shard down and start it again from remote storage in the same location."""
        tsid = str(shard_id)
        slot = self.get_slot(tsid)
        if not isinstance(slot, TenantShard):
            raise ApiError(500, f"tenant {tsid} not found or not attached")
        async with self._slot_change(tsid, ApiError(503, "Tenant not yet active")) as change:
            await change.shut_down_old()
            if drop_cache:
                self.remove_tree(self.tenants_dir / tsid / "timelines")
            change.install(self._make_slot(tsid, slot.location))

    async def _flush_with_limit(self, tenant: TenantShard, flush_ms: int) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(tenant.flush_remote()), flush_ms / 1000)
        except TimeoutError:
            log.warning("flush of %s did not finish within %d ms; proceeding", tenant.tsid, flush_ms)
        except Exception as exc:
            raise ApiError(500, f"flush failed: {exc}") from None

    async def _maybe_heatmap(self, slot: Slot, flush_ms: int | None) -> None:
        if flush_ms is None or not isinstance(slot, TenantShard):
            return
        try:
            if slot.slug != "Active":
                await slot.wait_active(min(flush_ms / 1000, ACTIVE_TENANT_TIMEOUT_S))
            if slot.slug == "Active":
                await slot.upload_heatmap()
        except Exception as exc:  # only logged upstream
            log.warning("heatmap upload after location_config of %s failed: %s", slot.tsid, exc)

    def _location_response(self, shard_id: TenantShardId, conf: dict) -> dict:
        shards = [] if conf["mode"] == "Secondary" else [{"shard_id": str(shard_id), "node_id": self.node_id}]
        stripe = conf["shard_stripe_size"] if conf["shard_count"] > 1 else None
        return {"shards": shards, "stripe_size": stripe}

    def _purge_local(self, tsid: str) -> None:
        path = self.tenants_dir / tsid
        if not path.exists():
            return
        doomed = self.tenants_dir / f"{tsid}.___deleted.{time.monotonic_ns()}"
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        path.rename(doomed)
        self.local_bytes -= size
        self.spawn(asyncio.to_thread(shutil.rmtree, doomed, True), f"purge {tsid}")

    # ---- slot lookups with upstream's error mapping (`pageserver/src/http/routes.rs`) ----------------------
    def get_slot(self, tsid: str) -> Slot | InProgress | None:
        self.require_ready()
        return self.slots.get(tsid)

    async def attached_tenant(self, shard_id: TenantShardId, wait_active: bool = True) -> TenantShard:
        tsid = str(shard_id)
        slot = self.get_slot(tsid)
        if slot is None or isinstance(slot, SecondaryShard):
            raise ApiError(404, f"NotFound: tenant {tsid}")
        if isinstance(slot, InProgress):
            raise ApiError(503, "Tenant not yet active")
        if wait_active:
            await slot.wait_active(ACTIVE_TENANT_TIMEOUT_S)
            self.check_active(slot)
        return slot

    @staticmethod
    def check_active(tenant: TenantShard) -> None:
        slug = tenant.slug
        if slug == "Active":
            return
        if slug == "Broken":
            raise ApiError(500, f"tenant is broken: {tenant.state['data']['reason']}")
        if slug == "Stopping":
            raise ApiError(503, "Shutting down")
        raise ApiError(
            503,
            f"Timed out waiting {ACTIVE_TENANT_TIMEOUT_S:.0f}s for tenant active state. Latest state: {slug}",
        )

    # ---- utilization (upstream `pageserver/src/http/routes.rs`, `/v1/utilization`) -----------------------
    def utilization(self) -> dict:
        now = time.monotonic()
        if self._utilization is not None and now - self._utilization[0] < 1.0:
            return self._utilization[1]
        usage = max(self.local_bytes, 0)
        free = max(self.disk_capacity - usage, 0)
        wanted = 0
        for slot in self.slots.values():
            if isinstance(slot, TenantShard):
                wanted += slot.max_timeline_size()
            elif isinstance(slot, SecondaryShard):
                wanted += slot.wanted_bytes()
        shard_count = len(self.slots)
        pct = 100
        total = usage + free
        disk_score = wanted * 1_000_000 // total * pct // 100 if total else 0
        score = max(disk_score, shard_count * 1_000_000 // MAX_SHARD_COUNT)
        cap = (1 << 63) - 1
        data = {
            "disk_usage_bytes": min(usage, cap),
            "free_space_bytes": min(free, cap),
            "disk_wanted_bytes": min(wanted, cap),
            "disk_usable_pct": pct,
            "shard_count": shard_count,
            "max_shard_count": MAX_SHARD_COUNT,
            "utilization_score": min(score, cap),
            "captured_at": now_rfc3339(),
        }
        self._utilization = (now, data)
        return data
