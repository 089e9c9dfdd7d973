"""The node's deletion queue: layer deletions and remote_consistent_lsn updates are validated against the
storage controller in batches; only entries whose generation is still current are executed or published, stale
ones are dropped (their objects leak, which is safe). Upstream: `docs/rfcs/025-generation-numbers.md`."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from neonsim.pageserver.services import NodeServices
    from neonsim.pageserver.timeline import Timeline, TimelineTenant

log = logging.getLogger("neonsim.pageserver.deletion")

VALIDATE_INTERVAL_S = 1.0


class DeletionQueue:
    def __init__(self, node: NodeServices):
        self.node = node
        self.pending: list[tuple[str, int, list[str]]] = []
        self.lsn_updates: dict[tuple[str, str], tuple[TimelineTenant, Timeline, int]] = {}
        self.ready: list[str] = []
        self.submitted = 0
        self.executed = 0
        self.dropped = 0
        self._lock = asyncio.Lock()

    def push(self, tsid: str, generation: int, keys: list[str]) -> None:
        self.pending.append((tsid, generation, list(keys)))
        self.submitted += len(keys)

    def push_lsn(self, tl: Timeline) -> None:
        """Publish tl's remote_consistent_lsn as visible once its tenant's generation validates."""
        tenant = tl.tenant
        self.lsn_updates[(tenant.tsid, tl.timeline_id)] = (tenant, tl, tl.remote_consistent_lsn)

    async def _validate(self, pairs: set[tuple[str, int]]) -> set[tuple[str, int]] | None:
        body = {"tenants": [{"id": tsid, "gen": gen} for tsid, gen in sorted(pairs)]}
        try:
            async with self.node.ctx.session.post(
                self.node.ctx.upcall_url + "validate",
                json=body,
                headers=self.node.ctx.auth_headers("generations_api"),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                if resp.status != 200:
                    log.warning("validate upcall: HTTP %s", resp.status)
                    return None
                data = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("validate upcall failed: %s", exc)
            return None
        gens = dict(pairs)
        return {(t["id"], gens[t["id"]]) for t in data.get("tenants", []) if t.get("valid") and t["id"] in gens}

    async def flush(self, execute: bool = True) -> None:
        """One validation pass now (and execute what is valid when asked)."""
        async with self._lock:
            batch, self.pending = self.pending, []
            updates, self.lsn_updates = self.lsn_updates, {}
            pairs = {(tsid, gen) for tsid, gen, _ in batch}
            pairs |= {(tenant.tsid, tenant.generation) for tenant, _, _ in updates.values()}
            if pairs:
                valid = await self._validate(pairs)
                if valid is None:
                    # controller unreachable: keep everything for the next pass
                    self.pending = batch + self.pending
                    for key, value in updates.items():
                        self.lsn_updates.setdefault(key, value)
                    return
                for tsid, gen, keys in batch:
                    if (tsid, gen) in valid:
                        self.ready.extend(keys)
                    else:
                        self.dropped += len(keys)
                        log.info("dropped %d deletions of %s gen %s (stale generation)", len(keys), tsid, gen)
                for tenant, tl, lsn in updates.values():
                    if (tenant.tsid, tenant.generation) in valid and not tenant.cancelled:
                        tl.remote_consistent_lsn_visible = max(tl.remote_consistent_lsn_visible, lsn)
            if execute and self.ready:
                keys, self.ready = self.ready, []
                try:
                    await self.node.remote.delete_keys(keys)
                    self.executed += len(keys)
                except Exception as exc:
                    log.warning("executing %d deletions failed: %s", len(keys), exc)
                    self.ready = keys + self.ready

    async def run(self) -> None:
        while True:
            await asyncio.sleep(VALIDATE_INTERVAL_S)
            try:
                await self.flush(execute=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("deletion queue pass failed")
