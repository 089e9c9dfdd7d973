"""Simulated safekeeper: durable per-timeline WAL, quorum bookkeeping, walsenders and WAL trimming.

Upstream API (`safekeeper/src/http/routes.rs`) on the HTTP port; the libpq stand-ins of contracts §5.3 on the pg port.

On disk, below the node directory: `timelines/<tenant_id>/<timeline_id>/control.json` (creation parameters,
commit_lsn, trim horizon) and `wal.jsonl` (one WAL record per line, appended and flushed before an append is
acknowledged). A killed safekeeper keeps every acknowledged record; its commit_lsn comes back as the last
persisted value capped at flush_lsn (conservative: the walproposer re-advances it).

"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import aiohttp
from aiohttp import web

from neonsim._auth import SAFEKEEPER_ALLOW, safekeeper_scope_rule
from neonsim._durable import write_durably
from neonsim._server import ApiError, Node, json_response, read_json, route_path
from neonsim.lsn import format_lsn, parse_lsn, record_size

WALSENDER_EXPIRY_S = 5.0
WALRECEIVER_EXPIRY_S = 5.0
TRIM_INTERVAL_S = 1.0
GOSSIP_INTERVAL_S = 1.0
STREAM_BATCH_LIMIT = 2000
DEFAULT_WAL_SEG_SIZE = 16 * 1024 * 1024


# --- errors -----------------------------------------------------------------------------------------------


class SafekeeperError(Exception):
    """Maps to an upstream-style `{"msg": ...}` error response."""

    status = 500

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadRequest(SafekeeperError):
    status = 400


class NotFound(SafekeeperError):
    status = 404


class Conflict(SafekeeperError):
    status = 409


class WalRemoved(SafekeeperError):
    status = 410


# --- per-timeline state ------------------------------------------------------------------------------------


@dataclass
class WalRecord:
    lsn: int
    end_lsn: int
    key: str
    value: str | None

    def to_json(self) -> dict:
        return {"lsn": format_lsn(self.lsn), "end_lsn": format_lsn(self.end_lsn), "key": self.key, "value": self.value}

    @classmethod
    def from_json(cls, data: dict) -> WalRecord:
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            raise BadRequest(f"Failed to parse json request: invalid WAL record {data!r}")
        value = data.get("value")
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"Failed to parse json request: record value must be a string or null: {data!r}")
        try:
            lsn = parse_lsn(data["lsn"])
            end_lsn = parse_lsn(data["end_lsn"]) if data.get("end_lsn") else lsn + record_size(data["key"], value)
        except (KeyError, ValueError) as exc:
            raise BadRequest(f"Failed to parse json request: {exc}") from None
        if end_lsn != lsn + record_size(data["key"], value):
            raise BadRequest(f"Failed to parse json request: record end_lsn does not match its length: {data!r}")
        return cls(lsn, end_lsn, data["key"], value)


@dataclass
class Walsender:
    node_id: int | None
    shard_number: int
    shard_count: int
    stripe_size: int | None
    addr: str
    conn_id: int
    last_received_lsn: int = 0
    disk_consistent_lsn: int = 0
    remote_consistent_lsn: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    reply_time: float = field(default_factory=time.time)
    active_polls: int = 0


class Timeline:
    """One timeline's WAL and LSN bookkeeping on this safekeeper."""

    def __init__(self, directory: Path, tenant_id: str, timeline_id: str, control: dict, fsync: bool = True):
        self.dir = directory
        self.tenant_id = tenant_id
        self.timeline_id = timeline_id
        self.control = control
        self.fsync = fsync
        self.timeline_start_lsn = parse_lsn(control["timeline_start_lsn"])
        self.local_start_lsn = parse_lsn(control.get("local_start_lsn") or control["timeline_start_lsn"])
        self.records: list[WalRecord] = []
        self._lsns: list[int] = []  # start LSNs of self.records, for bisect
        self.flush_lsn = self.local_start_lsn
        self.commit_lsn = 0
        self.remote_consistent_lsn = parse_lsn(control.get("remote_consistent_lsn") or None)
        self.walsenders: dict[tuple, Walsender] = {}
        # Highest remote_consistent_lsn each shard (number, count) has reported; see durable_horizon().
        self.shard_remote_consistent: dict[tuple[int, int], int] = {}
        self.peers: dict[int, dict] = {}  # sk_id -> what that safekeeper last reported (broker stand-in)
        self.last_append: float | None = None
        self.changed = asyncio.Condition()
        self._wal_file: BinaryIO | None = None
        self._next_conn_id = 1
        self._persisted_commit_lsn: int | None = None

    # ---- persistence

    @property
    def wal_path(self) -> Path:
        return self.dir / "wal.jsonl"

    @property
    def control_path(self) -> Path:
        return self.dir / "control.json"

    def load_wal(self) -> None:
        """Read wal.jsonl; a torn last line (killed mid-write) is cut off, the rest is the flushed WAL."""
        good_bytes = 0
        if self.wal_path.exists():
            with open(self.wal_path, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        rec = WalRecord.from_json(json.loads(line))
                    except (ValueError, SafekeeperError):
                        break
                    if rec.lsn != self.flush_lsn:
                        # Left over from before a trim rewrite or a torn rewrite: skip records below the start.
                        if rec.end_lsn <= self.local_start_lsn:
                            good_bytes += len(line)
                            continue
                        break
                    self._push(rec)
                    good_bytes += len(line)
            with open(self.wal_path, "r+b") as f:
                f.truncate(good_bytes)
        self.commit_lsn = min(parse_lsn(self.control.get("commit_lsn") or None), self.flush_lsn)
        self._persisted_commit_lsn = self.commit_lsn

    def _push(self, rec: WalRecord) -> None:
        self.records.append(rec)
        self._lsns.append(rec.lsn)
        self.flush_lsn = rec.end_lsn

    def _open_wal(self):
        if self._wal_file is None:
            self._wal_file = open(self.wal_path, "ab")  # noqa: SIM115 - kept open for the timeline's life
        return self._wal_file

    def persist_control(self) -> None:
        self.control["commit_lsn"] = format_lsn(self.commit_lsn)
        self.control["local_start_lsn"] = format_lsn(self.local_start_lsn)
        self.control["remote_consistent_lsn"] = format_lsn(self.remote_consistent_lsn)
        write_durably(self.control_path, json.dumps(self.control))
        self._persisted_commit_lsn = self.commit_lsn

    def close(self) -> None:
        if self._wal_file is not None:
            self._wal_file.close()
            self._wal_file = None

    # ---- walproposer side

    def append(self, records: list[WalRecord], commit_lsn: int | None) -> int:
        if records:
            if records[0].lsn != self.flush_lsn:
                raise Conflict(
                    f"Conflict: append must start at flush_lsn {format_lsn(self.flush_lsn)}, "
                    f"got {format_lsn(records[0].lsn)}",
                    expected_lsn=format_lsn(self.flush_lsn),
                    flush_lsn=format_lsn(self.flush_lsn),
                )
            for prev, nxt in zip(records, records[1:], strict=False):
                if nxt.lsn != prev.end_lsn:
                    raise BadRequest(f"records are not contiguous at {format_lsn(nxt.lsn)}")
            lines = b"".join(json.dumps(r.to_json()).encode() + b"\n" for r in records)
            f = self._open_wal()
            f.write(lines)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
            for rec in records:
                self._push(rec)
        self.last_append = time.monotonic()
        if commit_lsn is not None:
            self.advance_commit(commit_lsn)
        return self.flush_lsn

    def advance_commit(self, commit_lsn: int) -> None:
        # A safekeeper never claims more committed WAL than it holds itself.
        self.commit_lsn = max(self.commit_lsn, min(commit_lsn, self.flush_lsn))

    # ---- pageserver side

    def committed_records(self, start_lsn: int, shard_filter, limit: int = STREAM_BATCH_LIMIT):
        """(records of this shard in [start_lsn, commit_lsn], end_lsn covered by the scan)."""
        idx = bisect.bisect_left(self._lsns, start_lsn)
        end_lsn = max(start_lsn, min(self.commit_lsn, self.flush_lsn)) if start_lsn <= self.commit_lsn else start_lsn
        out = []
        scanned = 0
        while idx < len(self.records):
            rec = self.records[idx]
            if rec.end_lsn > self.commit_lsn:
                break
            if scanned >= limit:
                end_lsn = rec.lsn
                break
            scanned += 1
            if shard_filter(rec.key):
                out.append(rec)
            idx += 1
        return out, end_lsn

    def register_walsender(self, params: dict, addr: str) -> Walsender:
        key = (params["node_id"], params["shard_number"], params["shard_count"])
        sender = self.walsenders.get(key)
        if sender is None:
            sender = Walsender(
                node_id=params["node_id"],
                shard_number=params["shard_number"],
                shard_count=params["shard_count"],
                stripe_size=params["stripe_size"],
                addr=addr,
                conn_id=self._next_conn_id,
            )
            self._next_conn_id += 1
            self.walsenders[key] = sender
        sender.addr = addr
        sender.last_received_lsn = max(sender.last_received_lsn, params["last_received_lsn"])
        sender.disk_consistent_lsn = max(sender.disk_consistent_lsn, params["disk_consistent_lsn"])
        sender.remote_consistent_lsn = max(sender.remote_consistent_lsn, params["remote_consistent_lsn"])
        sender.last_seen = time.monotonic()
        sender.reply_time = time.time()
        shard = (params["shard_number"], params["shard_count"])
        reported = max(self.shard_remote_consistent.get(shard, 0), params["remote_consistent_lsn"])
        self.shard_remote_consistent[shard] = reported
        # Keep the max ever reported (TimelineStatus.remote_consistent_lsn, `libs/safekeeper_api/src/models.rs`
        # upstream), but of what the whole tenant has made durable (contracts §5.5).
        self.remote_consistent_lsn = max(self.remote_consistent_lsn, self.durable_horizon())
        return sender

    def durable_horizon(self) -> int:
        """The LSN below which every shard's data is in S3: WAL below it is no longer needed by anyone.

        Each shard ingests only its own keys, so one shard's progress says nothing about another's: for a
        sharded tenant the horizon is the minimum over all shards, and nothing until every shard has reported.
        """
        best = 0
        for count in {c for (_, c) in self.shard_remote_consistent}:
            if count <= 1:
                horizon = self.shard_remote_consistent.get((0, count), 0)
            else:
                known = [self.shard_remote_consistent.get((n, count)) for n in range(count)]
                reports = [r for r in known if r is not None]
                if len(reports) < count:
                    continue
                horizon = min(reports)
            best = max(best, horizon)
        return best

    def expire_walsenders(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key, sender in list(self.walsenders.items()):
            if sender.active_polls == 0 and now - sender.last_seen > WALSENDER_EXPIRY_S:
                del self.walsenders[key]

    def learn_from_peer(self, sk_id: int, peer_status: dict, pg_connstr: str, http_connstr: str) -> None:
        """Take in a peer's TimelineStatus, as upstream learns SafekeeperTimelineInfo from the storage broker."""
        term = (peer_status.get("acceptor_state") or {}).get("term", 0)
        self.peers[sk_id] = {
            "sk_id": sk_id,
            "term": term,
            "last_log_term": term,
            "flush_lsn": peer_status["flush_lsn"],
            "commit_lsn": peer_status["commit_lsn"],
            "local_start_lsn": peer_status["local_start_lsn"],
            "pg_connstr": pg_connstr,
            "http_connstr": http_connstr,
            "https_connstr": None,
        }
        # Only the safekeeper a pageserver streams from hears its feedback; peers share it so all can trim.
        self.remote_consistent_lsn = max(self.remote_consistent_lsn, parse_lsn(peer_status["remote_consistent_lsn"]))

    # ---- trimming

    def trim_horizon(self) -> int:
        return min(self.remote_consistent_lsn, self.commit_lsn)

    def trim(self) -> int:
        """Drop records wholly below the horizon; returns how many were dropped."""
        horizon = self.trim_horizon()
        if horizon <= self.local_start_lsn:
            return 0
        keep_from = bisect.bisect_left([r.end_lsn for r in self.records], horizon + 1)
        # keep_from = first record whose end_lsn > horizon
        if keep_from == 0:
            return 0
        dropped = keep_from
        self.records = self.records[keep_from:]
        self._lsns = self._lsns[keep_from:]
        self.local_start_lsn = self.records[0].lsn if self.records else self.flush_lsn
        # Control first: after a crash between the two writes, load_wal skips records below local_start_lsn.
        self.persist_control()
        self._rewrite_wal()
        return dropped

    def _rewrite_wal(self) -> None:
        self.close()
        write_durably(self.wal_path, b"".join(json.dumps(r.to_json()).encode() + b"\n" for r in self.records))

    def maintenance(self) -> None:
        self.expire_walsenders()
        if self.trim() == 0 and self._persisted_commit_lsn != self.commit_lsn:
            self.persist_control()

    # ---- status

    def status(self, node_id: int) -> dict:
        """TimelineStatus with upstream's field names (`libs/safekeeper_api/src/models.rs`)."""
        self.expire_walsenders()
        now = time.monotonic()
        term = 1 if self.flush_lsn > self.timeline_start_lsn or self.last_append is not None else 0
        walreceivers = []
        if self.last_append is not None and now - self.last_append < WALRECEIVER_EXPIRY_S:
            walreceivers.append({"conn_id": 1, "status": "Streaming"})
        return {
            "tenant_id": self.tenant_id,
            "timeline_id": self.timeline_id,
            "mconf": self.control["mconf"],
            "acceptor_state": {
                "term": term,
                "epoch": term,
                "term_history": [{"term": term, "lsn": format_lsn(self.timeline_start_lsn)}] if term else [],
            },
            "pg_info": {
                "pg_version": self.control["pg_version"],
                "system_id": self.control["system_id"],
                "wal_seg_size": self.control["wal_seg_size"],
            },
            "flush_lsn": format_lsn(self.flush_lsn),
            "timeline_start_lsn": format_lsn(self.timeline_start_lsn),
            "local_start_lsn": format_lsn(self.local_start_lsn),
            "commit_lsn": format_lsn(self.commit_lsn),
            # No WAL offload to S3 in the simulator: committed WAL counts as backed up (documented deviation).
            "backup_lsn": format_lsn(self.commit_lsn),
            "peer_horizon_lsn": format_lsn(self.local_start_lsn),
            "remote_consistent_lsn": format_lsn(self.remote_consistent_lsn),
            "peers": list(self.peers.values()),
            "walsenders": [self._walsender_json(s) for s in self.walsenders.values()],
            "walreceivers": walreceivers,
        }

    def _walsender_json(self, s: Walsender) -> dict:
        secs = int(s.reply_time)
        return {
            "Interpreted": {
                "ttid": {"tenant_id": self.tenant_id, "timeline_id": self.timeline_id},
                "shard": {
                    "number": s.shard_number,
                    "count": s.shard_count,
                    "layout": 1,
                    "stripe_size": s.stripe_size if s.stripe_size is not None else 2048,
                },
                "addr": s.addr,
                "conn_id": s.conn_id,
                "appname": f"pageserver-{s.node_id}" if s.node_id is not None else None,
                "feedback": {
                    "Pageserver": {
                        "current_timeline_size": 0,
                        "last_received_lsn": format_lsn(s.last_received_lsn),
                        "disk_consistent_lsn": format_lsn(s.disk_consistent_lsn),
                        "remote_consistent_lsn": format_lsn(s.remote_consistent_lsn),
                        "replytime": {
                            "secs_since_epoch": secs,
                            "nanos_since_epoch": int((s.reply_time - secs) * 1e9),
                        },
                        "shard_number": s.shard_number,
                        "corruption_detected": False,
                    }
                },
            }
        }


# --- the safekeeper ----------------------------------------------------------------------------------------


def _hex_id(value, field_name: str) -> str:
    if value is None:
        raise BadRequest(f"Failed to parse json request: missing field `{field_name}`")
    if not isinstance(value, str) or len(value) != 32:
        raise BadRequest(f"Failed to parse json request: invalid {field_name} {value!r}")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise BadRequest(f"Failed to parse json request: invalid {field_name} {value!r}") from None
    return value.lower()


class Safekeeper:
    """All timelines of one safekeeper node; no HTTP here (see `create_node`)."""

    def __init__(self, node_id: int, data_dir: str | Path, fsync: bool = True, shard_of=None):
        self.node_id = node_id
        self.data_dir = Path(data_dir)
        self.fsync = fsync
        self.timelines: dict[tuple[str, str], Timeline] = {}
        # key_to_shard(key, shard_count, stripe_size); injected so unit tests need no sharding module.
        self._shard_of = shard_of
        self.stopping = False

    @property
    def timelines_dir(self) -> Path:
        return self.data_dir / "timelines"

    def load(self) -> None:
        if not self.timelines_dir.exists():
            return
        for tenant_dir in sorted(self.timelines_dir.iterdir()):
            for tl_dir in sorted(tenant_dir.iterdir()):
                control_path = tl_dir / "control.json"
                if not control_path.exists():
                    continue
                control = json.loads(control_path.read_text())
                tl = Timeline(tl_dir, tenant_dir.name, tl_dir.name, control, self.fsync)
                tl.load_wal()
                self.timelines[(tenant_dir.name, tl_dir.name)] = tl

    def shard_of(self, key: str, shard_count: int, stripe_size: int) -> int:
        if shard_count <= 1:
            return 0
        if self._shard_of is None:
            from neonsim.sharding import key_to_shard

            self._shard_of = key_to_shard
        return self._shard_of(key, shard_count, stripe_size)

    # ---- management API

    def create_timeline(self, body: dict) -> Timeline:
        """POST /v1/tenant/timeline: idempotent; an existing timeline is returned unchanged."""
        if not isinstance(body, dict):
            raise BadRequest("Failed to parse json request: body must be an object")
        tenant_id = _hex_id(body.get("tenant_id"), "tenant_id")
        timeline_id = _hex_id(body.get("timeline_id"), "timeline_id")
        for required in ("mconf", "pg_version", "start_lsn"):
            if required not in body:
                raise BadRequest(f"Failed to parse json request: missing field `{required}`")
        try:
            start_lsn = parse_lsn(body["start_lsn"])
            commit_lsn = parse_lsn(body.get("commit_lsn")) if body.get("commit_lsn") else start_lsn
        except ValueError as exc:
            raise BadRequest(f"Failed to parse json request: {exc}") from None
        mconf = body["mconf"]
        if not isinstance(mconf, dict) or "generation" not in mconf or "members" not in mconf:
            raise BadRequest("Failed to parse json request: mconf needs generation and members")
        existing = self.timelines.get((tenant_id, timeline_id))
        if existing is not None:
            return existing
        tl_dir = self.timelines_dir / tenant_id / timeline_id
        tl_dir.mkdir(parents=True, exist_ok=True)
        control = {
            "mconf": {
                "generation": mconf["generation"],
                "members": mconf["members"],
                "new_members": mconf.get("new_members"),
            },
            "pg_version": body["pg_version"],
            "system_id": body.get("system_id") or 0,
            "wal_seg_size": body.get("wal_seg_size") or DEFAULT_WAL_SEG_SIZE,
            "timeline_start_lsn": format_lsn(start_lsn),
            "local_start_lsn": format_lsn(start_lsn),
            "commit_lsn": format_lsn(commit_lsn),
        }
        tl = Timeline(tl_dir, tenant_id, timeline_id, control, self.fsync)
        tl.persist_control()
        tl.load_wal()
        self.timelines[(tenant_id, timeline_id)] = tl
        return tl

    def get(self, tenant_id: str, timeline_id: str) -> Timeline:
        tl = self.timelines.get((tenant_id.lower(), timeline_id.lower()))
        if tl is None:
            raise NotFound(f"NotFound: Timeline {tenant_id}/{timeline_id} was not found")
        return tl

    def list_timelines(self) -> list[dict]:
        return [{"tenant_id": t, "timeline_id": tl} for (t, tl) in sorted(self.timelines)]

    def delete_timeline(self, tenant_id: str, timeline_id: str) -> dict:
        key = (tenant_id.lower(), timeline_id.lower())
        tl = self.timelines.pop(key, None)
        tl_dir = self.timelines_dir / key[0] / key[1]
        dir_existed = tl_dir.exists()
        if tl is not None:
            tl.close()
        if dir_existed:
            shutil.rmtree(tl_dir)
        return {"dir_existed": dir_existed, "was_active": tl is not None and tl.last_append is not None}

    def delete_tenant(self, tenant_id: str) -> dict:
        tenant_id = tenant_id.lower()
        result = {}
        for t, tl in sorted(self.timelines):
            if t == tenant_id:
                result[tl] = self.delete_timeline(t, tl)
        tenant_dir = self.timelines_dir / tenant_id
        if tenant_dir.exists():
            for tl_dir in tenant_dir.iterdir():
                result.setdefault(tl_dir.name, {"dir_existed": True, "was_active": False})
            shutil.rmtree(tenant_dir)
        return result

    def utilization(self) -> dict:
        return {"timeline_count": len(self.timelines)}

    # ---- sim WAL protocol

    async def append(self, body: dict) -> dict:
        tl = self._timeline_from_body(body)
        records_json = body.get("records") or []
        if not isinstance(records_json, list):
            raise BadRequest("Failed to parse json request: records must be a list")
        records = [WalRecord.from_json(r) for r in records_json]
        try:
            commit_lsn = parse_lsn(body["commit_lsn"]) if body.get("commit_lsn") else None
        except ValueError as exc:
            raise BadRequest(f"Failed to parse json request: {exc}") from None
        async with tl.changed:
            flush_lsn = tl.append(records, commit_lsn)
            tl.changed.notify_all()
        return {"flush_lsn": format_lsn(flush_lsn), "commit_lsn": format_lsn(tl.commit_lsn)}

    async def commit(self, body: dict) -> dict:
        tl = self._timeline_from_body(body)
        try:
            commit_lsn = parse_lsn(body.get("commit_lsn") or None)
        except ValueError as exc:
            raise BadRequest(f"Failed to parse json request: {exc}") from None
        async with tl.changed:
            tl.advance_commit(commit_lsn)
            tl.changed.notify_all()
        return {"commit_lsn": format_lsn(tl.commit_lsn), "flush_lsn": format_lsn(tl.flush_lsn)}

    async def stream(self, query, addr: str = "127.0.0.1:0") -> dict:
        """GET /sim/wal/stream: committed records for one shard, long-polling up to wait_ms."""
        try:
            tenant_id = _hex_id(query.get("tenant_id"), "tenant_id")
            timeline_id = _hex_id(query.get("timeline_id"), "timeline_id")
            start_lsn = parse_lsn(query.get("start_lsn") or None)
            shard_count = int(query.get("shard_count") or 0)
            shard_number = int(query.get("shard_number") or 0)
            stripe_raw = query.get("stripe_size")
            stripe_size = int(stripe_raw) if stripe_raw not in (None, "", "null", "None") else None
            wait_ms = min(max(int(query.get("wait_ms") or 0), 0), 60_000)
            node_raw = query.get("node_id")
            params = {
                "node_id": int(node_raw) if node_raw not in (None, "") else None,
                "shard_number": shard_number,
                "shard_count": shard_count,
                "stripe_size": stripe_size,
                "last_received_lsn": parse_lsn(query.get("last_received_lsn") or None),
                "disk_consistent_lsn": parse_lsn(query.get("disk_consistent_lsn") or None),
                "remote_consistent_lsn": parse_lsn(query.get("remote_consistent_lsn") or None),
            }
        except ValueError as exc:
            raise BadRequest(f"invalid stream request: {exc}") from None
        if shard_count > 1 and not 0 <= shard_number < shard_count:
            raise BadRequest(f"invalid stream request: shard {shard_number} of {shard_count}")
        tl = self.get(tenant_id, timeline_id)
        if start_lsn < tl.local_start_lsn and tl.local_start_lsn > tl.timeline_start_lsn:
            # Upstream's walsender reads a removed segment and fails the same way.
            raise WalRemoved(
                f"requested WAL segment for LSN {format_lsn(start_lsn)} has already been removed "
                f"(local_start_lsn {format_lsn(tl.local_start_lsn)})"
            )
        start_lsn = max(start_lsn, tl.local_start_lsn)

        def in_shard(key: str) -> bool:
            if shard_count <= 1:
                return True
            return self.shard_of(key, shard_count, stripe_size or 2048) == shard_number

        # A walproposer recovering WAL for a lagging peer is not a walsender to a pageserver.
        is_recovery = query.get("appname") == "walproposer"
        sender = None if is_recovery else tl.register_walsender(params, addr)
        if sender is not None:
            sender.active_polls += 1
        try:
            deadline = time.monotonic() + wait_ms / 1000.0
            async with tl.changed:
                while True:
                    records, end_lsn = tl.committed_records(start_lsn, in_shard)
                    remaining = deadline - time.monotonic()
                    gone = self.stopping or self.timelines.get((tenant_id, timeline_id)) is not tl
                    if end_lsn > start_lsn or remaining <= 0 or gone:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(tl.changed.wait(), remaining)
        finally:
            if sender is not None:
                sender.active_polls -= 1
                sender.last_seen = time.monotonic()
        return {
            "records": [r.to_json() for r in records],
            "commit_lsn": format_lsn(tl.commit_lsn),
            "end_lsn": format_lsn(end_lsn),
            "flush_lsn": format_lsn(tl.flush_lsn),
            "local_start_lsn": format_lsn(tl.local_start_lsn),
        }

    def _timeline_from_body(self, body) -> Timeline:
        if not isinstance(body, dict):
            raise BadRequest("Failed to parse json request: body must be an object")
        return self.get(_hex_id(body.get("tenant_id"), "tenant_id"), _hex_id(body.get("timeline_id"), "timeline_id"))

    # ---- background

    def maintenance(self) -> None:
        for tl in list(self.timelines.values()):
            tl.maintenance()

    async def run_background(self) -> None:
        while True:
            await asyncio.sleep(TRIM_INTERVAL_S)
            # A full or broken disk must not kill the node; the next round retries.
            with contextlib.suppress(OSError):
                self.maintenance()

    def close(self) -> None:
        for tl in self.timelines.values():
            tl.close()


# --- the node (HTTP + pg ports) ----------------------------------------------------------------------------


def _http_scope_rule(request, claims: dict) -> bool:
    # Timeline creation carries its tenant in the body: a tenant token may pass here, the handler checks it.
    if request.method == "POST" and route_path(request) == "/v1/tenant/timeline" and claims.get("scope") == "tenant":
        return True
    return safekeeper_scope_rule(request, claims)


def _error_response(exc: SafekeeperError) -> web.Response:
    return json_response({"msg": exc.message, **exc.extra}, status=exc.status)


class SafekeeperNode(Node):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.sk = Safekeeper(ctx.node_id, ctx.data_dir, fsync=ctx.node.get("fsync", True))
        self.sk.load()
        self._background: asyncio.Task | None = None
        self._gossip: asyncio.Task | None = None
        self.http = ctx.make_http_app(scope_rule=_http_scope_rule, allow=SAFEKEEPER_ALLOW)
        r = self.http.router
        r.add_get("/v1/status", self.status)
        r.add_get("/v1/utilization", self.utilization)
        r.add_post("/v1/tenant/timeline", self.create_timeline)
        r.add_get("/v1/tenant/timeline", self.list_timelines)
        r.add_get("/v1/tenant/{tenant_id}/timeline/{timeline_id}", self.timeline_status)
        r.add_delete("/v1/tenant/{tenant_id}/timeline/{timeline_id}", self.delete_timeline)
        r.add_delete("/v1/tenant/{tenant_id}", self.delete_tenant)
        self.pg = ctx.make_pg_app()
        self.pg.router.add_post("/sim/wal/append", self.wal_append)
        self.pg.router.add_post("/sim/wal/commit", self.wal_commit)
        self.pg.router.add_get("/sim/wal/stream", self.wal_stream)

    def apps(self):
        return {self.ctx.node["http_port"]: self.http, self.ctx.node["pg_port"]: self.pg}

    async def start(self) -> None:
        self._background = asyncio.ensure_future(self.sk.run_background())
        self._gossip = asyncio.ensure_future(self._gossip_loop())

    async def _gossip_loop(self) -> None:
        """Poll peer safekeepers' TimelineStatus every second (stand-in for the storage broker, contracts §5.4)."""
        peers = [p for p in self.ctx.safekeepers() if p.get("node_id") != self.sk.node_id]
        while peers:
            await asyncio.sleep(GOSSIP_INTERVAL_S)
            for (tenant_id, timeline_id), tl in list(self.sk.timelines.items()):
                for peer in peers:
                    url = f"{self.ctx.http_url(peer['name'])}/v1/tenant/{tenant_id}/timeline/{timeline_id}"
                    try:
                        async with self.ctx.session.get(
                            url, headers=self.ctx.auth_headers("safekeeper"), timeout=aiohttp.ClientTimeout(total=1)
                        ) as resp:
                            if resp.status != 200:
                                continue
                            status = await resp.json()
                    except (aiohttp.ClientError, TimeoutError, ValueError):
                        tl.peers.pop(peer["node_id"], None)
                        continue
                    with contextlib.suppress(KeyError, ValueError, TypeError):
                        async with tl.changed:
                            tl.learn_from_peer(
                                peer["node_id"],
                                status,
                                f"127.0.0.1:{peer['pg_port']}",
                                f"127.0.0.1:{peer['http_port']}",
                            )
                            tl.changed.notify_all()

    async def stop(self) -> None:
        # Answer pending long-polls now so the HTTP server can drain quickly.
        self.sk.stopping = True
        for tl in self.sk.timelines.values():
            async with tl.changed:
                tl.changed.notify_all()
        for task in (self._background, self._gossip):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for tl in self.sk.timelines.values():
            tl.persist_control()
        self.sk.close()

    def health(self) -> dict:
        return {"timelines": len(self.sk.timelines)}

    # ---- HTTP port

    async def status(self, request):
        return json_response({"id": self.sk.node_id})

    async def utilization(self, request):
        return json_response(self.sk.utilization())

    async def create_timeline(self, request):
        body = await read_json(request)
        claims = request.get("claims")
        if claims is not None and claims.get("scope") == "tenant":
            tenant = body.get("tenant_id") if isinstance(body, dict) else None
            if not isinstance(tenant, str) or (claims.get("tenant_id") or "").lower() != tenant.lower():
                raise ApiError(403, "Forbidden: JWT authentication error")
        try:
            self.sk.create_timeline(body)
        except SafekeeperError as exc:
            return _error_response(exc)
        return json_response(None)

    async def list_timelines(self, request):
        return json_response(self.sk.list_timelines())

    async def timeline_status(self, request):
        try:
            tl = self.sk.get(request.match_info["tenant_id"], request.match_info["timeline_id"])
        except SafekeeperError as exc:
            return _error_response(exc)
        return json_response(tl.status(self.sk.node_id))

    async def delete_timeline(self, request):
        result = self.sk.delete_timeline(request.match_info["tenant_id"], request.match_info["timeline_id"])
        return json_response(result)

    async def delete_tenant(self, request):
        return json_response(self.sk.delete_tenant(request.match_info["tenant_id"]))

    # ---- pg port (sim-only WAL protocol)

    async def wal_append(self, request):
        body = await read_json(request)
        try:
            return json_response(await self.sk.append(body))
        except SafekeeperError as exc:
            return _error_response(exc)

    async def wal_commit(self, request):
        body = await read_json(request)
        try:
            return json_response(await self.sk.commit(body))
        except SafekeeperError as exc:
            return _error_response(exc)

    async def wal_stream(self, request):
        peer = request.transport.get_extra_info("peername") if request.transport else None
        addr = f"{peer[0]}:{peer[1]}" if peer else "127.0.0.1:0"
        try:
            return json_response(await self.sk.stream(request.query, addr))
        except SafekeeperError as exc:
            return _error_response(exc)


async def create_node(ctx):
    return SafekeeperNode(ctx)
