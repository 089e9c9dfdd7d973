"""Simulated compute_ctl (upstream `compute_tools/src/http/`): `/status`, `/configure`, plus the sim-only
workload (`/sim/workload`).

There is no Postgres: "applying" a spec means writing `{compute dir}/pgdata/postgresql.conf` with the
`neon.pageserver_connstring` / `neon.stripe_size` lines compute_ctl writes, keeping the applied spec at
`{compute dir}/spec.json` (contracts §3), and switching the workload's reads to the new pageservers at the moment
the file is written (the "reload"). A compute whose spec.json exists resumes it on start (status running).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from neonsim._auth import COMPUTE_ALLOW
from neonsim._durable import write_durably
from neonsim._server import ApiError, Node, json_response, read_json
from neonsim.sharding import shard_index
from neonsim.workload import PageserverConn, Workload, http_base

log = logging.getLogger("neonsim.compute")

CONFIGURE_ALLOWED = ("empty", "running")
DEFAULT_PENDING_DELAY_S = 0.05
DEFAULT_APPLY_DELAY_S = 0.1
# Catalog sync (roles, databases) runs unless skip_pg_catalog_updates; makes a big spec take visibly longer.
CATALOG_ITEM_DELAY_S = 0.02
MAX_CATALOG_DELAY_S = 10.0
_SHARD_INDEX = re.compile(r"^[0-9a-f]{4}$")


class SpecError(ValueError):
    """The spec is invalid → 400 (compute_ctl rejects it before changing state)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _missing(field: str, where: str = "") -> SpecError:
    # Wording of compute_ctl's JSON extractor rejection (serde "missing field").
    return SpecError(f"Failed to deserialize the JSON body into the target type: {where}missing field `{field}`")


def validate_request(body) -> tuple[dict, dict]:
    """ConfigurationRequest → (spec, compute_ctl_config); SpecError on anything compute_ctl would refuse."""
    if not isinstance(body, dict):
        raise SpecError("Failed to deserialize the JSON body into the target type: expected a JSON object")
    if "spec" not in body:
        raise _missing("spec")
    if "compute_ctl_config" not in body:
        raise _missing("compute_ctl_config")
    config = body["compute_ctl_config"]
    if not isinstance(config, dict) or "jwks" not in config:
        raise _missing("jwks", "compute_ctl_config: ")
    if not isinstance(config["jwks"], dict) or not isinstance(config["jwks"].get("keys"), list):
        raise _missing("keys", "compute_ctl_config.jwks: ")
    spec = body["spec"]
    if not isinstance(spec, dict):
        raise SpecError("Failed to deserialize the JSON body into the target type: spec: expected a JSON object")
    for field in ("format_version", "cluster", "suspend_timeout_seconds"):
        if field not in spec:
            raise _missing(field, "spec: ")
    cluster = spec["cluster"]
    if not isinstance(cluster, dict):
        raise SpecError("Failed to deserialize the JSON body into the target type: spec.cluster: expected an object")
    for field in ("roles", "databases"):
        if field not in cluster:
            raise _missing(field, "spec.cluster: ")
    pageserver_conn(spec)  # raises SpecError when the pageserver address is inconsistent or absent
    return spec, config


def _cluster_setting(spec: dict, name: str):
    for setting in (spec.get("cluster") or {}).get("settings") or []:
        if isinstance(setting, dict) and setting.get("name") == name:
            return setting.get("value")
    return None


def pageserver_conn(spec: dict) -> tuple[PageserverConn, str, int | None]:
    """(reads target, connstring, stripe_size) from a spec (upstream `libs/compute_api/src/spec.rs`):
    pageserver_connection_info preferred, then the legacy `pageserver_connstring` + `shard_stripe_size`, then the
    cluster setting."""
    legacy = spec.get("pageserver_connstring") or _cluster_setting(spec, "neon.pageserver_connstring")
    legacy_urls = [u.strip() for u in legacy.split(",")] if isinstance(legacy, str) and legacy.strip() else None
    info = spec.get("pageserver_connection_info")
    if info is not None:
        urls, shard_count, stripe_size = _urls_from_info(info)
        if legacy_urls is not None and legacy_urls != urls:
            raise SpecError(
                "pageserver_connstring does not match pageserver_connection_info: "
                f"{','.join(legacy_urls)!r} != {','.join(urls)!r}"
            )
        legacy_stripe = spec.get("shard_stripe_size")
        if shard_count > 0 and legacy_stripe is not None and legacy_stripe != stripe_size:
            raise SpecError(
                f"shard_stripe_size {legacy_stripe} does not match pageserver_connection_info {stripe_size}"
            )
    elif legacy_urls is not None:
        urls = legacy_urls
        shard_count = 0 if len(urls) == 1 else len(urls)
        stripe_size = spec.get("shard_stripe_size")
        if shard_count > 0 and stripe_size is None:
            raise SpecError("shard_stripe_size is required with a sharded pageserver_connstring")
    else:
        raise SpecError("spec has no pageserver_connection_info and no pageserver_connstring")
    try:
        bases = tuple(http_base(u) for u in urls)
    except ValueError as exc:
        raise SpecError(f"invalid pageserver url: {exc}") from None
    written_stripe = stripe_size if stripe_size is not None else spec.get("shard_stripe_size")
    return PageserverConn(shard_count, stripe_size, bases), ",".join(urls), written_stripe


def _urls_from_info(info) -> tuple[list[str], int, int | None]:
    if not isinstance(info, dict):
        raise SpecError("pageserver_connection_info must be an object")
    shard_count = info.get("shard_count")
    if not isinstance(shard_count, int) or isinstance(shard_count, bool) or not 0 <= shard_count <= 255:
        raise SpecError(f"pageserver_connection_info.shard_count invalid: {shard_count!r}")
    stripe_size = info.get("stripe_size")
    if shard_count == 0 and stripe_size is not None:
        raise SpecError("pageserver_connection_info.stripe_size must be null for an unsharded tenant")
    if shard_count > 0 and (not isinstance(stripe_size, int) or isinstance(stripe_size, bool) or stripe_size <= 0):
        raise SpecError("pageserver_connection_info.stripe_size is required for a sharded tenant")
    shards = info.get("shards")
    if not isinstance(shards, dict) or not shards:
        raise SpecError("pageserver_connection_info.shards must be a non-empty map")
    expected = {shard_index(n, shard_count) for n in range(max(shard_count, 1))}
    for key in shards:
        if not _SHARD_INDEX.match(key):
            raise SpecError(f"invalid shard index {key!r} in pageserver_connection_info.shards")
    if set(shards) != expected:
        raise SpecError(
            f"pageserver_connection_info.shards keys {sorted(shards)} do not match shard_count {shard_count}"
        )
    urls = []
    for key in sorted(expected, key=lambda k: int(k[:2], 16)):
        pageservers = (shards[key] or {}).get("pageservers") if isinstance(shards[key], dict) else None
        if not pageservers or not isinstance(pageservers, list) or not isinstance(pageservers[0], dict):
            raise SpecError(f"shard {key} has no pageservers")
        # compute_ctl uses the first pageserver of each shard.
        url = pageservers[0].get("libpq_url")
        if not url:
            raise SpecError(f"shard {key}: first pageserver has no libpq_url")
        urls.append(url)
    return urls, shard_count, stripe_size


def catalog_delay(spec: dict) -> float:
    if spec.get("skip_pg_catalog_updates"):
        return 0.0
    cluster = spec.get("cluster") or {}
    items = len(cluster.get("roles") or []) + len(cluster.get("databases") or [])
    return min(items * CATALOG_ITEM_DELAY_S, MAX_CATALOG_DELAY_S)


def render_postgresql_conf(spec: dict, connstring: str, stripe_size: int | None) -> str:
    lines = [
        "# Written by neonsim compute_ctl; neon.* lines as compute_ctl writes them.",
        "listen_addresses = '127.0.0.1'",
        f"neon.pageserver_connstring = '{connstring}'",
    ]
    if stripe_size is not None:
        lines.append(f"neon.stripe_size = {int(stripe_size)}")
    if spec.get("tenant_id"):
        lines.append(f"neon.tenant_id = '{spec['tenant_id']}'")
    if spec.get("timeline_id"):
        lines.append(f"neon.timeline_id = '{spec['timeline_id']}'")
    if spec.get("safekeeper_connstrings"):
        lines.append(f"neon.safekeepers = '{','.join(spec['safekeeper_connstrings'])}'")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, text)


class ComputeCtl:
    """compute_ctl's state machine; no HTTP here."""

    def __init__(
        self,
        compute_id: str,
        data_dir: str | Path,
        pending_delay_s: float = DEFAULT_PENDING_DELAY_S,
        apply_delay_s: float = DEFAULT_APPLY_DELAY_S,
        pgdata: str | Path | None = None,
        spec_path: str | Path | None = None,
    ):
        self.compute_id = compute_id
        self.data_dir = Path(data_dir)
        self._pgdata = Path(pgdata) if pgdata else self.data_dir / "pgdata"
        self._spec_path = Path(spec_path) if spec_path else self.data_dir / "spec.json"
        self.status = "empty"
        self.start_time = _now()
        self.last_active: str | None = None
        self.error: str | None = None
        self.spec: dict | None = None
        self.conn: PageserverConn | None = None
        self.pending_delay_s = pending_delay_s
        self.apply_delay_s = apply_delay_s
        # async callback(spec) after each applied spec (the workload hooks in here)
        self.on_applied: Callable[[dict], Awaitable[None]] | None = None
        self.apply_failure: str | None = None  # test hook: the next apply fails with this text

    @property
    def pgdata(self) -> Path:
        return self._pgdata

    @property
    def spec_path(self) -> Path:
        return self._spec_path

    @property
    def postgresql_conf(self) -> Path:
        return self.pgdata / "postgresql.conf"

    def resume(self) -> bool:
        """Start in `running` with the spec applied before a restart, if any (like a compute started with a spec)."""
        if not self.spec_path.exists():
            return False
        try:
            spec = json.loads(self.spec_path.read_text())
            conn, connstring, stripe = pageserver_conn(spec)
        except (ValueError, OSError) as exc:
            log.error("cannot resume spec %s: %s", self.spec_path, exc)
            return False
        self.spec, self.conn, self.status = spec, conn, "running"
        # compute_ctl renders postgresql.conf from its spec at every start, so a restart picks up a changed spec.
        _write_atomic(self.postgresql_conf, render_postgresql_conf(spec, connstring, stripe))
        return True

    def status_json(self) -> dict:
        spec = self.spec or {}
        return {
            "start_time": self.start_time,
            "tenant": spec.get("tenant_id"),
            "timeline": spec.get("timeline_id"),
            "status": self.status,
            "last_active": self.last_active,
            "error": self.error,
        }

    def mark_active(self) -> None:
        self.last_active = _now()

    async def configure(self, body) -> dict:
        """POST /configure; returns the status body or raises ApiError like compute_ctl."""
        if self.status not in CONFIGURE_ALLOWED:
            raise ApiError(412, f"invalid compute status: {self.status.replace('_', '-')}")
        try:
            spec, _config = validate_request(body)
            conn, connstring, stripe = pageserver_conn(spec)
        except SpecError as exc:
            raise ApiError(400, str(exc)) from None
        was_empty = self.status == "empty"
        self.status = "configuration_pending"
        self.error = None
        try:
            await asyncio.sleep(self.pending_delay_s)
            self.status = "configuration"
            await asyncio.sleep(self.apply_delay_s + catalog_delay(spec))
            if self.apply_failure:
                failure, self.apply_failure = self.apply_failure, None
                raise OSError(failure)
            _write_atomic(self.postgresql_conf, render_postgresql_conf(spec, connstring, stripe))
            _write_atomic(self.spec_path, json.dumps(spec, indent=2, sort_keys=True))
            # The "reload": reads issued from here on use the new pageservers.
            self.spec, self.conn = spec, conn
            if was_empty:
                self.start_time = _now()
            if self.on_applied is not None:
                await self.on_applied(spec)
        except asyncio.CancelledError:
            self.status = "failed"
            self.error = "configuration was cancelled"
            raise
        except Exception as exc:
            self.status = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            raise ApiError(500, f"compute configuration failed: {self.error}") from exc
        self.status = "running"
        return self.status_json()


class ComputeNode(Node):
    def __init__(self, ctx):
        super().__init__(ctx)
        entry = ctx.node
        self.ctl = ComputeCtl(
            entry.get("compute_id") or ctx.name,
            ctx.data_dir,
            pending_delay_s=entry.get("configure_pending_delay_ms", DEFAULT_PENDING_DELAY_S * 1000) / 1000.0,
            apply_delay_s=entry.get("configure_apply_delay_ms", DEFAULT_APPLY_DELAY_S * 1000) / 1000.0,
            pgdata=entry.get("pgdata"),
            spec_path=entry.get("spec_path"),
        )
        self.ctl.on_applied = self._spec_applied
        self.workload_options = dict(entry.get("workload") or {})
        self.workload: Workload | None = None
        self._last_connstring: str | None = None  # the history file's last entry, read once
        # compute_ctl's axum router matches paths exactly (upstream `compute_tools/src/http/server.rs`)
        self.http = ctx.make_http_app(error_key="error", auth_mode="compute", allow=COMPUTE_ALLOW, trailing_slash=False)
        r = self.http.router
        r.add_get("/status", self.status)
        r.add_post("/configure", self.configure)
        r.add_get("/sim/workload", self.workload_report)
        r.add_post("/sim/workload", self.workload_action)
        r.add_get("/sim/compute", self.sim_compute)

    def apps(self):
        return {self.ctx.node["http_port"]: self.http}

    async def start(self) -> None:
        if self.ctl.resume() and self.ctl.spec is not None:
            await self._spec_applied(self.ctl.spec)

    async def stop(self) -> None:
        if self.workload is not None:
            await self.workload.close()

    def health(self) -> dict:
        return {"compute_status": self.ctl.status}

    # ---- workload wiring

    def _headers(self, spec: dict) -> dict:
        token = spec.get("storage_auth_token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def _history_path(self) -> Path:
        return self.ctx.data_dir / "pageserver_history.jsonl"

    def _pageserver_history(self) -> list[dict]:
        try:
            lines = self._history_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def _record_pageserver(self, spec: dict) -> None:
        """Append to the sim's record of which pageservers this compute read from, and since when (kept across
        restarts), so a test can order a cutover against the pageservers' own location changes."""
        try:
            _conn, connstring, _stripe = pageserver_conn(spec)
        except SpecError:
            return
        if self._last_connstring is None:
            history = self._pageserver_history()
            self._last_connstring = history[-1]["connstring"] if history else ""
        if connstring == self._last_connstring:
            return
        self._last_connstring = connstring
        with open(self._history_path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"ts": round(time.time(), 6), "connstring": connstring}) + "\n")

    async def _spec_applied(self, spec: dict) -> None:
        self._record_pageserver(spec)
        safekeepers = list(spec.get("safekeeper_connstrings") or [])
        if self.workload is None:
            self.workload = Workload(
                self.ctx.session,
                self.ctl.compute_id,
                str(spec.get("tenant_id") or self.ctx.node.get("tenant_id")),
                str(spec.get("timeline_id") or self.ctx.node.get("timeline_id")),
                safekeepers,
                lambda: self.ctl.conn,
                self.ctx.data_dir,
                headers=self._headers(spec),
                options=self.workload_options,
                on_activity=self.ctl.mark_active,
            )
            if self.workload_options.get("enabled") and safekeepers:
                await self.workload.start()
        else:
            self.workload.headers = self._headers(spec)
            await self.workload.set_safekeepers(safekeepers)

    def _require_workload(self) -> Workload:
        if self.workload is None:
            raise ApiError(412, "compute has no spec yet: configure it first")
        return self.workload

    # ---- handlers

    async def status(self, request):
        return json_response(self.ctl.status_json())

    async def configure(self, request):
        body = await read_json(request)
        # Like compute_ctl, the configuration runs to completion even if the caller goes away.
        result = await asyncio.shield(asyncio.ensure_future(self.ctl.configure(body)))
        return json_response(result)

    async def sim_compute(self, request):
        return json_response({"pageserver_history": self._pageserver_history()})

    async def workload_report(self, request):
        if self.workload is None:
            return json_response({"configured": False, "running": False, "writes_acked": 0, "verified": False})
        return json_response(self.workload.report())

    async def workload_action(self, request):
        body = await read_json(request)
        action = body.get("action") if isinstance(body, dict) else None
        workload = self._require_workload()
        options = {k: v for k, v in body.items() if k != "action"}
        if action == "start":
            if not workload.safekeepers:
                raise ApiError(400, "spec has no safekeeper_connstrings")
            await workload.start(**options)
        elif action == "stop":
            await workload.stop()
        elif action == "reset":
            await workload.stop()
            workload.reset_counters()
        elif action == "verify":
            return json_response(await workload.verify(timeout_ms=int(options.get("timeout_ms") or 5000)))
        else:
            raise ApiError(400, f"unknown workload action {action!r}: use start, stop, reset or verify")
        return json_response(workload.report())


async def create_node(ctx):
    return ComputeNode(ctx)
