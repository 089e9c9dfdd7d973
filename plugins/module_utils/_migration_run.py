# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""The tenant-migration runbook's executor: one call per phase reads, acts and waits.

Internal to neonops.storage; may change in any release. Decisions come from ``_migration``; this file only reads
the fleet, applies them and keeps two files on the controller:

- the tenant's lock file ``<state_dir>/<tenant_id>.lock``: the owner (host, pid, run id), a heartbeat and the phase
  refreshed at every step, and the journal (the tenant's original overrides, generations and catch-up baseline) that
  lets a rerun of an interrupted move continue;
- the run's state ``<state_dir>/<run_id>.run.json``: this run's progress (phases, figures, plan, outcome), rewritten
  at every step and removed at the end, when the report ``<report_dir>/<run_id>.json`` and its Markdown summary
  ``<run_id>.md`` are written.

Every request goes through ``NeonClient`` (one per service), built by the caller with the connection options.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import UTC, datetime

from ansible_collections.neonops.storage.plugins.module_utils import _migration as decide
from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils import _s3
from ansible_collections.neonops.storage.plugins.module_utils import _safekeeper as sk
from ansible_collections.neonops.storage.plugins.module_utils import _storcon as storcon
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError, NeonClient
from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn
from ansible_collections.neonops.storage.plugins.module_utils._migration import MigrationError
from ansible_collections.neonops.storage.plugins.module_utils._poll import PollTimeout, backoff, poll

# How long a destination may wait for the source's just-uploaded heatmap to show up in remote storage.
HEATMAP_WAIT_SECONDS = 30.0
# How long the destination may take, after catch-up, to reach the safekeepers' latest commit_lsn before cutover.
CLOSE_GAP_SECONDS = 5.0
# How long the destination may take to answer Active right before the computes switch (it was Active moments ago).
CUTOVER_CHECK_SECONDS = 10.0
# 409: another change of the same slot is running; 503: the pageserver is shutting the slot down or starting.
BUSY_STATUSES = (409, 503)
# The phases a step call runs (rollback runs inside recover); the module adds begin and end around them.
PHASES = ("suspend", "prewarm", "stale", "copy", "attach", "catchup", "failover", "finalize", "verify", "recover")
# Rounds of list, copy and verify in one copy pass: a source that keeps rewriting its index_part under a live
# workload needs a few; one that never settles fails the pass (and the move rolls back).
COPY_ROUNDS = 6

try:
    from botocore.exceptions import BotoCoreError, ClientError

    S3_ERRORS: tuple = (BotoCoreError, ClientError, _s3.S3LayoutError)
except ImportError:  # boto3 is needed only for a move between different S3 locations
    S3_ERRORS = (_s3.S3LayoutError,)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- files ---------------------------------------------------------------------------------------------------


def read_json_file(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MigrationError(f"{what} {path} cannot be read: {exc}") from None


def write_json_file(path: str, content: dict, exclusive: bool = False, mode: int = 0o600) -> bool:
    """Write durably (temp file, fsync, rename, fsync of the directory). ``exclusive``: only if absent."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    data = json.dumps(content, indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if exclusive:
            try:
                os.link(tmp, path)  # fails when the file exists: two runs cannot both create the lock
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def process_alive(pid) -> bool | None:
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return None
    if pid <= 0:
        return False
    return os.path.exists(f"/proc/{pid}")


# ---- the run -------------------------------------------------------------------------------------------------


class MigrationRun:
    """One run of the runbook. ``clients(url, token, field)`` builds a ``NeonClient``."""

    def __init__(
        self, params: dict, clients, warn, clock=time.time, sleep=time.sleep, monotonic=time.monotonic, s3_client=None
    ):
        self.p = params
        self._client_factory = clients
        self._s3_factory = s3_client or default_s3_client
        self._s3 = None
        self._clients: dict[str, NeonClient] = {}
        self.warn = warn
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.changed = False
        self.run: dict = {}
        self.lock_path = os.path.join(params["state_dir"], f"{params['tenant_id']}.lock")
        self.report_path = os.path.join(params["report_dir"], f"{params['run_id']}.json")
        self.run_path = os.path.join(params["state_dir"], f"{params['run_id']}.run.json")

    # -- clients

    def client(self, role: str):
        if role not in self._clients:
            run = self.run
            if role == "source":
                url, token, field = run["source"]["api_url"], self.p.get("pageserver_api_token"), "source.api_url"
            elif role == "destination":
                url, token = run["destination"]["api_url"], self.p.get("pageserver_api_token")
                field = "destination.api_url"
            elif role == "storcon":
                url, token, field = run["storcon"]["url"], self.p.get("storcon_api_token"), "storcon_url"
            else:
                index = int(role.split(":", 1)[1])
                url, token = run["safekeeper_urls"][index], self.p.get("safekeeper_api_token")
                field = f"safekeeper_urls[{index}]"
            self._clients[role] = self._client_factory(url, token, field)
        return self._clients[role]

    @property
    def src(self):
        return self.client("source")

    @property
    def dst(self):
        return self.client("destination")

    @property
    def sc(self):
        return self.client("storcon")

    def safekeepers(self):
        return [self.client(f"sk:{i}") for i in range(len(self.run["safekeeper_urls"]))]

    # -- persistence

    def load(self):
        self.run = read_json_file(self.run_path, "the run's state")
        if not self.run:
            raise MigrationError(f"run {self.p['run_id']}: no state at {self.run_path}; the begin step did not run")
        if self.run.get("lock_held") and not self.holds_lock():
            raise MigrationError(
                f"run {self.p['run_id']} no longer holds {self.lock_path}: another run took the lock over; stopping"
            )

    def save(self):
        self.run["updated"] = iso(self.clock())
        write_json_file(self.run_path, self.run)

    def holds_lock(self) -> bool:
        holder = read_json_file(self.lock_path, "the lock file")
        return (holder.get("owner") or {}).get("run_id") == self.p["run_id"] and not holder.get("released")

    def journal(self) -> dict:
        run = self.run
        return {
            "source": run["source"]["name"],
            "destination": run["destination"]["name"],
            "run_id": self.p["run_id"],
            "phase": run.get("phase", "preflight"),
            "timeline_ids": run.get("timeline_ids", []),
            "generations": run.get("generations", {}),
            "baseline": run.get("baseline", {}),
            "cutover_started": run.get("cutover_started", False),
            "shards": {s["tsid"]: decide.shard_originals(s) for s in run.get("shards", [])},
            "storcon_scheduling": run.get("storcon_scheduling", ""),
        }

    def write_lock(self, phase: str):
        """Refresh the heartbeat and persist the journal (before the phase acts)."""
        self.run["phase"] = phase
        if not self.run.get("lock_held"):
            return
        holder = read_json_file(self.lock_path, "the lock file")
        holder.update(
            {
                "owner": self.run["owner"],
                "heartbeat_s": self.clock(),
                "released": False,
                "phase": phase,
                "journal": self.journal(),
            }
        )
        write_json_file(self.lock_path, holder)

    # -- phases

    def begin_phase(self, name: str):
        now = self.clock()
        self.close_open_phase(now)
        self.run.setdefault("phases", []).append({"name": name, "start": iso(now), "start_s": now})
        self.write_lock(name)
        self.save()

    def end_phase(self, name: str):
        now = self.clock()
        for phase in reversed(self.run.get("phases", [])):
            if phase["name"] == name and "end" not in phase:
                phase.update({"end": iso(now), "seconds": round(now - phase["start_s"], 3)})
                break
        self.save()

    def close_open_phase(self, now):
        for phase in self.run.get("phases", []):
            if "end" not in phase:
                phase.update({"end": iso(now), "seconds": round(now - phase["start_s"], 3)})

    def step(self, phase: str) -> dict:
        """Run one phase of a run that ``begin`` started."""
        if phase not in PHASES:
            raise MigrationError(f"phase: unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        self.load()
        self.begin_phase(phase)
        try:
            getattr(self, f"phase_{phase}")()
        except (MigrationError, NeonAPIError, PollTimeout) as exc:
            self.run["failed_phase"] = phase
            self.end_phase(phase)
            raise MigrationError(str(exc)) from None
        self.end_phase(phase)
        return self.result()

    def result(self) -> dict:
        keys = ("path", "stages", "generations", "outcome", "recovery", "compute_targets", "plan", "error")
        out = {k: self.run.get(k) for k in keys if k in self.run}
        if "copy" in self.run:
            out["s3_copy"] = self.run["copy"]  # not "copy": Jinja would find the dict's copy() method
        # Not "warnings": Ansible shows that key at every step; these go to the report and the summary.
        out["run_warnings"] = self.run.get("warnings", [])
        out["computes"] = [
            {k: c.get(k) for k in ("name", "api_url", "pgdata", "spec_path") if c.get(k) is not None}
            for c in self.run.get("computes") or []
        ]
        out["report_path"] = self.report_path
        return out

    # ==== begin: lock, discover, preflight, plan, controller hold ===========================================

    def begin(self, check_mode: bool) -> dict:
        p = self.p
        now = self.clock()
        tenant_id = decide.validate_tenant(p["tenant_id"])
        self.run = {
            "run_id": p["run_id"],
            "tenant_id": tenant_id,
            "check_mode": check_mode,
            "started": iso(p.get("started_s") or now),
            "started_s": p.get("started_s") or now,
            "owner": {**(p.get("owner") or {}), "run_id": p["run_id"]},
            "options": dict(p["settings"]),
            "phases": [],
            "warnings": [],
            "outcome": "unknown",
            "error": "",
            "lock_held": False,
            "cutover_started": False,
            "generations": {},
            "baseline": {},
            "targets": {},
            "computes_switched": [],
            "recreated_timelines": [],
            "bytes_warmed": 0,
            "bytes_warm_total": 0,
            "storcon_restored": False,
            "s3": public_s3_settings(p.get("s3")),
            "copy_passes": [],
            "destination_attached": False,
        }
        try:
            self._resolve(tenant_id)
            self._lock(check_mode)
            self._discover()
            self._preflight()
            self.run["plan"] = decide.plan_lines(self.run, self.run["options"])
            self.run["compute_targets"] = self.compute_targets()
            if check_mode:
                self.run["outcome"] = "planned"
                self.finish_report()
            elif self.run["path"] != "done" and self.run["storcon_known"] and self.run["storcon_scheduling"] != "Stop":
                self.write_lock("preflight")  # the policy to restore is in the journal before it changes
                storcon.set_tenant_scheduling(self.sc, tenant_id, "Stop")
                self.changed = True
                self.run["storcon_held"] = True
            if not check_mode:
                self.save()
        except (MigrationError, NeonAPIError, PollTimeout) as exc:
            self.run["error"] = str(exc)
            self.run["failed_phase"] = "preflight"
            if check_mode:
                self.run["outcome"] = "failed_preflight"
                self.finish_report()
            else:
                self.save()
            raise MigrationError(str(exc)) from None
        return self.result()

    def _resolve(self, tenant_id):
        p, s = self.p, self.p["settings"]
        nodes = p["pageservers"] or []
        for node in nodes:
            for key in ("name", "node_id", "api_url", "pg_addr"):
                if node.get(key) in (None, ""):
                    raise MigrationError(f"pageservers: inventory host {node.get('name')!r} has no {key}")
        source = decide.resolve_node(nodes, p["source"], "source")
        destination = decide.resolve_node(nodes, p["destination"], "destination")
        if source["name"] == destination["name"]:
            raise MigrationError(f"source and destination are both {source['name']}: they must differ")
        for node in (source, destination):
            node["libpq_url"] = f"postgres://no_user@{node['pg_addr']}"
        self.run.update(
            {
                "shard_filter": decide.normalize_shard_filter(tenant_id, p.get("shard")),
                "source": source,
                "destination": destination,
                "pageservers": [{k: n.get(k) for k in ("name", "node_id", "pg_addr")} for n in nodes],
                "storcon": {"url": p["storcon_url"]},
                "safekeeper_urls": list(p.get("safekeeper_urls") or []),
                "computes": decide.tenant_computes(p.get("computes"), tenant_id),
            }
        )
        if s["compute_cutover"] == "restart" and not s.get("compute_restart_command"):
            raise MigrationError("compute_restart_command: required with compute_cutover=restart")

    def _lock(self, check_mode):
        holder = read_json_file(self.lock_path, "the lock file")
        owner = holder.get("owner") or {}
        me = self.run["owner"]
        alive = process_alive(owner.get("pid")) if owner.get("host") == me.get("host") else None
        free, reason = decide.lock_verdict(
            holder,
            me,
            self.clock(),
            alive,
            float(self.p["settings"]["lock_stale_after"]),
            bool(self.p["settings"]["lock_takeover"]),
        )
        self.run["lock"] = {"found": bool(holder), "free": free, "reason": reason}
        previous = holder.get("journal") or {}
        self.run["previous_journal"] = decide.journal_for(
            previous, self.run["source"]["name"], self.run["destination"]["name"]
        )
        if check_mode:
            if holder and not holder.get("released"):
                self.run["warnings"].append(
                    f"the tenant's lock is held by {owner}; a real run would "
                    f"{'take it over' if free else 'refuse to start'}"
                )
            return
        if not free:
            raise MigrationError(
                f"Another migration of tenant {self.run['tenant_id']} holds {self.lock_path}: {reason}. Wait for it, "
                "or once it is dead rerun with tenant_migration_lock_takeover=true."
            )
        content = {
            "owner": me,
            "acquired": iso(self.clock()),
            "heartbeat_s": self.clock(),
            "released": False,
            "phase": "preflight",
            "took_over": owner if holder and not holder.get("released") else None,
            "journal": previous,
        }
        if not write_json_file(self.lock_path, content, exclusive=not holder):
            raise MigrationError(f"{self.lock_path} was created by another run a moment ago; refusing to start")
        if not self.holds_lock():
            raise MigrationError(f"{self.lock_path} was taken by another run a moment ago; refusing to start")
        self.run["lock_held"] = True

    def _read_node(self, role):
        try:
            status = ps.status(self.client(role))
            locations = ps.location_configs(self.client(role))
            utilization = ps.utilization(self.client(role)) if role == "destination" else {}
        except NeonAPIError as exc:
            return None, str(exc)
        return {"node_id": (status or {}).get("id"), "locations": locations, "utilization": utilization}, None

    def _read_source(self):
        """``_read_node("source")``, giving a source that does not answer ``source_grace`` seconds to answer again
        before the run treats it as dead: a pageserver restarting after a crash answers within seconds, and a
        failover from it would cost a cold attach where a rollback or the move itself costs almost nothing."""

        def probe():
            info, error = self._read_node("source")
            return info is not None, (info, error)

        grace = float(self.run["options"].get("source_grace", 0.0))
        started = self.monotonic()
        try:
            info = poll(probe, grace, "the source to answer", sleep=self.sleep, clock=self.monotonic)[0]
        except PollTimeout as exc:
            return exc.last
        waited = self.monotonic() - started
        if waited > 0.5:
            self.run["warnings"].append(
                f"the source {self.run['source']['name']} did not answer for {waited:.1f} s, then did: "
                "it was not treated as dead"
            )
        return info, None

    def _discover(self):
        run = self.run
        tenant_id = run["tenant_id"]
        dst_info, dst_error = self._read_node("destination")
        src_info, src_error = self._read_source()
        run["src_reachable"] = src_info is not None
        run["dst_reachable"] = dst_info is not None
        run["src_error"], run["dst_error"] = src_error, dst_error
        run["answered_as"] = {
            "source": (src_info or {}).get("node_id"),
            "destination": (dst_info or {}).get("node_id"),
        }
        try:
            described = storcon.tenant_or_none(self.sc, tenant_id)
        except NeonAPIError as exc:
            described = None
            run["warnings"].append(f"the storage controller did not describe the tenant: {exc}")
        policies = storcon.shard_scheduling(described)
        current = next(iter(policies.values()), "") if policies else ""
        journal = run["previous_journal"]
        run["storcon_known"] = bool(described) and bool(current)
        run["storcon_current"] = current or ""
        run["storcon_scheduling"] = decide.storcon_policy_to_restore(
            current or "", journal.get("storcon_scheduling", "")
        )
        storcon_shards = []
        if src_info is None and described:
            storcon_shards = [
                s["tenant_shard_id"]
                for s in described.get("shards") or []
                if s.get("node_attached") == run["source"]["node_id"]
            ]
        src_locs = (src_info or {}).get("locations") or {}
        dst_locs = (dst_info or {}).get("locations") or {}
        tsids = decide.collect_shard_ids(
            tenant_id, run["shard_filter"], src_locs, dst_locs, (journal.get("shards") or {}), storcon_shards
        )
        overrides = run["options"]["suspend_overrides"]
        controller_conf = (described or {}).get("config") or {}
        shards = [
            decide.describe_shard(
                t,
                src_locs.get(t),
                dst_locs.get(t),
                run["src_reachable"],
                (journal.get("shards") or {}).get(t),
                overrides,
                controller_conf,
            )
            for t in tsids
        ]
        run["shards"] = shards
        run["stages"] = {s["tsid"]: s["stage"] for s in shards}
        run["path"] = decide.migration_path(shards, run["src_reachable"])
        run["generations"] = decide.generations_seen(journal.get("generations"), shards)
        run["baseline"] = dict(journal.get("baseline") or {})
        run["timeline_ids"] = list(journal.get("timeline_ids") or [])
        run["free_bytes"] = ((dst_info or {}).get("utilization") or {}).get("free_space_bytes")
        run["cutover_started"] = bool(journal.get("cutover_started")) and run["path"] != "done"

    def _preflight(self):
        run, s = self.run, self.run["options"]
        src, dst = run["source"], run["destination"]
        if not run["dst_reachable"]:
            raise MigrationError(f"Destination {dst['name']} ({dst['api_url']}) is unreachable: {run['dst_error']}")
        shards = run["shards"]
        if not shards or any(x["stage"] == "lost" for x in shards):
            modes = [(x["tsid"], x["src_mode"], x["dst_mode"]) for x in shards]
            which = f" shard {run['shard_filter']}" if run["shard_filter"] else ""
            raise MigrationError(
                f"Tenant {run['tenant_id']}{which} is not attached on {src['name']} or {dst['name']} (shards and "
                f"modes: {modes}; source reachable: {run['src_reachable']})"
            )
        for role in ("source", "destination"):
            refusal = decide.identity_refusal(run[role], run["answered_as"][role], role)
            if refusal:
                raise MigrationError(refusal)
        if run["path"] == "failover" and not s["failover"]:
            raise MigrationError(
                f"Source {src['name']} is unreachable ({run['src_error']}) and tenant_migration_failover is false."
            )
        run["copy"] = None
        if run["path"] != "done":
            run["copy"] = decide.remote_copy(src, dst, run["s3"])
        # Timelines and size, from the source while it serves the tenant, else from the destination.
        timeline_ids, physical = set(run["timeline_ids"]), 0
        for shard in shards:
            for role, mode in (("source", shard["src_mode"]), ("destination", shard["dst_mode"])):
                if mode not in decide.ATTACHED_MODES:
                    continue
                timelines = self.timelines(role, shard["tsid"])
                timeline_ids.update(t["timeline_id"] for t in timelines)
                if role == "source":
                    details = ps.tenant(self.src, shard["tsid"]) or {}
                    physical += int(details.get("current_physical_size") or 0)
        run["timeline_ids"] = sorted(timeline_ids)
        run["physical_size"] = physical
        if run["path"] == "live" and any(x["stage"] == "start" for x in shards):
            refusal = decide.headroom_refusal(run["free_bytes"], physical, float(s["disk_headroom_ratio"]), dst["name"])
            if refusal:
                raise MigrationError(refusal)
        if run["path"] != "done":
            try:
                node = storcon.nodes(self.sc, int(dst["node_id"]))
            except NeonAPIError as exc:
                raise MigrationError(
                    f"reading node {dst['node_id']} from the storage controller failed: {exc}"
                ) from None
            refusal = decide.scheduling_refusal(
                node[0] if node else None, s["refused_scheduling_policies"], dst["name"]
            )
            if refusal:
                raise MigrationError(refusal)
            for timeline_id in run["timeline_ids"]:
                self.safekeeper_commit(timeline_id, require=True)
        if run["copy"]:
            self.copy_estimate()

    # ==== remote storage copy (source and destination in different buckets or prefixes) =====================

    def s3(self):
        if self._s3 is None:
            try:
                self._s3 = self._s3_factory(self.p.get("s3") or {})
            except (ValueError, ImportError) as exc:
                raise MigrationError(f"s3: cannot build an S3 client for the copy: {exc}") from None
        return self._s3

    def copy_args(self, pass_kind: str) -> dict:
        run, copy = self.run, self.run["copy"]
        moving = [s["tsid"] for s in run["shards"]]
        src_prefix = copy["source"]["prefix"]

        def select(keys):
            return decide.copy_selection(keys, src_prefix, run["tenant_id"], moving, pass_kind)

        return {
            "src_bucket": copy["source"]["bucket"],
            "src_prefix": src_prefix,
            "dst_bucket": copy["destination"]["bucket"],
            "dst_prefix": copy["destination"]["prefix"],
            "tenant_id": run["tenant_id"],
            "concurrency": int(run["s3"]["concurrency"]),
            "transfer_config": transfer_config(run["s3"]),
            "multipart_threshold": int(run["s3"]["multipart_threshold"]),
            "select": select,
        }

    def copy_where(self) -> str:
        copy = self.run["copy"]
        src, dst = copy["source"], copy["destination"]
        return f"s3://{src['bucket']}/{src['prefix']}/ to s3://{dst['bucket']}/{dst['prefix']}/"

    def copy_estimate(self):
        """Preflight (read only: LIST and HEAD): S3 answers, the tenant is where the inventory says, and what the
        copy would take. Refuses when the source location holds nothing of the tenant (a wrong neon_s3_prefix)."""
        run = self.run
        kind = decide.copy_pass(run["stages"], False)
        try:
            estimate = _s3.copy_tenant(self.s3(), check_mode=True, **self.copy_args(kind))
        except S3_ERRORS as exc:
            raise MigrationError(
                f"the move copies tenant {run['tenant_id']} from {self.copy_where()}, but reading S3 failed: {exc}"
            ) from None
        if not estimate["source"]["objects"]:
            raise MigrationError(
                f"the move copies tenant {run['tenant_id']} from {self.copy_where()}, but the source holds no object "
                f"of the tenant under s3://{run['copy']['source']['bucket']}/{run['copy']['source']['prefix']}/"
                f"tenants/: is neon_s3_prefix of {run['source']['name']} right?"
            )
        run["copy"]["estimate"] = {
            k: estimate[k] for k in ("source", "to_copy", "identical", "would_copy") if k in estimate
        }
        # The plan names some keys; the figures count all of them.
        run["copy"]["estimate"]["would_copy"] = estimate.get("would_copy", [])[:100] if run["check_mode"] else []

    def copy_data(self, pass_kind: str) -> dict:
        """Copy and verify, round after round, until one round's copy and verification hold against the source's
        listing; a rerun after an interruption skips every object already copied (same size and ETag)."""
        run = self.run
        rounds: list[dict] = []
        args = self.copy_args(pass_kind)
        copied_total = {"objects": 0, "bytes": 0, "multipart": 0}
        entry = {"pass": pass_kind, "rounds": rounds, "copied": copied_total}
        run["copy_passes"].append(entry)
        for _attempt in range(COPY_ROUNDS):
            try:
                result = _s3.copy_tenant(self.s3(), check_mode=False, **args)
            except (_s3.CopyInterrupted, *S3_ERRORS) as failure:
                # A failure part way carries what was copied before it (CopyInterrupted); a listing failure, nothing.
                exc: BaseException = failure
                copied: dict = {}
                if isinstance(failure, _s3.CopyInterrupted):
                    exc, copied = failure.cause, failure.copied
                    if not isinstance(exc, S3_ERRORS):
                        raise exc from None
                for k in copied_total:
                    copied_total[k] += int(copied.get(k) or 0)
                if _s3.source_changed(exc):
                    rounds.append({"source_changed": True, "copied": copied})
                    self.save()
                    continue
                raise MigrationError(
                    f"copying tenant {run['tenant_id']} from {self.copy_where()} failed: {exc}"
                ) from None
            for k in copied_total:
                copied_total[k] += int(result["copied"].get(k) or 0)
            rounds.append(
                {
                    k: result.get(k)
                    for k in ("source", "to_copy", "identical", "copied", "verified", "layers_checked", "seconds")
                }
                | {"mismatched": len(result["mismatched"]), "missing_layers": len(result["missing_layers"])}
            )
            self.save()
            if decide.copy_round_verdict(result) == "done":
                entry["verified"] = result["verified"]
                entry["layers_checked"] = result["layers_checked"]
                return entry
        raise MigrationError(
            f"copying tenant {run['tenant_id']} from {self.copy_where()}: the destination still differs from the "
            f"source after {COPY_ROUNDS} rounds ({rounds[-1]})"
        )

    def phase_copy(self):
        run = self.run
        if not run.get("copy"):
            return
        pass_kind = decide.copy_pass(run["stages"], bool(run.get("destination_attached")))
        if pass_kind == "initial" and run["src_reachable"]:
            # The source flushed and went stale first: what it uploads from now on is the delta, copied later.
            try:
                src_locs = ps.location_configs(self.src)
            except NeonAPIError as exc:
                raise MigrationError(f"source unreadable before the copy: {exc}") from None
            not_stale = [
                s["tsid"]
                for s in self.shards_at("start", "attach")
                if (src_locs.get(s["tsid"]) or {}).get("mode") != "AttachedStale"
            ]
            if not_stale:
                raise MigrationError(
                    f"Refusing to copy the tenant to {run['destination']['name']}'s location: the source still "
                    f"serves {not_stale} in a mode other than AttachedStale (flushed), so the copy would miss data."
                )
        self.copy_data(pass_kind)
        if pass_kind == "delta":
            self.mark_cutover()

    # ==== reading helpers ===================================================================================

    def timelines(self, role, tsid) -> list:
        return [ps.timeline_with_ints(t) for t in ps.timelines(self.client(role), tsid)]

    def safekeeper_commit(self, timeline_id, require=False):
        """The highest commit_lsn the safekeepers report for a timeline; with ``require``, a quorum must answer."""
        urls = self.run["safekeeper_urls"]
        if not urls:
            return None
        best, answered, errors = None, 0, []
        for client in self.safekeepers():
            try:
                status = sk.timeline_status(client, self.run["tenant_id"], timeline_id)
            except NeonAPIError as exc:
                errors.append(str(exc))
                continue
            answered += 1
            lsn = int(Lsn.parse(status["commit_lsn"]))
            best = lsn if best is None else max(best, lsn)
        if require and answered < len(urls) // 2 + 1:
            raise MigrationError(
                f"timeline {timeline_id}: {answered} of {len(urls)} safekeepers answered, a quorum needs "
                f"{len(urls) // 2 + 1}: {'; '.join(errors)}"
            )
        return best

    # ==== acting helpers ====================================================================================

    def location_body(self, shard, mode, generation=None, conf=None, warm=None):
        body = {
            "mode": mode,
            "generation": generation if mode in decide.ATTACHED_MODES else None,
            "secondary_conf": {"warm": bool(warm)} if mode == "Secondary" else None,
            "shard_number": shard["shard_number"],
            "shard_count": shard["shard_count"],
            "shard_stripe_size": shard["stripe_size"],
            "tenant_conf": dict(conf or {}),
        }
        return body

    def set_location(self, role, shard, body, flush_ms=None, lazy=None, wait_active=None, timeout=None):
        """PUT location_config, retrying while the slot is busy; then, for an attached mode, wait until Active."""
        client = self.client(role)
        tsid = shard["tsid"]
        timeout = float(timeout or self.run["options"]["attach_timeout"])
        http_timeout = max(client.timeout, flush_ms / 1000.0 + 10.0) if flush_ms else None

        def put():
            try:
                ps.put_location_config(client, tsid, body, flush_ms=flush_ms, lazy=lazy, timeout=http_timeout)
            except NeonAPIError as exc:
                if exc.status in BUSY_STATUSES:
                    return False, exc
                raise
            return True, None

        try:
            poll(
                put, timeout, f"set location of {tsid} on {self.run[role]['name']} to {body['mode']}", sleep=self.sleep
            )
        except PollTimeout as exc:
            raise MigrationError(f"{exc} (the slot stayed busy: {exc.last})") from None
        self.changed = True
        if wait_active if wait_active is not None else body["mode"] in decide.ATTACHED_MODES:
            self.wait_active(role, tsid, timeout)

    def wait_active(self, role, tsid, timeout):
        client = self.client(role)

        def probe():
            try:
                state = (ps.tenant(client, tsid) or {}).get("state") or {}
            except NeonAPIError as exc:
                if exc.status in (404, 409, 503):
                    return False, {}
                raise
            if state.get("slug") == "Broken":
                reason = (state.get("data") or {}).get("reason", "no reason given")
                raise MigrationError(f"tenant shard {tsid} is Broken on {self.run[role]['name']}: {reason}")
            return state.get("slug") == "Active", state

        try:
            poll(probe, timeout, f"tenant shard {tsid} Active on {self.run[role]['name']}", sleep=self.sleep)
        except PollTimeout as exc:
            raise MigrationError(f"{exc} (state {exc.last})") from None

    def new_generation(self, tsid, node_id) -> int:
        """A generation from the generation authority for ``node_id``, strictly above every earlier one."""
        if not self.run.get("storcon_nodes_checked", {}).get(str(node_id)):
            if not storcon.nodes(self.sc, int(node_id)):
                raise MigrationError(
                    f"node {node_id} is not registered with the storage controller at {self.sc.base_url}; "
                    "no generation issued"
                )
            self.run.setdefault("storcon_nodes_checked", {})[str(node_id)] = True
        previous = storcon.inspect(self.sc, tsid)["generation"]
        generation = storcon.attach_hook(self.sc, tsid, int(node_id))
        self.changed = True
        if not isinstance(generation, int) or isinstance(generation, bool):
            raise MigrationError(f"the storage controller returned no generation for {tsid} ({generation!r})")
        if previous is not None and generation <= previous:
            # A generation that does not grow would let two attachments validate the same deletions.
            raise MigrationError(
                f"the storage controller returned generation {generation} for {tsid}, not above {previous}"
            )
        return generation

    def shards_at(self, *stages):
        return [s for s in self.run["shards"] if s["stage"] in stages]

    # ==== live phases =======================================================================================

    def phase_suspend(self):
        # location_config replaces the whole override set: the suspended set carries the originals along.
        for shard in self.shards_at("start"):
            body = self.location_body(shard, shard["src_mode"], shard["src_generation"], shard["suspended_conf"])
            self.set_location("source", shard, body)

    def phase_prewarm(self):
        s = self.run["options"]
        shards = self.shards_at("start", "attach")
        for shard in shards:
            body = self.location_body(shard, "Secondary", conf=shard["suspended_conf"], warm=True)
            self.set_location("destination", shard, body)
        if not self.run.get("copy"):
            # Across locations the source is already stale: the heatmap it uploaded then came with the copy.
            for shard in shards:
                ps.heatmap_upload(self.src, shard["tsid"])
        deadline = self.monotonic() + float(s["download_timeout"])
        warmed, total, complete = 0, 0, {}
        for shard in shards:
            progress, done = self.download(shard["tsid"], deadline)
            warmed += int(progress.get("bytes_downloaded") or 0)
            total += int(progress.get("bytes_total") or 0)
            complete[shard["tsid"]] = done
        self.run.update({"bytes_warmed": warmed, "bytes_warm_total": total, "warm_complete": complete})

    def download(self, tsid, deadline):
        s = self.run["options"]
        wait_ms = int(s["download_request_ms"])
        http_timeout = self.dst.timeout + wait_ms / 1000.0
        heatmap_deadline = self.monotonic() + HEATMAP_WAIT_SECONDS
        attempt = 0
        while True:
            remaining_ms = max(0, int((deadline - self.monotonic()) * 1000))
            status, progress = ps.secondary_download(
                self.dst, tsid, wait_ms=min(wait_ms, remaining_ms), timeout=http_timeout
            )
            if status == 200 and not progress.get("heatmap_mtime"):
                # The source's heatmap upload may still be landing in remote storage: ask again until the deadline.
                if self.monotonic() >= min(deadline, heatmap_deadline):
                    raise MigrationError(f"no heatmap exists for {tsid} on the source: nothing can be downloaded")
                self.sleep(backoff(attempt))
                attempt += 1
                continue
            done = status == 200 and int(progress.get("layers_downloaded") or 0) >= int(
                progress.get("layers_total") or 0
            )
            if done:
                return progress, True
            if self.monotonic() >= deadline:
                if s["download_require_complete"]:
                    raise MigrationError(
                        f"secondary download of {tsid} not complete after {s['download_timeout']} s: "
                        f"{progress.get('layers_downloaded')}/{progress.get('layers_total')} layers"
                    )
                self.run["warnings"].append(f"{tsid}: cutting over with the download incomplete (proceed cold)")
                return progress, False

    def phase_stale(self):
        flush_ms = int(self.run["options"]["flush_ms"])
        for shard in self.shards_at("start"):
            body = self.location_body(shard, "AttachedStale", shard["src_generation"], shard["suspended_conf"])
            self.set_location("source", shard, body, flush_ms=flush_ms, wait_active=False)

    def phase_attach(self):
        self.record_baseline()
        attach = self.shards_at("start", "attach")
        if not attach:
            return
        # Two pageservers must never both run background work and validate deletions: the source goes first.
        src_locs = {}
        try:
            src_locs = ps.location_configs(self.src)
        except NeonAPIError as exc:
            self.run["warnings"].append(f"source unreadable before attach ({exc}); attaching anyway, it is fenced")
        not_stale = [
            s["tsid"] for s in attach if src_locs and (src_locs.get(s["tsid"]) or {}).get("mode") != "AttachedStale"
        ]
        self.run["source_mode_at_attach"] = {
            t: (src_locs.get(t) or {}).get("mode") for t in (s["tsid"] for s in attach)
        }
        if not_stale:
            raise MigrationError(
                f"Refusing to attach {self.run['destination']['name']}: the source still serves {not_stale} in a "
                "mode other than AttachedStale, and two pageservers would both run background work and validate "
                "deletions."
            )
        node_id = self.run["destination"]["node_id"]
        for shard in attach:
            generation = self.new_generation(shard["tsid"], node_id)
            self.run["generations"][shard["tsid"]] = {
                "before": shard["orig_generation"],
                "after": generation,
            }
            self.write_lock("attach")  # the new generation is in the journal before the destination uses it
            body = self.location_body(shard, "AttachedMulti", generation, shard["suspended_conf"])
            self.set_location("destination", shard, body, lazy=False)
        self.run["destination_attached"] = True

    def record_baseline(self):
        """Catch-up targets: the source's last_record_lsn read after it went stale, and the safekeepers' commit_lsn."""
        run = self.run
        moving = [s["tsid"] for s in self.shards_at("start", "attach", "catchup")]
        if not moving:
            return
        baseline = dict(run.get("baseline") or {})
        if run["src_reachable"]:
            for tsid in moving:
                try:
                    baseline[tsid] = {
                        t["timeline_id"]: t["last_record_lsn_int"] for t in self.timelines("source", tsid)
                    }
                except NeonAPIError as exc:
                    # A source that died after going stale: the journal's baseline and the safekeepers remain.
                    run["warnings"].append(f"baseline of {tsid} not read from the source: {exc}")
        commit = {}
        if run["options"]["catchup_include_safekeepers"]:
            for timeline_id in run["timeline_ids"]:
                lsn = self.safekeeper_commit(timeline_id)
                if lsn is not None:
                    commit[timeline_id] = lsn
        run["baseline"] = baseline
        run["safekeeper_commit_lsn_int"] = commit
        run["targets"] = decide.catchup_targets(moving, run["timeline_ids"], baseline, commit)
        self.write_lock("attach")

    def phase_catchup(self):
        run, s = self.run, self.run["options"]
        started = self.monotonic()
        reached_all = {}
        history: dict[str, list] = {tsid: [] for tsid in run.get("targets", {})}
        for tsid, targets in run.get("targets", {}).items():

            def probe(tsid=tsid, targets=targets):
                samples = history[tsid]
                try:
                    timelines = {t["timeline_id"]: t for t in ps.timelines(self.dst, tsid)}
                except NeonAPIError as exc:
                    if exc.status == 503:
                        return False, {}
                    raise
                absent = [tl for tl in targets if tl not in timelines]
                if absent:
                    raise MigrationError(f"timelines missing on the destination for {tsid}: {', '.join(absent)}")
                reached = {tl: int(Lsn.parse(timelines[tl]["last_record_lsn"])) for tl in targets}
                behind = decide.lagging(targets, reached)
                samples.append({"elapsed": round(self.monotonic() - started, 3), "lag_bytes": sum(behind.values())})
                del samples[1:-20]
                return not behind, reached

            try:
                reached_all[tsid] = poll(
                    probe,
                    float(s["catchup_timeout"]),
                    f"catch-up of {tsid} on {run['destination']['name']}",
                    ceiling=float(s["catchup_poll_interval"]),
                    sleep=self.sleep,
                )
            except PollTimeout as exc:
                raise MigrationError(f"{exc}: still behind {decide.lagging(targets, exc.last or {})}") from None
        run["catchup_seconds"] = round(self.monotonic() - started, 3)
        run["catchup_reached"] = reached_all
        run["catchup_history"] = history
        self.sync_timelines()
        self.close_gap()
        # close_gap is best effort and the last look was seconds ago: a destination that died since must stop the
        # move here, where the computes still read from the source and recovery can roll back.
        for shard in self.shards_at("start", "attach", "catchup"):
            self.wait_active("destination", shard["tsid"], CUTOVER_CHECK_SECONDS)
        if not run.get("copy"):
            self.mark_cutover()  # else the copy's delta pass comes first and marks it

    def close_gap(self):
        """Right before the computes switch, let the destination reach what the safekeepers committed by now.

        The targets above are the source's position when it went stale; the workload kept writing since. A compute
        that switches reads at its latest LSN, so a destination still behind it makes those reads wait for WAL.
        Best effort: a short wait, never a failure (the targets above are what correctness needs)."""
        run = self.run
        if not run["options"]["catchup_include_safekeepers"] or not run["safekeeper_urls"]:
            return
        latest = {}
        for timeline_id in run["timeline_ids"]:
            lsn = self.safekeeper_commit(timeline_id)
            if lsn is not None:
                latest[timeline_id] = lsn
        lag = {}
        for shard in self.shards_at("start", "attach", "catchup"):
            tsid = shard["tsid"]

            def probe(tsid=tsid):
                timelines = {t["timeline_id"]: t for t in ps.timelines(self.dst, tsid)}
                reached = {tl: int(Lsn.parse(t["last_record_lsn"])) for tl, t in timelines.items()}
                behind = decide.lagging({tl: v for tl, v in latest.items() if tl in reached}, reached)
                return not behind, behind

            try:
                poll(probe, CLOSE_GAP_SECONDS, f"{tsid} at the latest commit_lsn", sleep=self.sleep)
            except PollTimeout as exc:
                lag[tsid] = exc.last
            except NeonAPIError as exc:
                lag[tsid] = str(exc)
        run["cutover_lag_bytes"] = lag

    def mark_cutover(self):
        """The point of no return: once a compute may read from the destination, recovery only goes forward."""
        run = self.run
        run["compute_targets"] = self.compute_targets()
        if run["computes"]:
            run["cutover_started"] = True
        self.end_phase(run["phases"][-1]["name"])
        self.begin_phase("cutover")

    def compute_targets(self) -> dict:
        run = self.run
        shards = run["shards"]
        count = int(shards[0]["shard_count"])
        moved = sorted(s["shard_number"] for s in shards)
        full = moved == list(range(max(count, 1)))
        dst = {"node_id": run["destination"]["node_id"], "libpq_url": run["destination"]["libpq_url"]}
        return {
            "shard_count": count,
            "stripe_size": shards[0]["stripe_size"] if count > 0 else None,
            "moved": moved,
            "full_move": full,
            "destination": dst,
            "pageservers": [dst] * max(count, 1) if full else None,
            "addr_to_id": {n["pg_addr"]: n["node_id"] for n in run["pageservers"]},
        }

    def sync_timelines(self):
        """Branches created on the source while the destination attached are not in the index it loaded:
        recreate them there from the source's ancestor information, or fail while the source still serves."""
        run, s = self.run, self.run["options"]
        if not run["src_reachable"]:
            return
        src_by, dst_by = {}, {}
        for shard in run["shards"]:
            try:
                src_by[shard["tsid"]] = ps.timelines(self.src, shard["tsid"])
            except NeonAPIError as exc:
                run["warnings"].append(f"timelines of {shard['tsid']} not read from the source: {exc}")
                continue
            dst_by[shard["tsid"]] = ps.timelines(self.dst, shard["tsid"])
        numbers = {x["tsid"]: x["shard_number"] for x in run["shards"]}
        missing = decide.missing_timelines(src_by, dst_by, numbers)
        if not missing:
            return
        roots = [m for m in missing if not m["ancestor_timeline_id"]]
        if s["missing_timeline_action"] != "recreate" or roots:
            why = " (root timelines cannot be recreated from ancestor information)" if roots else ""
            raise MigrationError(
                f"Timelines exist on {run['source']['name']} but not on {run['destination']['name']}: "
                f"{json.dumps(missing)}. They were created on the source during the move{why}."
            )
        for m in decide.creation_order(missing):
            self.create_branch(m)
            run["recreated_timelines"].append(m)
            if m["timeline_id"] not in run["timeline_ids"]:
                run["timeline_ids"].append(m["timeline_id"])
        self.write_lock(run.get("phase", "catchup"))

    def create_branch(self, m):
        deadline = float(self.run["options"]["attach_timeout"])

        def create():
            try:
                ps.create_timeline(self.dst, m["tsid"], m["timeline_id"], m["ancestor_timeline_id"], m["ancestor_lsn"])
            except NeonAPIError as exc:
                # 406: the branch point is not ingested yet; 409/429/503: busy. All settle by themselves.
                if exc.status in (406, 409, 429, 503):
                    return False, exc
                raise
            return True, None

        try:
            poll(create, deadline, f"recreate branch {m['timeline_id']} on {m['tsid']}", sleep=self.sleep)
        except PollTimeout as exc:
            raise MigrationError(f"{exc}: {exc.last}") from None
        self.changed = True

    # ==== failover (source unreachable) =====================================================================

    def phase_failover(self):
        run = self.run
        node_id = run["destination"]["node_id"]
        if run.get("copy"):
            # The source is gone but its remote data is not: the destination attaches from its own location.
            self.copy_data("initial")
        for shard in run["shards"]:
            if shard["dst_mode"] not in ("AttachedMulti", "AttachedSingle") or shard["tsid"] not in run["generations"]:
                generation = self.new_generation(shard["tsid"], node_id)
                run["generations"][shard["tsid"]] = {"before": shard["orig_generation"], "after": generation}
                self.write_lock("failover")
            generation = run["generations"][shard["tsid"]]["after"]
            body = self.location_body(shard, "AttachedSingle", generation, shard["orig_conf"])
            self.set_location("destination", shard, body, lazy=False)
            shard["dst_mode"] = "AttachedSingle"
        self.mark_cutover()

    # ==== finalize and verify ===============================================================================

    def phase_finalize(self):
        run, s = self.run, self.run["options"]
        self.record_switches()
        if run["src_reachable"]:
            try:
                self.sync_timelines()  # branches created on the source during cutover
            except NeonAPIError as exc:
                run["warnings"].append(f"branch check before finalize failed: {exc}")
        for shard in run["shards"]:
            generation = run["generations"][shard["tsid"]]["after"]
            body = self.location_body(shard, "AttachedSingle", generation, shard["orig_conf"])
            self.set_location("destination", shard, body)
        final = "Secondary" if s["source_final_mode"] == "secondary" else "Detached"
        failures = []
        if run["src_reachable"]:
            for shard in run["shards"]:
                body = self.location_body(shard, final, conf=shard["orig_conf"], warm=True)
                try:
                    self.set_location("source", shard, body, timeout=min(30.0, float(s["attach_timeout"])))
                except (NeonAPIError, MigrationError) as exc:
                    # The source can die at any moment after cutover; the tenant is safe on the destination.
                    failures.append(str(exc))
        if failures or not run["src_reachable"]:
            run["warnings"].append(
                f"{run['source']['name']} could not be demoted ({'; '.join(failures) or 'unreachable'}). It no "
                "longer holds the latest generation, so its re-attach will not give it the tenant back; demote it "
                "by hand once it answers."
            )

    def record_switches(self):
        """Keep each compute's latest switch (finalize and end may both report the same ones)."""
        now = iso(self.clock())
        by_name = {c["compute"]: c for c in self.run.get("computes_switched") or []}
        for c in self.p.get("computes_switched") or []:
            if c.get("compute") and c["compute"] not in by_name:
                by_name[c["compute"]] = {**c, "switched_at": now}
        self.run["computes_switched"] = list(by_name.values())

    def phase_verify(self):
        run, s = self.run, self.run["options"]
        locations = ps.location_configs(self.dst)
        problems = []
        for shard in run["shards"]:
            loc = locations.get(shard["tsid"]) or {}
            after = run["generations"][shard["tsid"]]["after"]
            if loc.get("mode") != "AttachedSingle" or loc.get("generation") != after:
                problems.append(
                    f"{shard['tsid']}: {loc.get('mode')} generation {loc.get('generation')}, "
                    f"expected AttachedSingle {after}"
                )
            elif not ps.overrides_equal(loc.get("tenant_conf"), shard["orig_conf"]):
                problems.append(
                    f"{shard['tsid']}: overrides {json.dumps(loc.get('tenant_conf'))}, expected the originals "
                    f"{json.dumps(shard['orig_conf'])}"
                )
        if problems:
            raise MigrationError(f"on {run['destination']['name']}: {'; '.join(problems)}")
        final_lsns, remote_lsns = {}, {}
        for shard in run["shards"]:
            tsid, targets = shard["tsid"], run.get("targets", {}).get(shard["tsid"], {})

            def probe(tsid=tsid, targets=targets):
                try:
                    state = ((ps.tenant(self.dst, tsid) or {}).get("state") or {}).get("slug")
                    timelines = {t["timeline_id"]: t for t in self.timelines("destination", tsid)}
                except NeonAPIError as exc:
                    if exc.status in (404, 503):
                        return False, {"error": str(exc)}
                    raise
                absent = sorted(set(run["timeline_ids"]) - set(timelines))
                behind = [
                    tl for tl, t in timelines.items() if t.get("remote_consistent_lsn_int", 0) < targets.get(tl, 0)
                ]
                view = {"state": state, "absent": absent, "not_uploaded": behind, "timelines": timelines}
                return state == "Active" and not absent and not behind, view

            try:
                view = poll(
                    probe, float(s["remote_lsn_timeout"]), f"{tsid} verified on the destination", sleep=self.sleep
                )
            except PollTimeout as exc:
                last = {k: v for k, v in (exc.last or {}).items() if k != "timelines"}
                raise MigrationError(f"{exc}: {last}") from None
            final_lsns[tsid] = {tl: t["last_record_lsn"] for tl, t in view["timelines"].items()}
            remote_lsns[tsid] = {tl: t.get("remote_consistent_lsn") for tl, t in view["timelines"].items()}
        run["destination_last_record_lsn"] = final_lsns
        run["destination_remote_consistent_lsn"] = remote_lsns

    # ==== recovery ==========================================================================================

    def phase_rollback(self):
        run, s = self.run, self.run["options"]
        mode = "Secondary" if s["rollback_destination_mode"] == "secondary" else "Detached"
        for shard in run["shards"]:
            body = self.location_body(shard, mode, conf=shard["orig_conf"], warm=True)
            try:
                self.set_location("destination", shard, body, timeout=10.0)
            except (NeonAPIError, MigrationError) as exc:
                # A crashed destination cannot be released now; the new generation below fences it off.
                run["warnings"].append(f"destination not released: {exc}")
        node_id = run["source"]["node_id"]
        src_locs = None
        for shard in run["shards"]:
            tsid = shard["tsid"]
            generation = None
            if "after" not in run["generations"].get(tsid, {}):
                # Before the attach: the source may keep its generation (no reload, its reads keep flowing).
                if src_locs is None:
                    src_locs = ps.location_configs(self.src)
                src_loc = src_locs.get(tsid)
                if src_loc and decide.rollback_keeps_generation(
                    False, src_loc, storcon.inspect(self.sc, tsid), node_id
                ):
                    generation = src_loc["generation"]
            if generation is None:
                generation = self.new_generation(tsid, node_id)
            entry = run["generations"].setdefault(tsid, {})
            entry.update({"before": shard["orig_generation"], "rollback": generation})
            self.write_lock("rollback")
            body = self.location_body(shard, "AttachedSingle", generation, shard["orig_conf"])
            self.set_location("source", shard, body)

    def phase_recover(self):
        """Decide how to recover from the failure the role reports, and roll back or fail over; a roll-forward
        is left to the role (it moves the computes, then runs finalize and verify)."""
        run, s = self.run, self.run["options"]
        # An engine step records where it failed; a failed compute task leaves the phase it ran in (cutover).
        failed_phase = run.get("failed_phase") or run.get("phase") or "preflight"
        run["error"] = run.get("error") or self.p.get("error") or ""
        run["failed_task"] = self.p.get("failed_task") or ""
        run["failed_phase"] = failed_phase
        mutated = failed_phase != "preflight" or bool(run.get("storcon_held"))
        source_answers = self._read_source()[0] is not None if mutated else False
        recovery = decide.recovery_decision(
            mutated, bool(run.get("cutover_started")), failed_phase, source_answers, s["rollback"], s["failover"]
        )
        run["recovery"] = recovery
        if not mutated:
            run["outcome"] = "failed_preflight"
            return
        if recovery == "none":
            run["outcome"] = "failed"
            return
        try:
            if recovery == "rollback":
                try:
                    self.begin_phase("rollback")
                    self.phase_rollback()
                    self.end_phase("rollback")
                    run["outcome"] = "rolled_back"
                except (MigrationError, NeonAPIError, PollTimeout) as exc:
                    # The source answered a moment ago; if it died since, the destination must take the tenant.
                    if not s["failover"] or self._read_source()[0] is not None:
                        raise
                    run["warnings"].append(f"the source died during the rollback ({exc}); failing over instead")
                    recovery = run["recovery"] = "failover"
            if recovery == "failover":
                run["src_reachable"] = False
                run["path"] = "failover"
                self.rediscover_destination()
                self.begin_phase("failover")
                self.phase_failover()
                run["outcome"] = "failover"
            elif recovery == "forward":
                run["src_reachable"] = source_answers
                run["compute_targets"] = self.compute_targets()
                run["outcome"] = "verify_failed" if failed_phase == "verify" else "rolled_forward"
        except (MigrationError, NeonAPIError, PollTimeout) as exc:
            run["outcome"] = f"{recovery}_failed"
            run["error"] = f"{run['error']} / recovery ({recovery}) failed: {exc}"
            self.close_open_phase(self.clock())

    def rediscover_destination(self):
        locations = ps.location_configs(self.dst)
        for shard in self.run["shards"]:
            loc = locations.get(shard["tsid"]) or {}
            shard["dst_mode"] = loc.get("mode", "absent")
            shard["dst_generation"] = loc.get("generation")

    # ==== end: controller policy, report, lock ==============================================================

    def end(self, outcome: str | None, error: str | None) -> dict:
        self.load()
        run = self.run
        self.close_open_phase(self.clock())
        if outcome:
            run["outcome"] = outcome
        if error and error not in (run.get("error") or ""):
            run["error"] = f"{run['error']} / {error}" if run.get("error") else error
        self.record_switches()
        held = run.get("storcon_held") or run.get("storcon_current") == "Stop"
        restore_failed = False
        if (
            held
            and run.get("storcon_known")
            and run.get("storcon_scheduling") not in ("", "Stop")
            and run.get("lock_held")
        ):
            try:
                storcon.set_tenant_scheduling(self.sc, run["tenant_id"], run["storcon_scheduling"])
                run["storcon_restored"] = True
                self.changed = True
            except NeonAPIError as exc:
                if exc.status == 404 and not storcon.is_unknown_route(exc):
                    run["storcon_restored"] = True  # the tenant is gone from the controller: nothing to restore
                else:
                    restore_failed = True
                    run["warnings"].append(
                        f"WARNING: tenant {run['tenant_id']} is still at scheduling policy Stop on the storage "
                        f"controller ({exc}). Rerun the playbook once the controller answers (the lock file keeps "
                        f"the policy to give back), or set it back to {run['storcon_scheduling']} with "
                        "neonops.storage.storcon_tenant_policy."
                    )
        if run.get("lock_held"):
            # A finished run removes its lock, journal and all; while the controller's policy is still to be given
            # back, the journal stays (released) so that a rerun finds the policy from before instead of Stop.
            if run["outcome"] in decide.FINISHED_OUTCOMES and not restore_failed:
                if self.holds_lock():
                    os.unlink(self.lock_path)
            else:
                holder = read_json_file(self.lock_path, "the lock file")
                holder.update(
                    {
                        "owner": run["owner"],
                        "released": True,
                        "released_at": iso(self.clock()),
                        "outcome": run["outcome"],
                        "phase": run.get("phase", "preflight"),
                        "journal": self.journal(),
                    }
                )
                write_json_file(self.lock_path, holder)
        self.finish_report()
        if os.path.exists(self.run_path):
            os.unlink(self.run_path)
        out = self.result()
        out.update(
            {k: run.get(k) for k in ("outcome", "error", "total_seconds", "waiting_seconds", "overhead_seconds")}
        )
        return out

    def finish_report(self):
        run = self.run
        now = self.clock()
        run["ended"] = iso(now)
        run.update(decide.figures(run.get("phases", []), float(run["started_s"]), now))
        report = build_report(run)
        write_json_file(self.report_path, report, mode=0o644)
        with open(self.report_path[: -len(".json")] + ".md", "w", encoding="utf-8") as handle:
            handle.write(render_markdown(report))


# ---- S3 ------------------------------------------------------------------------------------------------------

S3_SECRETS = ("access_key", "secret_key", "session_token")


def public_s3_settings(s3: dict | None) -> dict:
    """The S3 settings a run keeps in its state and report: never the credentials (they come with every call)."""
    s3 = dict(s3 or {})
    out = {k: v for k, v in s3.items() if k not in S3_SECRETS}
    out.setdefault("copy", True)
    out.setdefault("concurrency", 16)
    out.setdefault("multipart_threshold", 64 * _s3.MIB)
    out.setdefault("multipart_chunksize", 64 * _s3.MIB)
    return out


def transfer_config(s3: dict):
    from boto3.s3.transfer import TransferConfig

    concurrency = int(s3["concurrency"])
    return TransferConfig(
        multipart_threshold=int(s3["multipart_threshold"]),
        multipart_chunksize=int(s3["multipart_chunksize"]),
        max_concurrency=min(concurrency, 4),  # parts in flight per multipart copy, inside `concurrency` copies
        use_threads=True,
    )


def default_s3_client(s3: dict):
    """A boto3 S3 client wrapped like amazon.aws's ``module.client()`` (``aws_retry=True`` per call), on top of
    botocore's standard retries (503 SlowDown, dropped connections). Credentials: the given keys, else boto3's
    chain (environment, profile, instance role)."""
    import boto3
    from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry, RetryingBotoClientWrapper
    from botocore.config import Config

    verify = s3.get("ca_bundle") or None
    if s3.get("validate_certs") is False:
        verify = False
    client = boto3.client(
        "s3",
        endpoint_url=s3.get("endpoint_url") or None,
        region_name=s3.get("region") or None,
        aws_access_key_id=s3.get("access_key") or None,
        aws_secret_access_key=s3.get("secret_key") or None,
        aws_session_token=s3.get("session_token") or None,
        verify=verify,
        config=Config(
            retries={"max_attempts": 10, "mode": "standard"},
            max_pool_connections=_s3.pool_size(int(s3.get("concurrency") or 16)),
        ),
    )
    return RetryingBotoClientWrapper(client, AWSRetry.jittered_backoff())


def build_report(run: dict) -> dict:
    """The per-run report (JSON): what an operator and the benchmarks read."""
    src, dst, opts = run.get("source") or {}, run.get("destination") or {}, run.get("options") or {}
    return {
        "run_id": run.get("run_id"),
        "tenant_id": run.get("tenant_id"),
        "shards": [s["tsid"] for s in run.get("shards") or []],
        "source": {"host": src.get("name"), "node_id": src.get("node_id")},
        "destination": {"host": dst.get("name"), "node_id": dst.get("node_id")},
        "check_mode": bool(run.get("check_mode")),
        "path": run.get("path", "unknown"),
        "resumed_from": run.get("stages", {}),
        "options": {k: opts.get(k) for k in ("prewarm", "compute_cutover", "source_final_mode")},
        "started": run.get("started"),
        "ended": run.get("ended"),
        "total_seconds": run.get("total_seconds"),
        "waiting_seconds": run.get("waiting_seconds"),
        "overhead_seconds": run.get("overhead_seconds"),
        "phases": [{k: v for k, v in p.items() if k != "start_s"} for p in run.get("phases") or []],
        "generations": run.get("generations", {}),
        "source_mode_at_attach": run.get("source_mode_at_attach", {}),
        "storcon_scheduling": {
            "original": run.get("storcon_scheduling", ""),
            "restored": bool(run.get("storcon_restored")),
        },
        "lsns": {
            "baseline": decide.lsn_texts(run.get("baseline")),
            "targets": decide.lsn_texts(run.get("targets")),
            "safekeeper_commit_lsn_int": run.get("safekeeper_commit_lsn_int", {}),
            "reached": run.get("catchup_reached", {}),
            "destination_last_record_lsn": run.get("destination_last_record_lsn", {}),
            "destination_remote_consistent_lsn": run.get("destination_remote_consistent_lsn", {}),
        },
        "catchup_seconds": run.get("catchup_seconds"),
        "bytes_warmed": run.get("bytes_warmed", 0),
        "bytes_warm_total": run.get("bytes_warm_total", 0),
        "computes": run.get("computes_switched", []),
        "recreated_timelines": run.get("recreated_timelines", []),
        "s3_copy": {
            "needed": bool(run.get("copy")),
            **(run.get("copy") or {}),
            "passes": run.get("copy_passes", []),
        },
        "destination_free_bytes": run.get("free_bytes"),
        "tenant_physical_size": run.get("physical_size"),
        "lock": run.get("lock", {}),
        "plan": run.get("plan", []),
        "warnings": run.get("warnings", []),
        "outcome": run.get("outcome"),
        "recovery": run.get("recovery"),
        "failed_phase": run.get("failed_phase"),
        "error": run.get("error", ""),
    }


def render_markdown(report: dict) -> str:
    run = report
    src, dst = run.get("source") or {}, run.get("destination") or {}
    opts = run.get("options") or {}
    lines = [
        f"# Tenant migration {run.get('run_id')}",
        "",
        f"- Tenant: `{run.get('tenant_id')}` ({len(run.get('shards') or [])} shard(s))",
        f"- From {src.get('host')} (node {src.get('node_id')}) to {dst.get('host')} (node {dst.get('node_id')})",
        f"- Path: {run.get('path')}; prewarm {opts.get('prewarm')}; cutover {opts.get('compute_cutover')}; "
        f"source ends {opts.get('source_final_mode')}",
        f"- **Outcome: {run.get('outcome')}**" + (f" — {run['error']}" if run.get("error") else ""),
        "",
        f"- Total {run.get('total_seconds')} s; waiting on downloads and catch-up {run.get('waiting_seconds')} s; "
        f"orchestration overhead {run.get('overhead_seconds')} s",
        f"- Bytes warmed: {run.get('bytes_warmed')} of {run.get('bytes_warm_total')}",
        "",
        "| phase | start | end | seconds |",
        "|---|---|---|---|",
    ]
    for p in run.get("phases") or []:
        lines.append(f"| {p['name']} | {p['start']} | {p.get('end', '-')} | {p.get('seconds', '-')} |")
    lines += ["", "| shard | generation before | after |", "|---|---|---|"]
    for tsid, g in (run.get("generations") or {}).items():
        rollback = f" (rollback: source {g['rollback']})" if "rollback" in g else ""
        lines.append(f"| {tsid} | {g.get('before', '-')} | {g.get('after', '-')}{rollback} |")
    lines += [
        "",
        "| shard | timeline | catch-up target | destination last_record_lsn | destination remote_consistent_lsn |",
        "|---|---|---|---|---|",
    ]
    lsns = run.get("lsns") or {}
    for tsid, tls in (lsns.get("targets") or {}).items():
        for tl, lsn in tls.items():
            last = (lsns.get("destination_last_record_lsn") or {}).get(tsid, {}).get(tl, "-")
            remote = (lsns.get("destination_remote_consistent_lsn") or {}).get(tsid, {}).get(tl, "-")
            lines.append(f"| {tsid} | {tl} | {lsn} | {last} | {remote} |")
    lines.append("")
    for c in run.get("computes") or []:
        target = ",".join(p.get("libpq_url", "") for p in c.get("pageservers") or [])
        lines.append(
            f"- Compute {c.get('compute')} switched at {c.get('switched_at')} ({c.get('method')}): "
            f"{c.get('previous')} -> {target}"
        )
    copy = run.get("s3_copy") or {}
    if copy.get("needed"):
        src, dst = copy.get("source") or {}, copy.get("destination") or {}
        lines.append(
            f"- S3 copy from s3://{src.get('bucket')}/{src.get('prefix')}/ to s3://{dst.get('bucket')}/"
            f"{dst.get('prefix')}/"
        )
        for p in copy.get("passes") or []:
            copied = p.get("copied") or {}
            lines.append(
                f"  - {p.get('pass')} pass: {len(p.get('rounds') or [])} round(s), copied {copied.get('objects')} "
                f"objects ({copied.get('bytes')} bytes), verified {(p.get('verified') or {}).get('objects', '-')}"
            )
    for t in run.get("recreated_timelines") or []:
        lines.append(
            f"- Recreated branch {t['timeline_id']} on shard {t['tsid']} from "
            f"{t['ancestor_timeline_id']}@{t['ancestor_lsn']}"
        )
    for w in run.get("warnings") or []:
        lines.append(f"- Warning: {w}")
    return "\n".join(lines) + "\n"
