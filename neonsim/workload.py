"""Workload driver that runs inside a simulated compute: a walproposer plus a reader.

Writes: key/value WAL records whose LSNs the compute assigns, starting at the highest flush_lsn among the
safekeepers that answer on start. Every record goes to ALL safekeepers concurrently (one sender task each); a
write is acknowledged once a majority has flushed it, and the new commit_lsn then travels with the next
append (or a /sim/wal/commit) to every safekeeper.

Reads: a key with an acknowledged write is read through the pageserver that owns its shard, at the latest
acknowledged LSN, with a timeout (like a backend waiting for WAL). The value must be the one acknowledged
last at or below that LSN; an older value means a lost write became visible.

Acknowledged writes are appended to `acked_writes.jsonl` in the compute directory (and reloaded on restart),
so `neonsim/checker.py` and a restarted compute can verify them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import aiohttp

from neonsim.lsn import format_lsn, parse_lsn, record_size
from neonsim.sharding import TenantShardId, key_to_shard

log = logging.getLogger("neonsim.workload")

DEFAULTS = {"write_rate": 10.0, "read_rate": 10.0, "keys": 200, "read_timeout_ms": 2000}
MAX_INFLIGHT_WRITES = 64
MAX_INFLIGHT_READS = 16
APPEND_BATCH = 500
HEARTBEAT_S = 1.0
RETRY_S = 0.5
LATENCY_SAMPLES = 20_000
MAX_BUFFERED_RECORDS = 20_000
HISTOGRAM_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
KEY_HISTORY = 16
FAILURE_SAMPLES = 20


def http_base(connstr: str) -> str:
    """`postgres://user@host:port/...`, `host:port` → `http://host:port` (the sim's pg port speaks HTTP)."""
    if "://" not in connstr:
        connstr = "//" + connstr
    parts = urlsplit(connstr)
    if not parts.hostname or not parts.port:
        raise ValueError(f"connection string without host:port: {connstr!r}")
    return f"http://{parts.hostname}:{parts.port}"


@dataclass(frozen=True)
class PageserverConn:
    """What a compute reads pages through: one base URL per shard, in shard order (immutable, swapped whole)."""

    shard_count: int
    stripe_size: int | None
    urls: tuple[str, ...]

    def url_for(self, key: str) -> tuple[str, int]:
        shard = key_to_shard(key, self.shard_count, self.stripe_size)
        return self.urls[shard], shard


# --- latency statistics ----------------------------------------------------------------------------------


class LatencyStats:
    def __init__(self):
        self.samples: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.histogram = {f"le_{b}": 0 for b in HISTOGRAM_BOUNDS_MS} | {"le_inf": 0}
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.samples.append(ms)
        self.max = max(self.max, ms)
        for bound in HISTOGRAM_BOUNDS_MS:
            if ms <= bound:
                self.histogram[f"le_{bound}"] += 1
                return
        self.histogram["le_inf"] += 1

    def percentile(self, q: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    def to_json(self) -> dict:
        return {
            "p50": self.percentile(0.50),
            "p99": self.percentile(0.99),
            "max": round(self.max, 3),
            "count": len(self.samples),
            "histogram": dict(self.histogram),
        }


# --- walproposer --------------------------------------------------------------------------------------------


class NoQuorum(Exception):
    pass


@dataclass
class SafekeeperLink:
    base_url: str
    flush_lsn: int | None = None  # last flush_lsn this safekeeper acknowledged (durable, never goes back)
    sent_commit_lsn: int = 0
    connected: bool = False
    diverged: bool = False  # holds WAL beyond ours from an earlier proposer: never counts toward the quorum
    last_error: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


@dataclass
class PendingRecord:
    lsn: int
    end_lsn: int
    key: str
    value: str | None

    def to_json(self) -> dict:
        return {"lsn": format_lsn(self.lsn), "end_lsn": format_lsn(self.end_lsn), "key": self.key, "value": self.value}


class WalProposer:
    """Replicates the compute's WAL to every safekeeper; commits at majority flush."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        safekeepers: list[str],
        tenant_id: str,
        timeline_id: str,
        headers: dict | None = None,
    ):
        if not safekeepers:
            raise ValueError("no safekeepers in the spec")
        self.session = session
        self.links = [SafekeeperLink(http_base(s)) for s in safekeepers]
        self.quorum = len(self.links) // 2 + 1
        self.tenant_id = tenant_id
        self.timeline_id = timeline_id
        self.headers = headers or {}
        self.buffer: list[PendingRecord] = []  # records some safekeeper may still need, in LSN order
        self._buffer_lsns: list[int] = []  # start LSNs of self.buffer, for bisect
        self.end_lsn = 0  # next record starts here
        self.commit_lsn = 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()
        self.started = False
        self._stopping = False

    # ---- lifecycle

    async def start(self, timeout: float = 10.0) -> None:
        """Probe every safekeeper; needs a majority; LSNs continue from the highest flush_lsn among them."""
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.gather(*(self._probe(link) for link in self.links))
            answered = [link for link in self.links if link.flush_lsn is not None]
            if len(answered) >= self.quorum:
                break
            if time.monotonic() >= deadline:
                raise NoQuorum(f"only {len(answered)} of {len(self.links)} safekeepers answered")
            await asyncio.sleep(RETRY_S)
        leader = max(answered, key=lambda link: link.flush_lsn or 0)
        self.end_lsn = leader.flush_lsn or 0
        # Like a newly elected walproposer, adopt the most advanced safekeeper's WAL: committing it there makes
        # it streamable, so safekeepers behind it can be caught up from it (_recover_from_peer).
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            status, _ = await self._post(leader, "/sim/wal/commit", {"commit_lsn": format_lsn(self.end_lsn)})
            if status == 200:
                leader.sent_commit_lsn = self.end_lsn
        self.started = True
        for link in self.links:
            link.task = asyncio.ensure_future(self._run_link(link))
        self._recompute_commit()

    async def stop(self) -> None:
        self._stopping = True
        for link in self.links:
            if link.task is not None:
                link.task.cancel()
        for link in self.links:
            if link.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await link.task
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    # ---- writes

    def write(self, key: str, value: str | None) -> tuple[PendingRecord, asyncio.Future]:
        """Queue one record; the future resolves when a majority has flushed it."""
        if not self.started:
            raise NoQuorum("walproposer not started")
        rec = PendingRecord(self.end_lsn, self.end_lsn + record_size(key, value), key, value)
        self.end_lsn = rec.end_lsn
        self.buffer.append(rec)
        self._buffer_lsns.append(rec.lsn)
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((rec.end_lsn, fut))
        for link in self.links:
            link.wake.set()
        return rec, fut

    # ---- internals

    async def _post(self, link: SafekeeperLink, path: str, body: dict, timeout: float = 5.0):
        body = {"tenant_id": self.tenant_id, "timeline_id": self.timeline_id, **body}
        async with self.session.post(
            link.base_url + path, json=body, headers=self.headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            data = await resp.json(content_type=None)
            return resp.status, data

    async def _probe(self, link: SafekeeperLink) -> None:
        try:
            status, data = await self._post(link, "/sim/wal/append", {"records": []}, timeout=2.0)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            link.connected = False
            link.last_error = f"{type(exc).__name__}: {exc}"
            return
        if status == 200:
            link.flush_lsn = parse_lsn(data["flush_lsn"])
            link.connected = True
        else:
            link.connected = False
            link.last_error = f"HTTP {status}: {data}"

    def _recompute_commit(self) -> None:
        flushes = sorted(
            (link.flush_lsn for link in self.links if link.flush_lsn is not None and not link.diverged), reverse=True
        )
        if len(flushes) < self.quorum:
            return
        quorum_lsn = min(flushes[self.quorum - 1], self.end_lsn)
        if quorum_lsn > self.commit_lsn:
            self.commit_lsn = quorum_lsn
            while self._waiters and self._waiters[0][0] <= self.commit_lsn:
                _, fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_result(self.commit_lsn)
            for link in self.links:
                link.wake.set()
        self._trim_buffer()

    def _trim_buffer(self) -> None:
        known = [link.flush_lsn for link in self.links if link.flush_lsn is not None]
        keep_above = min(known, default=0)
        if len(self.buffer) > MAX_BUFFERED_RECORDS:
            # A long-dead safekeeper must not hold unbounded memory: it recovers from a peer instead.
            keep_above = max(keep_above, self.commit_lsn)
        if self.buffer and self.buffer[0].end_lsn <= keep_above:
            cut = bisect.bisect_left(self._buffer_lsns, keep_above)
            # Records starting below keep_above may still end above it (keep_above mid-record).
            while cut > 0 and self.buffer[cut - 1].end_lsn > keep_above:
                cut -= 1
            del self.buffer[:cut]
            del self._buffer_lsns[:cut]

    def _records_from(self, lsn: int) -> list[PendingRecord] | None:
        """Buffered records starting exactly at lsn (None when lsn is not in the buffer)."""
        if not self.buffer:
            return [] if lsn == self.end_lsn else None
        if lsn == self.end_lsn:
            return []
        idx = bisect.bisect_left(self._buffer_lsns, lsn)
        if idx >= len(self.buffer) or self.buffer[idx].lsn != lsn:
            return None
        return self.buffer[idx : idx + APPEND_BATCH]

    async def _recover_from_peer(self, link: SafekeeperLink) -> list[PendingRecord] | None:
        """Committed WAL from another safekeeper for a safekeeper behind our buffer."""
        for peer in self.links:
            if peer is link or not peer.connected or (peer.flush_lsn or 0) <= (link.flush_lsn or 0):
                continue
            params = {
                "tenant_id": self.tenant_id,
                "timeline_id": self.timeline_id,
                "start_lsn": format_lsn(link.flush_lsn or 0),
                "shard_count": "0",
                "wait_ms": "0",
                "appname": "walproposer",
            }
            try:
                async with self.session.get(
                    peer.base_url + "/sim/wal/stream",
                    params=params,
                    headers=self.headers,
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as resp:
                    if resp.status != 200:
                        continue
                    data = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
            recs = [
                PendingRecord(parse_lsn(r["lsn"]), parse_lsn(r["end_lsn"]), r["key"], r["value"])
                for r in data.get("records") or []
            ]
            if recs and recs[0].lsn == link.flush_lsn:
                return recs[:APPEND_BATCH]
        return None

    async def _run_link(self, link: SafekeeperLink) -> None:
        while not self._stopping:
            link.wake.clear()
            try:
                if link.flush_lsn is None or not link.connected:
                    await self._probe(link)
                    if link.flush_lsn is None or not link.connected:
                        await asyncio.sleep(RETRY_S)
                        continue
                if link.flush_lsn > self.end_lsn:
                    # It holds WAL we never saw (it was unreachable when we started); upstream would truncate it.
                    link.diverged = True
                    link.last_error = f"diverged: flush_lsn {format_lsn(link.flush_lsn)} beyond our WAL"
                    await asyncio.sleep(HEARTBEAT_S)
                    await self._probe(link)
                    continue
                records = self._records_from(link.flush_lsn)
                if records is None:
                    records = await self._recover_from_peer(link)
                    if records is None:
                        link.last_error = f"cannot find WAL from {format_lsn(link.flush_lsn)} for catch-up"
                        await asyncio.sleep(HEARTBEAT_S)
                        continue
                if records or link.sent_commit_lsn < self.commit_lsn:
                    commit = self.commit_lsn
                    status, data = await self._post(
                        link,
                        "/sim/wal/append",
                        {"records": [r.to_json() for r in records], "commit_lsn": format_lsn(commit)},
                    )
                    if status == 200:
                        link.flush_lsn = max(link.flush_lsn, parse_lsn(data["flush_lsn"]))
                        link.sent_commit_lsn = commit
                        link.last_error = None
                        self._recompute_commit()
                    elif status == 409 and isinstance(data, dict) and data.get("expected_lsn"):
                        link.flush_lsn = parse_lsn(data["expected_lsn"])
                    else:
                        link.last_error = f"HTTP {status}: {data}"
                        link.connected = False
                        await asyncio.sleep(RETRY_S)
                    continue
                # Idle: wait for new WAL or a commit advance; heartbeat keeps the safekeeper's walreceiver alive.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(link.wake.wait(), HEARTBEAT_S)
                if not link.wake.is_set():
                    await self._probe(link)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the sender must outlive any single bad exchange
                link.connected = False
                link.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(RETRY_S)

    def to_json(self) -> dict:
        return {
            "commit_lsn": format_lsn(self.commit_lsn),
            "end_lsn": format_lsn(self.end_lsn),
            "quorum": self.quorum,
            "safekeepers": [
                {
                    "url": link.base_url,
                    "connected": link.connected,
                    "diverged": link.diverged,
                    "flush_lsn": None if link.flush_lsn is None else format_lsn(link.flush_lsn),
                    "last_error": link.last_error,
                }
                for link in self.links
            ],
        }


# --- the workload -----------------------------------------------------------------------------------------------


@dataclass
class AckedWrite:
    end_lsn: int
    value: str | None


class Workload:
    """Writer + reader loops for one compute. `conn_provider()` returns the current PageserverConn (or None)."""

    def __init__(
        self,
        session,
        compute_id: str,
        tenant_id: str,
        timeline_id: str,
        safekeepers: list[str],
        conn_provider,
        data_dir: str | Path,
        headers: dict | None = None,
        options: dict | None = None,
        on_activity=None,
    ):
        self.session = session
        self.compute_id = compute_id
        self.tenant_id = tenant_id
        self.timeline_id = timeline_id
        self.safekeepers = list(safekeepers)
        self.conn_provider = conn_provider
        self.headers = headers or {}
        self.options = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if k in DEFAULTS}}
        self.on_activity = on_activity or (lambda: None)
        self.acked_path = Path(data_dir) / "acked_writes.jsonl"
        self.history: dict[str, list[AckedWrite]] = {}
        self.acked_keys: list[str] = []
        self.last_acked_lsn = 0
        self.walproposer: WalProposer | None = None
        self._walproposer_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._inflight_writes: set[asyncio.Task] = set()
        self._inflight_reads: set[asyncio.Task] = set()
        self._acked_file: TextIO | None = None
        self._seq = 0
        self.running = False
        self.writing = False
        self.reset_counters()
        self._load_acked()

    # ---- state

    def reset_counters(self) -> None:
        self.writes_acked = 0
        self.writes_failed = 0
        self.reads_ok = 0
        self.reads_failed = 0
        self.failures_by_reason: dict[str, int] = {}
        self.failure_samples: deque[dict] = deque(maxlen=FAILURE_SAMPLES)
        self.read_latency = LatencyStats()
        self.write_latency = LatencyStats()
        self.lost_writes = 0
        self.lost_write_samples: list[dict] = []
        self.superseded_writes = 0
        self.superseded_write_samples: list[dict] = []
        self.verified = False
        self.last_error: str | None = None

    def _load_acked(self) -> None:
        """Acknowledged writes of earlier lives of this compute: they must stay readable too."""
        if not self.acked_path.exists():
            return
        for line in self.acked_path.read_text().splitlines():
            try:
                entry = json.loads(line)
                self._remember(entry["key"], entry["value"], parse_lsn(entry["end_lsn"]))
            except (ValueError, KeyError):
                continue  # a torn last line from a kill

    def _remember(self, key: str, value: str | None, end_lsn: int) -> None:
        entries = self.history.get(key)
        if entries is None:
            entries = self.history[key] = []
            self.acked_keys.append(key)
        entries.append(AckedWrite(end_lsn, value))
        if len(entries) > KEY_HISTORY:
            del entries[0]
        self.last_acked_lsn = max(self.last_acked_lsn, end_lsn)

    def expected_at(self, key: str, lsn: int) -> AckedWrite | None:
        found = None
        for entry in self.history.get(key, ()):
            if entry.end_lsn <= lsn:
                found = entry
        return found

    def expected_value(self, key: str, lsn: int) -> str | None:
        found = self.expected_at(key, lsn)
        return found.value if found is not None else None

    def _fail(self, kind: str, reason: str, **sample) -> None:
        if kind == "read":
            self.reads_failed += 1
        else:
            self.writes_failed += 1
        self.failures_by_reason[reason] = self.failures_by_reason.get(reason, 0) + 1
        self.failure_samples.append({"kind": kind, "reason": reason, "ts": round(time.time(), 3), **sample})

    # ---- lifecycle

    async def start(self, **overrides) -> None:
        for k, v in overrides.items():
            if k in DEFAULTS and v is not None:
                self.options[k] = type(DEFAULTS[k])(v)
        if self.running:
            return
        self.running = True
        self.writing = True
        self.verified = False
        self._tasks = [asyncio.ensure_future(self._writer()), asyncio.ensure_future(self._reader())]

    async def stop(self, drain_timeout: float = 10.0) -> None:
        self.running = False
        self.writing = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        # In-flight writes keep their chance to be acknowledged (they are already with the safekeepers).
        if self._inflight_writes:
            await asyncio.wait(set(self._inflight_writes), timeout=drain_timeout)
        if self._inflight_reads:
            await asyncio.wait(set(self._inflight_reads), timeout=drain_timeout)

    async def close(self) -> None:
        """Shutdown: nothing is drained (like a compute being stopped, unacknowledged writes are just lost)."""
        self.running = False
        self.writing = False
        pending = [*self._tasks, *self._inflight_writes, *self._inflight_reads]
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.walproposer is not None:
            await self.walproposer.stop()
            self.walproposer = None
        if self._acked_file is not None:
            self._acked_file.close()
            self._acked_file = None

    async def ensure_walproposer(self) -> WalProposer:
        # One proposer at a time: two would hand out the same LSNs.
        async with self._walproposer_lock:
            if self.walproposer is None:
                wp = WalProposer(self.session, self.safekeepers, self.tenant_id, self.timeline_id, self.headers)
                await wp.start()
                self.walproposer = wp
            return self.walproposer

    async def set_safekeepers(self, safekeepers: list[str]) -> None:
        """A spec with a different safekeeper set restarts the walproposer (as compute_ctl restarts it)."""
        if list(safekeepers) == self.safekeepers:
            return
        async with self._walproposer_lock:
            self.safekeepers = list(safekeepers)
            if self.walproposer is not None:
                await self.walproposer.stop()
                self.walproposer = None

    # ---- loops

    async def _paced(self, rate_key: str, inflight: set, limit: int, make_one) -> None:
        next_at = time.monotonic()
        while True:
            rate = float(self.options[rate_key])
            if rate <= 0:
                await asyncio.sleep(0.5)
                next_at = time.monotonic()
                continue
            next_at += 1.0 / rate
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = time.monotonic()  # fell behind (e.g. stalled): do not burst to catch up
            if len(inflight) >= limit:
                # Like a backend blocked on commit: no new work until something finishes.
                await asyncio.wait(set(inflight), return_when=asyncio.FIRST_COMPLETED)
                continue
            task = asyncio.ensure_future(self._guarded(rate_key, make_one))
            inflight.add(task)
            task.add_done_callback(inflight.discard)

    async def _guarded(self, rate_key: str, make_one) -> None:
        # One failed operation (e.g. the walproposer lost its quorum at start) is counted, never left unretrieved.
        try:
            await make_one()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = "write" if rate_key == "write_rate" else "read"
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._fail(kind, f"{kind}_error:{type(exc).__name__}")

    async def _writer(self) -> None:
        while self.walproposer is None:
            try:
                await self.ensure_walproposer()
            except NoQuorum as exc:
                self.last_error = str(exc)
                await asyncio.sleep(RETRY_S)
            except ValueError as exc:
                self.last_error = str(exc)
                return
        await self._paced("write_rate", self._inflight_writes, MAX_INFLIGHT_WRITES, self.write_once)

    async def _reader(self) -> None:
        await self._paced("read_rate", self._inflight_reads, MAX_INFLIGHT_READS, self.read_once)

    # ---- one write / one read

    async def write_once(self, key: str | None = None, value: str | None = None) -> AckedWrite:
        wp = await self.ensure_walproposer()
        self._seq += 1
        key = key if key is not None else f"key{random.randrange(int(self.options['keys'])):06d}"
        value = value if value is not None else f"{self.compute_id}:{self._seq}:{random.getrandbits(32):08x}"
        started = time.monotonic()
        rec, fut = wp.write(key, value)
        await fut
        self.write_latency.add((time.monotonic() - started) * 1000.0)
        self.writes_acked += 1
        self._remember(key, value, rec.end_lsn)
        self._log_ack(rec)
        self.on_activity()
        return AckedWrite(rec.end_lsn, value)

    def _log_ack(self, rec: PendingRecord) -> None:
        if self._acked_file is None:
            self.acked_path.parent.mkdir(parents=True, exist_ok=True)
            self._acked_file = open(self.acked_path, "a", encoding="utf-8")  # noqa: SIM115 - append log
        entry = {
            "key": rec.key,
            "value": rec.value,
            "lsn": format_lsn(rec.lsn),
            "end_lsn": format_lsn(rec.end_lsn),
            "tenant_id": self.tenant_id,
            "timeline_id": self.timeline_id,
            "ts": round(time.time(), 3),
        }
        self._acked_file.write(json.dumps(entry) + "\n")
        self._acked_file.flush()

    async def read_key(self, key: str, lsn: int, timeout_ms: int) -> tuple[str | None, str | None, float]:
        """(value, error_reason, latency_ms) of one page read at lsn through the current pageserver."""
        conn = self.conn_provider()  # one snapshot: the old or the new connstring, never a mix
        started = time.monotonic()
        if conn is None:
            return None, "no_pageserver", 0.0
        url, shard = conn.url_for(key)
        params = {
            "tenant_shard_id": str(TenantShardId(self.tenant_id, shard, conn.shard_count)),
            "timeline_id": self.timeline_id,
            "key": key,
            "lsn": format_lsn(lsn),
            "timeout_ms": str(timeout_ms),
        }
        try:
            async with self.session.get(
                url + "/sim/page",
                params=params,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000.0 + 1.0),
            ) as resp:
                data = await resp.json(content_type=None)
                latency = (time.monotonic() - started) * 1000.0
                if resp.status != 200:
                    return None, f"http_{resp.status}", latency
                return data.get("value"), None, latency
        except TimeoutError:
            return None, "timeout", (time.monotonic() - started) * 1000.0
        except aiohttp.ClientConnectionError:
            return None, "connection_error", (time.monotonic() - started) * 1000.0
        except (aiohttp.ClientError, ValueError) as exc:
            return None, f"bad_response:{type(exc).__name__}", (time.monotonic() - started) * 1000.0

    def _classify(self, key: str, lsn: int, got: str | None) -> str | None:
        expected = self.expected_at(key, lsn)
        if expected is None or got == expected.value:
            return None
        older = {e.value for e in self.history.get(key, ()) if e.end_lsn < expected.end_lsn}
        # An older acknowledged value (or none at all) at an LSN past the last ack = a lost write is visible.
        return "stale_value" if got is None or got in older else "wrong_value"

    async def read_once(self) -> str | None:
        if not self.acked_keys:
            return None
        key = random.choice(self.acked_keys)
        lsn = self.last_acked_lsn
        value, error, latency = await self.read_key(key, lsn, int(self.options["read_timeout_ms"]))
        self.read_latency.add(latency)
        if error is not None:
            self._fail("read", error, key=key, lsn=format_lsn(lsn))
            return error
        mismatch = self._classify(key, lsn, value)
        if mismatch is not None:
            expected = self.expected_value(key, lsn)
            self._fail("read", mismatch, key=key, lsn=format_lsn(lsn), expected=expected, got=value)
            return mismatch
        self.reads_ok += 1
        self.on_activity()
        return None

    async def verify(self, timeout_ms: int = 5000, concurrency: int = 8) -> dict:
        """Stop writes, then read every acknowledged key at the latest acknowledged LSN.

        A key may answer with a value this compute never saw acknowledged: a write an earlier, killed life of the
        compute had sent was committed by the safekeepers after all (an in-doubt write; the new walproposer adopts
        the most advanced safekeeper's WAL). That is no lost write when the key, read at the acknowledged record's
        own end LSN, answers the acknowledged value: the value read later then came from a newer record. Such keys
        are counted as superseded; an error, an older value, or a value the proof does not explain stays lost."""
        await self.stop()
        lsn = self.last_acked_lsn
        lost: list[dict] = []
        superseded: list[dict] = []
        sem = asyncio.Semaphore(concurrency)

        async def check(key: str) -> None:
            async with sem:
                value, error, _ = await self.read_key(key, lsn, timeout_ms)
            expected = self.expected_at(key, lsn)
            want = expected.value if expected is not None else None
            if error is not None:
                lost.append({"key": key, "expected": want, "error": error})
                return
            verdict = self._classify(key, lsn, value)
            if verdict is None:
                return
            sample = {"key": key, "expected": want, "got": value}
            if verdict == "wrong_value" and expected is not None:
                async with sem:
                    at_ack, error, _ = await self.read_key(key, expected.end_lsn, timeout_ms)
                if error is None and at_ack == want:
                    superseded.append({**sample, "acknowledged_at": format_lsn(expected.end_lsn)})
                    return
                sample["at_acknowledged_lsn"] = error if error is not None else at_ack
            lost.append(sample)

        await asyncio.gather(*(check(k) for k in list(self.acked_keys)))
        self.lost_writes = len(lost)
        self.lost_write_samples = lost[:FAILURE_SAMPLES]
        self.superseded_writes = len(superseded)
        self.superseded_write_samples = superseded[:FAILURE_SAMPLES]
        self.verified = True
        return self.report()

    def report(self) -> dict:
        return {
            "running": self.running,
            "writes_acked": self.writes_acked,
            "writes_failed": self.writes_failed,
            "writes_pending": len(self._inflight_writes),
            "reads_ok": self.reads_ok,
            "reads_failed": self.reads_failed,
            "read_latency_ms": self.read_latency.to_json(),
            "write_latency_ms": self.write_latency.to_json(),
            "lost_writes": self.lost_writes,
            "lost_write_samples": self.lost_write_samples,
            "superseded_writes": self.superseded_writes,
            "superseded_write_samples": self.superseded_write_samples,
            "verified": self.verified,
            "failures_by_reason": dict(self.failures_by_reason),
            "failure_samples": list(self.failure_samples),
            "acked_keys": len(self.acked_keys),
            "last_acked_lsn": format_lsn(self.last_acked_lsn),
            "options": dict(self.options),
            "last_error": self.last_error,
            "walproposer": self.walproposer.to_json() if self.walproposer is not None else None,
        }
