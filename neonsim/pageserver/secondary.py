"""Secondary locations: heatmap-driven downloads of layers into local disk (upstream
`pageserver/src/tenant/secondary.rs`)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neonsim.pageserver import layers as L
from neonsim.pageserver.remote import RemoteNotFound, heatmap_key, layer_key
from neonsim.sharding import TenantShardId

if TYPE_CHECKING:
    from neonsim.pageserver.services import NodeServices

log = logging.getLogger("neonsim.pageserver.secondary")

DEFAULT_DOWNLOAD_PERIOD_S = 60.0


def rfc3339(dt) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class SecondaryShard:
    attached = False
    slug = "Secondary"

    def __init__(self, node: NodeServices, shard_id: TenantShardId, location: dict):
        self.node = node
        self.shard_id = shard_id
        self.location = location
        self.progress: dict[str, Any] = {
            "heatmap_mtime": None,
            "layers_downloaded": 0,
            "layers_total": 0,
            "bytes_downloaded": 0,
            "bytes_total": 0,
        }
        self.download_task: asyncio.Task | None = None
        self.last_download = 0.0
        self.period = DEFAULT_DOWNLOAD_PERIOD_S
        self.cancelled = False

    @property
    def tsid(self) -> str:
        return str(self.shard_id)

    @property
    def mode(self) -> str:
        return "Secondary"

    @property
    def local_dir(self) -> Path:
        return self.node.tenants_dir / self.tsid

    @property
    def warm(self) -> bool:
        return bool((self.location.get("secondary_conf") or {}).get("warm"))

    def set_location(self, location: dict) -> None:
        self.location = location

    def resident_bytes(self) -> int:
        root = self.local_dir / "timelines"
        if not root.is_dir():
            return 0
        return sum(p.stat().st_size for p in root.glob("*/*") if p.is_file())

    def wanted_bytes(self) -> int:
        if self.progress["heatmap_mtime"] is not None:
            return self.progress["bytes_total"]
        return self.resident_bytes()

    def start_download(self) -> asyncio.Task:
        if self.download_task is None or self.download_task.done():
            self.download_task = self.node.spawn(self._download_pass(), f"secondary download {self.tsid}")
        return self.download_task

    def tick(self, now: float) -> None:
        if self.warm and not self.cancelled and now - self.last_download >= self.period:
            self.start_download()

    async def _download_pass(self) -> None:
        self.last_download = time.monotonic()
        remote = self.node.remote
        try:
            data, mtime = await remote.get_bytes(heatmap_key(remote.prefix, self.tsid))
        except RemoteNotFound:
            return  # no heatmap yet: nothing to warm (heatmap_mtime stays null)
        heatmap = json.loads(data)
        if heatmap.get("upload_period_ms"):
            self.period = heatmap["upload_period_ms"] / 1000
        wanted: dict[str, dict[str, dict]] = {}
        synthetic: set[str] = set()
        for tl in heatmap.get("timelines", []):
            wanted[tl["timeline_id"]] = {layer["name"]: layer for layer in tl.get("layers", [])}
            if tl.get("neonsim_synthetic"):
                synthetic.add(tl["timeline_id"])
        total_layers = sum(len(v) for v in wanted.values())
        total_bytes = sum(layer["metadata"]["file_size"] for v in wanted.values() for layer in v.values())
        self.progress = {
            "heatmap_mtime": rfc3339(mtime) if mtime else None,
            "layers_downloaded": 0,
            "layers_total": total_layers,
            "bytes_downloaded": 0,
            "bytes_total": total_bytes,
        }
        self._delete_unreferenced(wanted)
        for timeline_id, layers in wanted.items():
            tl_dir = self.local_dir / "timelines" / timeline_id
            tl_dir.mkdir(parents=True, exist_ok=True)
            for name, layer in layers.items():
                if self.cancelled:
                    return
                meta = layer["metadata"]
                gen = int(meta.get("generation") or 0)
                path = tl_dir / L.local_file_name(name, gen)
                if not path.exists():
                    if timeline_id in synthetic:
                        self.node.write_sparse(path, meta["file_size"])  # declared-only layer: no object
                    else:
                        key = layer_key(remote.prefix, self.shard_id.tenant_id, meta.get("shard"), timeline_id, name,
                                        gen)  # fmt: skip
                        try:
                            body, _ = await remote.get_bytes(key)
                        except RemoteNotFound:
                            log.warning("secondary %s: layer %s missing in remote storage", self.tsid, name)
                            continue
                        await asyncio.to_thread(path.write_bytes, body)
                        self.node.local_bytes += len(body)
                self.progress["layers_downloaded"] += 1
                self.progress["bytes_downloaded"] += meta["file_size"]

    def _delete_unreferenced(self, wanted: dict[str, dict[str, dict]]) -> None:
        root = self.local_dir / "timelines"
        if not root.is_dir():
            return
        for tl_dir in root.iterdir():
            layers = wanted.get(tl_dir.name)
            if layers is None:
                self.node.remove_tree(tl_dir)
                continue
            for path in tl_dir.iterdir():
                parsed = L.parse_local_file_name(path.name)
                layer = layers.get(parsed[0]) if parsed else None
                if parsed is None or layer is None or int(layer["metadata"].get("generation") or 0) != parsed[1]:
                    self.node.remove_file(path)

    async def shutdown(self) -> None:
        self.cancelled = True
        if self.download_task is not None and not self.download_task.done():
            self.download_task.cancel()
            await asyncio.gather(self.download_task, return_exceptions=True)
