"""An attached tenant shard: activation from remote storage, mode rules, deletions, heatmaps, timelines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from neonsim.lsn import format_lsn, parse_lsn
from neonsim.pageserver import layers as L
from neonsim.pageserver.config import effective_config, parse_duration
from neonsim.pageserver.remote import heatmap_key, timeline_prefix
from neonsim.pageserver.timeline import Timeline
from neonsim.sharding import TenantShardId

if TYPE_CHECKING:
    from neonsim.pageserver.node import Pageserver

log = logging.getLogger("neonsim.pageserver.tenant")

UPLOAD_RETRY_S = 1.0


class TenantShard:
    """Attached slot (AttachedSingle/Multi/Stale). Secondary slots are `secondary.SecondaryShard`."""

    attached = True

    def __init__(self, node: Pageserver, shard_id: TenantShardId, location: dict):
        self.node = node
        self.shard_id = shard_id
        self.location = location
        self.state: dict = {"slug": "Attaching"}
        self.timelines: dict[str, Timeline] = {}
        self.cancelled = False
        self.active_event = asyncio.Event()
        self.activation_requested = asyncio.Event()  # a lazy attach jumps the warm-up queue when set
        self.held_deletions: list[str] = []
        self.creating: set[str] = set()
        self.deleting: set[str] = set()
        now = time.monotonic()
        self.single_since = now if self.mode == "AttachedSingle" else None
        self.last_compaction = now
        self.last_gc = now
        self.last_heatmap = now
        self.next_upload_retry = now + UPLOAD_RETRY_S
        self.last_eviction = now
        self.background_task: asyncio.Task | None = None
        self.attach_task: asyncio.Task | None = None
        self._conf_cache: dict | None = None

    # ---- identity and config ----------------------------------------------------------------------
    @property
    def tsid(self) -> str:
        return str(self.shard_id)

    @property
    def mode(self) -> str:
        return self.location["mode"]

    @property
    def generation(self) -> int:
        return self.location["generation"]

    @property
    def stripe_size(self) -> int:
        return self.location.get("shard_stripe_size") or 0

    @property
    def shard_index_or_none(self) -> str | None:
        return None if self.shard_id.is_unsharded else self.shard_id.shard_index

    @property
    def local_dir(self) -> Path:
        return self.node.tenants_dir / self.tsid

    @property
    def synthetic(self) -> bool:
        return bool(self.timelines) and all(t.synthetic for t in self.timelines.values())

    def effective_config(self) -> dict:
        if self._conf_cache is None:
            self._conf_cache = effective_config(self.node.tenant_defaults, self.location.get("tenant_conf") or {})
        return self._conf_cache

    def conf_int(self, key: str) -> int:
        return int(self.effective_config().get(key) or 0)

    def conf_duration(self, key: str) -> float:
        try:
            return parse_duration(self.effective_config().get(key) or "0s")
        except ValueError:
            return 0.0

    def set_location(self, location: dict) -> None:
        """Same-generation fast path: only mode and tenant_conf change (upstream `pageserver/src/tenant/mgr.rs`)."""
        old_mode = self.mode
        self.location = location
        self._conf_cache = None
        if location["mode"] == "AttachedSingle" and old_mode != "AttachedSingle":
            self.single_since = time.monotonic()
            self.release_held_deletions()
        elif location["mode"] != "AttachedSingle":
            self.single_since = None

    # ---- state ------------------------------------------------------------------------------------------
    @property
    def slug(self) -> str:
        return self.state["slug"]

    def set_broken(self, reason: str) -> None:
        log.error("tenant %s broken: %s", self.tsid, reason)
        self.state = {"slug": "Broken", "data": {"reason": reason, "backtrace": ""}}
        self.active_event.set()

    def attachment_status(self) -> dict:
        if self.slug == "Active":
            return {"slug": "attached"}
        if self.slug == "Broken":
            return {"slug": "failed", "data": {"reason": self.state["data"]["reason"]}}
        return {"slug": "maybe"}

    # ---- activation ---------------------------------------------------------------------------------------
    def spawn_attach(self, lazy: bool) -> None:
        self.attach_task = self.node.spawn(self._attach(lazy), f"attach {self.tsid}")

    async def _attach(self, lazy: bool) -> None:
        try:
            if lazy:
                # queued behind the warm-up limit unless someone waits for this tenant
                acquire = asyncio.ensure_future(self.node.warmup_semaphore.acquire())
                jump = asyncio.ensure_future(self.activation_requested.wait())
                done, _ = await asyncio.wait({acquire, jump}, return_when=asyncio.FIRST_COMPLETED)
                jump.cancel()
                if acquire in done:
                    self.node.warmup_semaphore.release()
                else:
                    acquire.cancel()
            await self._load_from_remote()
            if self.cancelled:
                return
            self.state = {"slug": "Activating", "data": "Attaching"}
            for tl in self.timelines.values():
                self.node.walreceivers.start(tl)
            self.state = {"slug": "Active"}
            self.active_event.set()
            log.info("tenant %s active in generation %s mode %s", self.tsid, self.generation, self.mode)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("attach of %s failed", self.tsid)
            self.set_broken(f"attach failed: {type(exc).__name__}: {exc}")

    async def _load_from_remote(self) -> None:
        """Download the newest index_part <= own generation per timeline (upstream
        `pageserver/src/tenant/remote_timeline_client.rs`); reconcile local files."""
        remote = self.node.remote
        timeline_ids = await remote.list_dirs(f"{remote.prefix}tenants/{self.tsid}/timelines/")
        loaded: dict[str, Timeline] = {}
        for timeline_id in timeline_ids:
            found = await remote.download_index(self.tsid, timeline_id, self.generation)
            if found is None:
                continue
            index, _gen = found
            if index.get("deleted_at"):
                continue
            loaded[timeline_id] = self.timeline_from_index(timeline_id, index)
        self._reconcile_local(loaded)
        self.timelines.update(loaded)

    def timeline_from_index(self, timeline_id: str, index: dict) -> Timeline:
        md = index.get("metadata_bytes") or {}
        ancestor = md.get("ancestor_timeline")
        tl = Timeline(
            self,
            timeline_id,
            ancestor_timeline_id=ancestor,
            ancestor_lsn=parse_lsn(md.get("ancestor_lsn")) if ancestor else 0,
            initdb_lsn=parse_lsn(md.get("initdb_lsn")),
            pg_version=md.get("pg_version") or 17,
        )
        dcl = parse_lsn(index["disk_consistent_lsn"])
        tl.disk_consistent_lsn = tl.last_record_lsn = dcl
        tl.prev_record_lsn = parse_lsn(md.get("prev_record_lsn"))
        # the loaded index was valid in an earlier generation: it is both projected and visible
        tl.remote_consistent_lsn = tl.remote_consistent_lsn_visible = dcl
        tl.applied_gc_cutoff_lsn = parse_lsn(md.get("latest_gc_cutoff_lsn"))
        tl.gc_blocking = index.get("gc_blocking")
        tl.synthetic = bool(index.get("neonsim_synthetic"))
        for name, meta in (index.get("layer_metadata") or {}).items():
            desc = L.LayerDesc(
                name=name,
                generation=int(meta.get("generation") or 0),
                shard=meta.get("shard"),
                file_size=int(meta.get("file_size") or 0),
                uploaded=True,
                synthetic=tl.synthetic,
            )
            tl.layers[name] = desc
        if tl.synthetic:
            tl.synthetic_size = sum(d.file_size for d in tl.layers.values())
        tl.index_dirty = False
        return tl

    def _reconcile_local(self, timelines: dict[str, Timeline]) -> None:
        """Keep local layer files the index references (same name and generation); delete the rest."""
        tl_root = self.local_dir / "timelines"
        if not tl_root.is_dir():
            return
        for tl_dir in tl_root.iterdir():
            tl = timelines.get(tl_dir.name)
            if tl is None:
                self.node.remove_tree(tl_dir)
                continue
            for path in tl_dir.iterdir():
                parsed = L.parse_local_file_name(path.name)
                desc = tl.layers.get(parsed[0]) if parsed else None
                if desc is not None and desc.generation == parsed[1]:
                    desc.resident = True
                    desc.access_time = path.stat().st_mtime
                else:
                    self.node.remove_file(path)

    async def wait_active(self, timeout: float) -> None:
        self.activation_requested.set()
        if self.slug in ("Active", "Broken"):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.active_event.wait(), timeout)

    # ---- remote consistent LSN and deletions ----------------------------------------------------------------
    # Upstream: `docs/rfcs/025-generation-numbers.md`; what each mode allows: `pageserver/src/tenant/config.rs`.
    def on_remote_consistent(self, tl: Timeline) -> None:
        if self.mode == "AttachedStale" or self.cancelled:
            return  # Stale: updates are dropped, the visible LSN freezes
        self.node.deletion_queue.push_lsn(self, tl)

    def schedule_deletion(self, keys: list[str]) -> None:
        if self.mode == "AttachedSingle":
            self.node.deletion_queue.push(self.tsid, self.generation, keys)
        else:
            self.held_deletions.extend(keys)  # Multi/Stale: held in memory until AttachedSingle

    def release_held_deletions(self) -> None:
        if self.held_deletions:
            keys, self.held_deletions = self.held_deletions, []
            self.node.deletion_queue.push(self.tsid, self.generation, keys)

    # ---- background work -----------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Called by the node ticker; starts due periodic work (one job at a time per tenant)."""
        if self.slug != "Active" or self.cancelled or not self.timelines:
            return
        if self.mode != "AttachedStale":  # Stale skips housekeeping (no idle-layer freeze)
            for tl in self.timelines.values():
                if tl.needs_timeout_flush(now):
                    tl.schedule_flush()
        if now >= self.next_upload_retry:
            # uploads that failed (S3 errors) are retried even when no new WAL arrives
            self.next_upload_retry = now + UPLOAD_RETRY_S
            for tl in self.timelines.values():
                if tl.upload_pending() and (tl.flush_task is None or tl.flush_task.done()):
                    tl.schedule_flush()
        self._maybe_evict(now)
        if self.background_task is not None and not self.background_task.done():
            return
        if self.synthetic:
            return
        jobs = []
        # Compaction runs in AttachedSingle and AttachedMulti, GC only in AttachedSingle (mode table §1.3). Each
        # iteration started is recorded (sim-only, GET /sim/background).
        compaction_period = self.conf_duration("compaction_period")
        if self.mode != "AttachedStale" and compaction_period > 0 and now - self.last_compaction >= compaction_period:
            self.last_compaction = now
            jobs.append(self.compact_all)
            self.node.record_background(self, "compaction")
        gc_period = self.conf_duration("gc_period")
        if (
            self.mode == "AttachedSingle"
            and gc_period > 0
            and self.conf_int("gc_horizon") > 0
            and self.single_since is not None
            and now - self.single_since >= self.conf_duration("lsn_lease_length")
            and now - self.last_gc >= gc_period
        ):
            self.last_gc = now
            jobs.append(self.gc_all)
            self.node.record_background(self, "gc")
        heatmap_period = self.conf_duration("heatmap_period")
        if self.mode != "AttachedStale" and heatmap_period > 0 and now - self.last_heatmap >= heatmap_period:
            self.last_heatmap = now
            jobs.append(self.upload_heatmap)
        if jobs:
            self.background_task = self.node.spawn(self._run_jobs(jobs), f"background {self.tsid}")

    def _maybe_evict(self, now: float) -> None:
        """eviction_policy LayerAccessThreshold: every `period`, evict layers not accessed for `threshold`."""
        policy = self.effective_config().get("eviction_policy") or {}
        if policy.get("kind") != "LayerAccessThreshold":
            return
        try:
            period, threshold = parse_duration(policy["period"]), parse_duration(policy["threshold"])
        except (KeyError, ValueError):
            return
        if period <= 0 or now - self.last_eviction < period:
            return
        self.last_eviction = now
        cutoff = time.time() - threshold
        for tl in self.timelines.values():
            tl.evict_all(accessed_before=cutoff)

    async def _run_jobs(self, jobs) -> None:
        for job in jobs:
            if self.cancelled:
                return
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("background %s on %s failed: %s", job.__name__, self.tsid, exc)

    async def compact_all(self, force: bool = False) -> None:
        for tl in list(self.timelines.values()):
            await tl.compact(force=force)

    async def gc_all(self) -> None:
        if self.mode != "AttachedSingle":
            return
        for tl in list(self.timelines.values()):
            await tl.gc()

    async def flush_remote(self) -> None:
        """freeze + flush every timeline, upload, then flush the deletion queue (flush_ms path)."""
        for tl in list(self.timelines.values()):
            await tl.freeze_and_flush(upload=True)
        await self.node.deletion_queue.flush(execute=True)

    # ---- heatmap -------------------------------------------------------------------------------------------
    def heatmap(self) -> dict:
        timelines = []
        for tl in self.timelines.values():
            layers = []
            for desc in sorted(tl.layers.values(), key=lambda d: d.name):
                if (desc.resident and desc.uploaded) or desc.synthetic:
                    layers.append(
                        {
                            "name": desc.name,
                            "metadata": desc.metadata(),
                            "access_time": int(desc.access_time or time.time()),
                            "cold": False,
                        }
                    )
            entry = {"timeline_id": tl.timeline_id, "layers": layers}
            if tl.synthetic:
                entry["neonsim_synthetic"] = True  # sim-only: layers without S3 objects
            timelines.append(entry)
        period = self.conf_duration("heatmap_period")
        return {
            "generation": self.generation,
            "timelines": timelines,
            "upload_period_ms": int(period * 1000) if period > 0 else None,
        }

    async def upload_heatmap(self) -> None:
        remote = self.node.remote
        await remote.put_json(heatmap_key(remote.prefix, self.tsid), self.heatmap())
        self.node.stats["heatmap_uploads"] += 1

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Stop ingest and background work. Held deletions are dropped (they only leak objects)."""
        self.cancelled = True
        self.state = {"slug": "Stopping", "data": {}}
        self.active_event.set()
        self.held_deletions = []
        tasks = [t for t in (self.attach_task, self.background_task) if t is not None and not t.done()]
        for tl in self.timelines.values():
            self.node.walreceivers.stop(tl)
            if tl.flush_task is not None and not tl.flush_task.done():
                tasks.append(tl.flush_task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def info(self, detail: bool = False) -> dict:
        data = {
            "id": self.tsid,
            "state": self.state,
            "current_physical_size": None,
            "attachment_status": self.attachment_status(),
            "generation": self.generation,
        }
        if detail:
            data["current_physical_size"] = sum(tl.physical_size for tl in self.timelines.values())
            data["walredo"] = None
            data["timelines"] = sorted(self.timelines)
            blocked = [tl.timeline_id for tl in self.timelines.values() if tl.gc_blocking]
            if blocked:
                data["gc_blocking"] = f"BlockingReasons {{ timelines: {len(blocked)}, reasons: EnumSet(Manual) }}"
        return data

    def max_timeline_size(self) -> int:
        return max((tl.physical_size for tl in self.timelines.values()), default=0)

    async def delete_timeline_remote(self, timeline_id: str) -> None:
        remote = self.node.remote
        try:
            await remote.delete_prefix(timeline_prefix(remote.prefix, self.tsid, timeline_id))
        finally:
            self.deleting.discard(timeline_id)
        self.node.remove_tree(self.local_dir / "timelines" / timeline_id)

    def lsn_info(self) -> dict:
        return {tl_id: format_lsn(tl.last_record_lsn) for tl_id, tl in self.timelines.items()}
