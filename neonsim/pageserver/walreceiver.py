"""WAL receiver: long-polls a safekeeper's sim WAL stream (contracts §5.3) for each active timeline.

Choice of safekeeper follows upstream's rule in miniature: the one with the highest commit_lsn, switching
on errors or after a stretch without progress (upstream: the pageserver's walreceiver connection manager,
which learns its candidates from the storage broker).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import aiohttp

from neonsim.lsn import format_lsn, parse_lsn

if TYPE_CHECKING:
    from neonsim.pageserver.services import NodeServices
    from neonsim.pageserver.timeline import Timeline

log = logging.getLogger("neonsim.pageserver.walreceiver")

POLL_WAIT_MS = 1000
MAX_BACKOFF_S = 5.0
SWITCH_AFTER_IDLE_S = 10.0


class WalReceivers:
    def __init__(self, node: NodeServices):
        self.node = node
        # Sim-only (POST /sim/walreceiver): delay before a newly started receiver's first poll, standing in for a
        # pageserver that needs a while to reach the safekeepers or ingest a backlog after an attach. Counted from
        # the receiver's start and re-read while it waits, so lowering it (to 0) releases the waiting receivers.
        self.connect_delay_s = 0.0

    def start(self, tl: Timeline) -> None:
        if tl.synthetic or not self.node.ctx.safekeepers():
            return
        if tl.walreceiver_task is None or tl.walreceiver_task.done():
            tl.walreceiver_task = self.node.spawn(self._run(tl), f"walreceiver {tl.timeline_id}")

    def stop(self, tl: Timeline) -> None:
        if tl.walreceiver_task is not None and not tl.walreceiver_task.done():
            tl.walreceiver_task.cancel()
        tl.walreceiver_status = "stopping or stopped"
        tl.wal_source_connstr = None

    async def _commit_lsn(self, sk: dict, tl: Timeline) -> int | None:
        url = f"{self.node.ctx.http_url(sk['name'])}/v1/tenant/{tl.tenant.shard_id.tenant_id}/timeline/{tl.timeline_id}"
        try:
            async with self.node.ctx.session.get(
                url, headers=self.node.ctx.auth_headers("safekeeper"), timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                if resp.status != 200:
                    return None
                return parse_lsn((await resp.json()).get("commit_lsn"))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def _pick(self, tl: Timeline, avoid: set[int]) -> dict | None:
        candidates = []
        for sk in self.node.ctx.safekeepers():
            commit = await self._commit_lsn(sk, tl)
            if commit is not None:
                candidates.append((sk["node_id"] in avoid, -commit, sk["az"] != self.node.az, sk["node_id"], sk))
        if not candidates:
            return None
        return min(candidates, key=lambda c: c[:4])[4]

    async def _run(self, tl: Timeline) -> None:
        backoff = 0.2
        current: dict | None = None
        failed: set[int] = set()
        last_progress = time.monotonic()
        sid = tl.tenant.shard_id
        started = time.monotonic()
        while not tl.tenant.cancelled and time.monotonic() - started < self.connect_delay_s:
            tl.walreceiver_status = "Connecting"
            await asyncio.sleep(min(0.1, self.connect_delay_s - (time.monotonic() - started)))
        while not tl.tenant.cancelled:
            try:
                if current is None:
                    tl.walreceiver_status = "Connecting"
                    current = await self._pick(tl, failed)
                    if current is None:
                        tl.walreceiver_status = "No safekeeper candidates"
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, MAX_BACKOFF_S)
                        continue
                    tl.wal_source_connstr = f"postgresql://no_user:********@127.0.0.1:{current['pg_port']}/"
                    tl.walreceiver_status = "Streaming"
                params = {
                    "tenant_id": sid.tenant_id,
                    "timeline_id": tl.timeline_id,
                    "start_lsn": format_lsn(tl.last_record_lsn),
                    "shard_number": str(sid.shard_number),
                    "shard_count": str(sid.shard_count),
                    "stripe_size": str(tl.tenant.stripe_size or 2048),
                    "wait_ms": str(POLL_WAIT_MS),
                    "node_id": str(self.node.node_id),
                    "last_received_lsn": format_lsn(tl.last_record_lsn),
                    "disk_consistent_lsn": format_lsn(tl.disk_consistent_lsn),
                    "remote_consistent_lsn": format_lsn(tl.remote_consistent_lsn_visible),
                }
                url = f"http://127.0.0.1:{current['pg_port']}/sim/wal/stream"
                async with self.node.ctx.session.get(
                    url, params=params, timeout=aiohttp.ClientTimeout(total=POLL_WAIT_MS / 1000 + 10)
                ) as resp:
                    if resp.status != 200:
                        text = await resp.text()
                        raise RuntimeError(f"stream from sk {current['node_id']}: HTTP {resp.status}: {text[:200]}")
                    data = await resp.json()
                if tl.tenant.cancelled:
                    return
                before = tl.last_record_lsn
                tl.ingest(data.get("records") or [], parse_lsn(data.get("end_lsn")))
                tl.last_received_msg_lsn = tl.last_record_lsn
                tl.last_received_msg_ts = int(time.time() * 1_000_000)
                backoff = 0.2
                failed.clear()
                now = time.monotonic()
                if tl.last_record_lsn > before:
                    last_progress = now
                elif now - last_progress > SWITCH_AFTER_IDLE_S:
                    # no new WAL for a while: re-check whether another safekeeper has more
                    last_progress = now
                    current = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("walreceiver %s/%s: %s", tl.tenant.tsid, tl.timeline_id, exc)
                if current is not None:
                    failed.add(current["node_id"])
                current = None
                tl.wal_source_connstr = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
