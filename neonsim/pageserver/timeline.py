"""One timeline of an attached tenant shard: ingest, in-memory layer, flush, upload, compaction, GC, reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from neonsim.lsn import format_lsn, parse_lsn, record_size
from neonsim.pageserver import layers as L
from neonsim.pageserver.remote import RemoteNotFound, build_index_part, index_key, layer_key
from neonsim.sharding import TenantShardId, key_in_shard

if TYPE_CHECKING:
    from neonsim.pageserver.services import NodeServices

log = logging.getLogger("neonsim.pageserver.timeline")

INITIAL_SIZE_ATTEMPTS = 3
# Where a bootstrapped timeline starts (the end of "initdb"); safekeeper timelines start at or after it.
INITDB_LSN = 0x14EE150
DEFAULT_PG_VERSION = 17


class LayerReadError(Exception):
    """A layer needed for a read could not be loaded (missing locally and in S3): HTTP 500."""


class TimelineTenant(Protocol):
    """What a timeline (and the WAL receiver and deletion queue working on it) needs from the attached shard it
    belongs to, `neonsim.pageserver.tenant.TenantShard`; declared here so that imports point one way."""

    node: NodeServices
    shard_id: TenantShardId
    timelines: dict[str, Timeline]
    cancelled: bool

    @property
    def tsid(self) -> str: ...

    @property
    def generation(self) -> int: ...

    @property
    def stripe_size(self) -> int: ...

    @property
    def shard_index_or_none(self) -> str | None: ...

    @property
    def local_dir(self) -> Path: ...

    def conf_int(self, key: str) -> int: ...

    def conf_duration(self, key: str) -> float: ...

    def on_remote_consistent(self, tl: Timeline) -> None: ...

    def schedule_deletion(self, keys: list[str]) -> None: ...


class Timeline:
    def __init__(
        self,
        tenant: TimelineTenant,
        timeline_id: str,
        ancestor_timeline_id: str | None = None,
        ancestor_lsn: int = 0,
        initdb_lsn: int = INITDB_LSN,
        pg_version: int = DEFAULT_PG_VERSION,
    ):
        self.tenant = tenant
        self.timeline_id = timeline_id
        self.ancestor_timeline_id = ancestor_timeline_id
        self.ancestor_lsn = ancestor_lsn
        self.initdb_lsn = initdb_lsn
        self.pg_version = pg_version
        start = ancestor_lsn if ancestor_timeline_id else initdb_lsn
        self.last_record_lsn = start
        self.prev_record_lsn = 0
        self.disk_consistent_lsn = start
        self.remote_consistent_lsn = 0
        self.remote_consistent_lsn_visible = 0
        self.applied_gc_cutoff_lsn = 0
        self.gc_blocking: dict | None = None
        self.layers: dict[str, L.LayerDesc] = {}
        self._content: dict[str, L.LayerContent] = {}
        self.open_index: dict[str, list] = {}
        self.open_records: list[dict] = []
        self.open_bytes = 0
        self.open_since: float | None = None
        # frozen-but-not-yet-written in-memory layers: (lsn_start, lsn_end, key index), oldest first
        self.frozen: list[tuple[int, int, dict[str, list]]] = []
        self.flush_lock = asyncio.Lock()
        self._lsn_waiters: list[tuple[int, asyncio.Future]] = []
        self.flush_task: asyncio.Task | None = None
        self.walreceiver_task: asyncio.Task | None = None
        self.wal_source_connstr: str | None = None
        self.last_received_msg_lsn = 0
        self.last_received_msg_ts = 0
        self.walreceiver_status = "Not active"
        self.synthetic = False
        self.synthetic_size = 0
        self.state = "Active"
        # Logical size: the value lengths of every key this shard's timeline holds at last_record_lsn (ancestors
        # included), kept up to date by ingest. Accurate once the starting point is known: at once for a timeline
        # created empty here, after the initial calculation for one loaded from remote storage or branched.
        self.logical_sizes: dict[str, int] = {}
        self.logical_size_accurate = False
        self._logical_written: dict[str, int] = {}  # key -> end LSN of its newest record while not accurate
        self.logical_size_task: asyncio.Task | None = None
        self.index_dirty = True

    # ---- paths and identity -------------------------------------------------------------------
    @property
    def node(self) -> NodeServices:
        return self.tenant.node

    @property
    def local_dir(self) -> Path:
        return self.tenant.local_dir / "timelines" / self.timeline_id

    def local_path(self, desc: L.LayerDesc) -> Path:
        return self.local_dir / L.local_file_name(desc.name, desc.generation)

    def _remote_call(self, file_kind: str, op_kind: str) -> contextlib.AbstractContextManager[None]:
        """Count a remote storage call of this timeline (`neonsim.pageserver.metrics`)."""
        return self.node.remote_calls.call(self.tenant.shard_id, self.timeline_id, file_kind, op_kind)

    def remote_layer_key(self, desc: L.LayerDesc) -> str:
        tid = self.tenant.shard_id.tenant_id
        return layer_key(self.node.remote.prefix, tid, desc.shard, self.timeline_id, desc.name, desc.generation)

    @property
    def physical_size(self) -> int:
        if self.synthetic:
            return self.synthetic_size
        return sum(d.file_size for d in self.layers.values())

    # ---- ingest ----------------------------------------------------------------------------------
    def ingest(self, records: list[dict], end_lsn: int | None = None) -> None:
        """Apply streamed WAL records (already filtered to this shard) and advance last_record_lsn."""
        for rec in records:
            rec_end = parse_lsn(rec["end_lsn"])
            if rec_end <= self.last_record_lsn:
                continue  # duplicate after a reconnect
            rec_lsn = parse_lsn(rec["lsn"])
            entry = {"lsn": format_lsn(rec_lsn), "end_lsn": format_lsn(rec_end), "key": rec["key"]}
            entry["value"] = rec.get("value")
            self.open_records.append(entry)
            self.open_index.setdefault(rec["key"], []).append((rec_end, entry["value"], rec_lsn))
            self.open_bytes += record_size(rec["key"], entry["value"])
            self.logical_sizes[rec["key"]] = len(entry["value"] or "")
            if not self.logical_size_accurate:
                self._logical_written[rec["key"]] = rec_end
            if self.open_since is None:
                self.open_since = time.monotonic()
            self.prev_record_lsn = rec_lsn
            self.last_record_lsn = rec_end
        if end_lsn is not None and end_lsn > self.last_record_lsn:
            self.last_record_lsn = end_lsn
            if self.open_since is None:
                self.open_since = time.monotonic()
        self._wake_lsn_waiters()
        if self.open_bytes >= self.tenant.conf_int("checkpoint_distance"):
            self.schedule_flush()

    def _wake_lsn_waiters(self) -> None:
        if not self._lsn_waiters:
            return
        keep = []
        for lsn, fut in self._lsn_waiters:
            if self.last_record_lsn >= lsn:
                if not fut.done():
                    fut.set_result(True)
            else:
                keep.append((lsn, fut))
        self._lsn_waiters = keep

    async def wait_lsn(self, lsn: int, timeout: float) -> bool:
        if self.last_record_lsn >= lsn:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._lsn_waiters.append((lsn, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._lsn_waiters = [(x, f) for x, f in self._lsn_waiters if f is not fut]

    # ---- freeze / flush / upload -----------------------------------------------------------------
    def needs_timeout_flush(self, now: float) -> bool:
        if self.open_since is None or self.last_record_lsn <= self.disk_consistent_lsn:
            return False
        return now - self.open_since >= self.tenant.conf_duration("checkpoint_timeout")

    def upload_pending(self) -> bool:
        """Flushed state that has not reached remote storage (e.g. after S3 errors)."""
        if self.synthetic:
            return False
        return self.index_dirty or self.remote_consistent_lsn < self.disk_consistent_lsn

    def schedule_flush(self) -> None:
        if self.flush_task is None or self.flush_task.done():
            self.flush_task = self.node.spawn(self.freeze_and_flush(), f"flush {self.timeline_id}")

    async def freeze_and_flush(self, upload: bool = True) -> None:
        async with self.flush_lock:
            if self.tenant.cancelled:
                return
            if self.last_record_lsn > self.disk_consistent_lsn:
                records, index = self.open_records, self.open_index
                start, end = self.disk_consistent_lsn, self.last_record_lsn
                self.open_records, self.open_index, self.open_bytes, self.open_since = [], {}, 0, None
                frozen = (start, end, index)
                if records:
                    self.frozen.append(frozen)
                    desc = L.LayerDesc(
                        name=L.delta_layer_name(start, end),
                        generation=self.tenant.generation,
                        shard=self.tenant.shard_index_or_none,
                        file_size=0,
                        resident=True,
                        access_time=time.time(),
                    )
                    await self._write_local(desc, "delta", records)
                    self.layers[desc.name] = desc
                    self.index_dirty = True
                    self.frozen.remove(frozen)
                self.disk_consistent_lsn = end
            if upload:
                await self.upload()

    async def _write_local(self, desc: L.LayerDesc, kind: str, records: list[dict]) -> None:
        path = self.local_path(desc)
        path.parent.mkdir(parents=True, exist_ok=True)
        desc.file_size = await asyncio.to_thread(L.write_layer_file, path, kind, records)
        desc.resident, desc.residence_time = True, time.time()
        self.node.local_bytes += desc.file_size

    async def upload(self) -> None:
        """Upload every not-yet-uploaded layer, then the index; advance remote_consistent_lsn."""
        if self.tenant.cancelled:
            return
        remote = self.node.remote
        for desc in list(self.layers.values()):
            if not desc.uploaded and not desc.synthetic:
                data = await asyncio.to_thread(self.local_path(desc).read_bytes)
                with self._remote_call("layer", "upload"):
                    await remote.put_bytes(self.remote_layer_key(desc), data)
                desc.uploaded = True
        if self.tenant.cancelled:
            return
        dcl = self.disk_consistent_lsn
        if dcl > self.remote_consistent_lsn or not self.remote_consistent_lsn or self.index_dirty:
            await self.upload_index()
        self.tenant.on_remote_consistent(self)

    async def upload_index(self) -> None:
        dcl = self.disk_consistent_lsn
        index = build_index_part(
            self.layers,
            dcl,
            self.prev_record_lsn,
            self.ancestor_timeline_id,
            self.ancestor_lsn,
            self.applied_gc_cutoff_lsn,
            self.initdb_lsn,
            self.pg_version,
            self.gc_blocking,
            synthetic=self.synthetic,
        )
        remote = self.node.remote
        with self._remote_call("index", "upload"):
            await remote.put_json(index_key(remote.prefix, str(self.tenant.shard_id), self.timeline_id,
                                            self.tenant.generation), index)  # fmt: skip
        self.remote_consistent_lsn = max(self.remote_consistent_lsn, dcl)
        self.index_dirty = False

    # ---- reads ---------------------------------------------------------------------------------
    async def load_content(self, desc: L.LayerDesc) -> L.LayerContent:
        content = self._content.get(desc.name)
        if content is not None:
            desc.access_time = time.time()
            return content
        path = self.local_path(desc)
        data = None
        if desc.resident:
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:
                desc.resident = False
        if data is None:
            # on-demand download; a missing object makes the read fail (how misuse becomes visible)
            try:
                with self._remote_call("layer", "download"):
                    data, _ = await self.node.remote.get_bytes(self.remote_layer_key(desc))
            except RemoteNotFound:
                raise LayerReadError(
                    f"layer {desc.name}-{desc.generation:08x} of timeline {self.timeline_id} not found in remote "
                    "storage (on-demand download failed)"
                ) from None
            except Exception as exc:
                raise LayerReadError(f"on-demand download of {desc.name} failed: {exc}") from None
            path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(path.write_bytes, data)
            desc.resident, desc.residence_time = True, time.time()
            self.node.local_bytes += len(data)
            self.node.stats["on_demand_downloads"] += 1
        content = L.parse_layer_bytes(data)
        self._content[desc.name] = content
        desc.access_time = time.time()
        return content

    def _layers_for_read(self, lsn: int) -> list[L.LayerDesc]:
        eligible = [d for d in self.layers.values() if (d.lsn_start < lsn if d.kind == "delta" else d.lsn_end <= lsn)]
        # newest first; at equal upper bounds the image goes first (it is complete)
        eligible.sort(key=lambda d: (d.upper, d.kind == "image"), reverse=True)
        return eligible

    async def get_value(self, key: str, lsn: int) -> tuple[str | None, int]:
        """Value of key as of lsn and the LSN of the record that wrote it (0 if never written)."""
        for index in [self.open_index, *(f[2] for f in reversed(self.frozen))]:
            entries = index.get(key)
            if entries:
                for end_lsn, value, rec_lsn in reversed(entries):
                    if end_lsn <= lsn:
                        return value, rec_lsn
        for desc in self._layers_for_read(lsn):
            if desc.synthetic:
                continue
            content = await self.load_content(desc)
            found, value, rec_lsn = content.newest_at(key, lsn)
            if found:
                return value, rec_lsn
            if desc.kind == "image":
                return None, 0
        if self.ancestor_timeline_id:
            ancestor = self.tenant.timelines.get(self.ancestor_timeline_id)
            if ancestor is not None:
                return await ancestor.get_value(key, min(lsn, self.ancestor_lsn))
        return None, 0

    async def keyspace(self, lsn: int) -> set[str]:
        """Every key this shard's timeline knows at lsn (down to the newest image, plus the ancestor's)."""
        keys: set[str] = set()
        for index in [self.open_index, *(f[2] for f in self.frozen)]:
            keys.update(index)
        hit_image = False
        for desc in self._layers_for_read(lsn):
            if desc.synthetic:
                continue
            keys.update((await self.load_content(desc)).by_key)
            if desc.kind == "image":
                hit_image = True
                break
        if not hit_image and self.ancestor_timeline_id:
            ancestor = self.tenant.timelines.get(self.ancestor_timeline_id)
            if ancestor is not None:
                keys.update(await ancestor.keyspace(min(lsn, self.ancestor_lsn)))
        sid = self.tenant.shard_id
        return {k for k in keys if key_in_shard(k, sid.shard_number, sid.shard_count, self.tenant.stripe_size)}

    # ---- compaction and GC ----------------------------------------------------------------------
    async def compact(self, force: bool = False) -> dict:
        """Merge L0 deltas; create an image layer when enough deltas stack above the newest image."""
        result = {"l0_merged": 0, "images_created": 0}
        async with self.flush_lock:
            if self.tenant.cancelled or self.synthetic:
                return result
            removed: list[L.LayerDesc] = []
            l0 = sorted((d for d in self.layers.values() if d.kind == "delta" and d.level0), key=lambda d: d.lsn_start)
            threshold = 2 if force else max(self.tenant.conf_int("compaction_threshold"), 2)
            if len(l0) >= threshold:
                records: list[dict] = []
                for desc in l0:
                    content = await self.load_content(desc)
                    for key, entries in content.by_key.items():
                        for end_lsn, value, rec_lsn in entries:
                            records.append({"lsn": format_lsn(rec_lsn), "end_lsn": format_lsn(end_lsn), "key": key,
                                            "value": value})  # fmt: skip
                records.sort(key=lambda r: parse_lsn(r["end_lsn"]))
                merged = L.LayerDesc(
                    name=L.delta_layer_name(l0[0].lsn_start, l0[-1].lsn_end, level1=True),
                    generation=self.tenant.generation,
                    shard=self.tenant.shard_index_or_none,
                    file_size=0,
                    access_time=time.time(),
                )
                if merged.name not in self.layers:
                    await self._write_local(merged, "delta", records)
                    for desc in l0:
                        del self.layers[desc.name]
                    removed.extend(l0)
                    self.layers[merged.name] = merged
                    result["l0_merged"] = len(l0)
            images = [d for d in self.layers.values() if d.kind == "image"]
            newest_image = max((d.lsn_end for d in images), default=-1)
            deltas_above = [d for d in self.layers.values() if d.kind == "delta" and d.lsn_end > newest_image]
            image_threshold = 1 if force else max(self.tenant.conf_int("image_creation_threshold"), 1)
            image_lsn = self.disk_consistent_lsn
            if len(deltas_above) >= image_threshold and image_lsn > newest_image:
                records = []
                for key in sorted(await self.keyspace(image_lsn)):
                    value, rec_lsn = await self.get_value(key, image_lsn)
                    records.append({"lsn": format_lsn(rec_lsn), "end_lsn": format_lsn(rec_lsn), "key": key,
                                    "value": value})  # fmt: skip
                image = L.LayerDesc(
                    name=L.image_layer_name(image_lsn),
                    generation=self.tenant.generation,
                    shard=self.tenant.shard_index_or_none,
                    file_size=0,
                    access_time=time.time(),
                )
                await self._write_local(image, "image", records)
                self.layers[image.name] = image
                result["images_created"] = 1
            if removed or result["images_created"]:
                self.index_dirty = True
                await self.upload()
                await self._remove_layers(removed)
        return result

    def empty_gc_result(self) -> dict:
        return {"layers_total": len(self.layers), "layers_needed_by_cutoff": 0, "layers_needed_by_pitr": 0,
                "layers_needed_by_branches": 0, "layers_needed_by_leases": 0, "layers_not_updated": 0,
                "layers_removed": 0, "elapsed": 0}  # fmt: skip

    async def gc(self, horizon: int | None = None) -> dict:
        result = self.empty_gc_result()
        started = time.monotonic()
        async with self.flush_lock:
            if self.tenant.cancelled or self.synthetic or self.gc_blocking:
                return result
            horizon = self.tenant.conf_int("gc_horizon") if horizon is None else horizon
            cutoff = max(self.last_record_lsn - horizon, 0)
            branch_points = sorted(
                t.ancestor_lsn for t in self.tenant.timelines.values() if t.ancestor_timeline_id == self.timeline_id
            )
            retain = sorted({*branch_points, cutoff})
            images = [d for d in self.layers.values() if d.kind == "image"]
            removable = []
            for desc in self.layers.values():
                bound = next((r for r in retain if r >= desc.upper), None)
                if bound is None:
                    result["layers_needed_by_cutoff"] += 1
                    continue
                covered = any(img is not desc and desc.upper <= img.lsn_end <= bound for img in images)
                if covered:
                    removable.append(desc)
                elif bound in branch_points:
                    result["layers_needed_by_branches"] += 1
                else:
                    result["layers_not_updated"] += 1
            for desc in removable:
                del self.layers[desc.name]
            self.applied_gc_cutoff_lsn = max(self.applied_gc_cutoff_lsn, min(cutoff, self.disk_consistent_lsn))
            if removable:
                await self.upload_index()
                await self._remove_layers(removable)
            result["layers_removed"] = len(removable)
        result["elapsed"] = int((time.monotonic() - started) * 1000)
        return result

    async def _remove_layers(self, removed: list[L.LayerDesc]) -> None:
        """Delete local files now; remote objects go through the tenant's deletion path (upstream
        `docs/rfcs/025-generation-numbers.md`)."""
        keys = []
        for desc in removed:
            self._content.pop(desc.name, None)
            if desc.resident:
                self._unlink_local(desc)
            if desc.uploaded and not desc.synthetic:
                keys.append(self.remote_layer_key(desc))
        if keys:
            self.tenant.schedule_deletion(keys)

    def _unlink_local(self, desc: L.LayerDesc) -> None:
        try:
            size = self.local_path(desc).stat().st_size
            os.unlink(self.local_path(desc))
            self.node.local_bytes -= size
        except FileNotFoundError:
            pass
        desc.resident = False

    def evict_all(self, accessed_before: float | None = None) -> int:
        """Drop uploaded resident layers (all, or those not accessed since a time) from disk and the read cache."""
        evicted = 0
        for desc in self.layers.values():
            if accessed_before is not None and desc.access_time >= accessed_before:
                continue
            if desc.resident and desc.uploaded and not desc.synthetic:
                self._unlink_local(desc)
                self._content.pop(desc.name, None)
                evicted += 1
        return evicted

    # ---- logical size (upstream `pageserver/src/http/routes.rs`, `build_timeline_info`) ---------------------
    async def _logical_sizes_at(self, lsn: int) -> dict[str, int]:
        """Every key's value length at lsn, read through the layers (on-demand downloads included)."""
        sizes: dict[str, int] = {}
        for key in await self.keyspace(lsn):
            value, _ = await self.get_value(key, lsn)
            sizes[key] = len(value or "")
        return sizes

    def _adopt_logical_sizes(self, sizes: dict[str, int], lsn: int) -> None:
        """Make `sizes` (computed at lsn) the starting point of the incremental size, keeping what ingest wrote
        after lsn meanwhile."""
        if self.logical_size_accurate:
            return
        for key, end_lsn in self._logical_written.items():
            if end_lsn > lsn:
                sizes[key] = self.logical_sizes[key]
        self.logical_sizes, self._logical_written, self.logical_size_accurate = sizes, {}, True

    async def non_incremental_logical_size(self) -> int:
        """`include-non-incremental-logical-size`: the size computed from the layers at last_record_lsn, now. It also
        completes a pending initial calculation, so the two sizes agree from then on."""
        if self.synthetic:
            return self.synthetic_size
        lsn = self.last_record_lsn
        sizes = await self._logical_sizes_at(lsn)
        self._adopt_logical_sizes(dict(sizes), lsn)
        return sum(sizes.values())

    def start_initial_logical_size(self) -> asyncio.Task | None:
        """Start the background initial logical size calculation of a loaded or branched timeline; the running task,
        or None when the size is already accurate. Upstream starts it soon after activation; the sim starts it at
        the first timeline detail or list request, so that an attach alone downloads no layers (reads and
        compaction stay the first to need them)."""
        if self.logical_size_accurate or self.synthetic:
            return None
        if self.logical_size_task is None or self.logical_size_task.done():
            self.logical_size_task = self.node.spawn(
                self._initial_logical_size(), f"initial logical size {self.timeline_id}"
            )
        return self.logical_size_task

    async def _initial_logical_size(self) -> None:
        for attempt in range(INITIAL_SIZE_ATTEMPTS):
            async with self.node.logical_size_semaphore:
                if self.logical_size_accurate or self.tenant.cancelled:
                    return
                lsn = self.last_record_lsn
                try:
                    sizes = await self._logical_sizes_at(lsn)
                except LayerReadError as exc:  # e.g. a layer compacted away under the walk: try again
                    log.warning("initial logical size of %s (attempt %d): %s", self.timeline_id, attempt + 1, exc)
                else:
                    self._adopt_logical_sizes(sizes, lsn)
                    return
            await asyncio.sleep(1.0)

    async def wait_initial_logical_size(self, timeout: float) -> None:
        """`force-await-initial-logical-size`: wait (bounded) until the incremental size is accurate."""
        task = self.start_initial_logical_size()
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout)

    # ---- API views ---------------------------------------------------------------------------------
    def _visible(self, desc: L.LayerDesc) -> bool:
        """Whether a read can still reach the layer (upstream's layer visibility): at the tip or at a child's branch
        point, it is not below a newer image layer the read stops at."""
        read_points = [self.last_record_lsn]
        read_points += [
            t.ancestor_lsn for t in self.tenant.timelines.values() if t.ancestor_timeline_id == self.timeline_id
        ]
        images = [d.lsn_end for d in self.layers.values() if d.kind == "image" and d is not desc]
        for point in read_points:
            readable = desc.lsn_end <= point if desc.kind == "image" else desc.lsn_start < point
            if readable and not any(desc.upper <= image <= point for image in images):
                return True
        return False

    def layer_map(self) -> dict:
        """LayerMapInfo (upstream `libs/pageserver_api/src/models.rs`): in-memory layers (the open one, then the
        frozen ones) and historic layers, serde-tagged by `kind`; access times in milliseconds since the epoch."""
        in_memory: list[dict] = []
        if self.open_records:
            start = self.frozen[-1][1] if self.frozen else self.disk_consistent_lsn
            in_memory.append({"kind": "Open", "lsn_start": format_lsn(start)})
        for start, end, _index in self.frozen:
            in_memory.append({"kind": "Frozen", "lsn_start": format_lsn(start), "lsn_end": format_lsn(end)})
        historic: list[dict] = []
        for desc in sorted(self.layers.values(), key=lambda d: (d.lsn_end, d.name)):
            info = {
                "kind": "Delta" if desc.kind == "delta" else "Image",
                "layer_file_name": desc.name,
                "layer_file_size": desc.file_size,
                "lsn_start": format_lsn(desc.lsn_start),
                "remote": not desc.resident,
                "access_stats": {
                    "access_time": int(desc.access_time * 1000),
                    "residence_time": int(desc.residence_time * 1000),
                    "visible": self._visible(desc),
                },
            }
            if desc.kind == "delta":  # image layers carry no lsn_end and no l0
                info["lsn_end"] = format_lsn(desc.lsn_end)
                info["l0"] = desc.level0
            historic.append(info)
        return {"in_memory_layers": in_memory, "historic_layers": historic}

    def info(self, non_incremental_logical_size: int | None = None) -> dict:
        min_readable = self.applied_gc_cutoff_lsn
        logical = sum(self.logical_sizes.values()) if not self.synthetic else self.synthetic_size
        state = self.state if self.state != "Broken" else {"Broken": {"reason": "broken", "backtrace": ""}}
        return {
            "tenant_id": str(self.tenant.shard_id),
            "timeline_id": self.timeline_id,
            "ancestor_timeline_id": self.ancestor_timeline_id,
            "ancestor_lsn": format_lsn(self.ancestor_lsn) if self.ancestor_lsn else None,
            "last_record_lsn": format_lsn(self.last_record_lsn),
            "prev_record_lsn": format_lsn(self.prev_record_lsn) if self.prev_record_lsn else None,
            "disk_consistent_lsn": format_lsn(self.disk_consistent_lsn),
            "remote_consistent_lsn": format_lsn(self.remote_consistent_lsn),
            "remote_consistent_lsn_visible": format_lsn(self.remote_consistent_lsn_visible),
            "initdb_lsn": format_lsn(self.initdb_lsn),
            "applied_gc_cutoff_lsn": format_lsn(self.applied_gc_cutoff_lsn),
            "min_readable_lsn": format_lsn(min_readable),
            "current_logical_size": logical,
            "current_logical_size_is_accurate": self.synthetic or self.logical_size_accurate,
            "current_physical_size": self.physical_size,
            "current_logical_size_non_incremental": non_incremental_logical_size,
            "directory_entries_counts": [],
            "pitr_history_size": 0,
            "within_ancestor_pitr": False,
            "timeline_dir_layer_file_size_sum": None,
            "wal_source_connstr": self.wal_source_connstr,
            "last_received_msg_lsn": format_lsn(self.last_received_msg_lsn) if self.last_received_msg_lsn else None,
            "last_received_msg_ts": self.last_received_msg_ts or None,
            "pg_version": self.pg_version,
            "state": state,
            "walreceiver_status": self.walreceiver_status,
            "is_archived": False,
            "is_invisible": False,
            "rel_size_migration": None,
            "rel_size_migrated_at": None,
        }
