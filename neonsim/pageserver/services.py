"""What the parts of one simulated pageserver share: the node's context and identity, its local disk (with the
usage counter), its remote storage, background task spawning, counters and the sim-only background record.

It knows nothing about tenants. The package's imports point one way, each module importing only modules below it:
`http` (routes) → `node` (tenant slots and their lifecycle) → `tenant` → `walreceiver`, `deletion` → `timeline`,
`secondary` → `services` → `metrics`, `remote`, `layers`, `config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from neonsim._server import Node, NodeContext
from neonsim.pageserver.metrics import RemoteCallCounters
from neonsim.pageserver.remote import RemoteStorage

log = logging.getLogger("neonsim.pageserver")

WARMUP_CONCURRENCY = 4
LOGICAL_SIZE_CONCURRENCY = 2  # initial logical size calculations running at once (they read every layer)
HISTORY_LIMIT = 10000  # entries kept per sim-only history


class NodeServices(Node):
    """The lower half of the pageserver node (`neonsim.pageserver.node.PageserverCore` builds on it)."""

    def __init__(self, ctx: NodeContext):
        super().__init__(ctx)
        self.node_id: int = ctx.node["node_id"]
        self.az: str | None = ctx.node.get("az")
        self.tenants_dir: Path = ctx.data_dir / "tenants"
        self.tenants_dir.mkdir(parents=True, exist_ok=True)
        self.tenant_defaults = dict(ctx.fleet.get("tenant_defaults") or {})
        self.disk_capacity = int(ctx.node.get("disk_capacity_bytes") or 100 * 1024**3)
        self.remote = RemoteStorage(ctx.fleet["s3"], ctx.node.get("prefix_in_bucket"))
        self.remote_calls = RemoteCallCounters()  # the remote timeline client's call counters (GET /metrics)
        # lazy attaches queue here unless a request needs the tenant (upstream's warm-up concurrency limit)
        self.warmup_semaphore = asyncio.Semaphore(WARMUP_CONCURRENCY)
        self.logical_size_semaphore = asyncio.Semaphore(LOGICAL_SIZE_CONCURRENCY)
        self.local_bytes = 0
        self.stats: Counter[str] = Counter()
        # Sim-only record of the periodic gc and compaction iterations started per tenant shard (GET /sim/background).
        self.background_history: list[dict] = []
        self._tasks: set[asyncio.Task] = set()

    # ---- sim-only records ---------------------------------------------------------------------------------
    def record_background(self, tsid: str, job: str, mode: str, generation: int | None) -> None:
        self.background_history.append(
            {"ts": round(time.time(), 6), "tenant_shard_id": tsid, "job": job, "mode": mode, "generation": generation}
        )
        del self.background_history[:-HISTORY_LIMIT]

    # ---- background tasks ---------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed: %r", task.get_name(), task.exception())

    async def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- local disk (the usage counter behind /v1/utilization) ------------------------------------------------
    def remove_file(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
            self.local_bytes -= size
        except FileNotFoundError:
            pass

    def remove_tree(self, path: Path) -> None:
        if not path.exists():
            return
        self.local_bytes -= sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path, ignore_errors=True)

    def write_sparse(self, path: Path, size: int) -> None:
        """Declared-size file without content (synthetic tenants): counts toward usage, costs no disk."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(size)
        self.local_bytes += size

    def scan_local_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.tenants_dir):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(root, name)).st_size
        return total
