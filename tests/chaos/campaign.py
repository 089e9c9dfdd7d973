"""Randomized fault campaign for the migration runbook (`make chaos`).

Each iteration starts its own neonsim fleet (three pageservers, three safekeepers, a storage controller), and with
an RNG seeded by the iteration's seed picks a tenant layout, a source and a destination, the move's options and ONE
fault at one phase of the move. It runs `neonops.storage.migrate_tenant` under the tenant's live workload, injects
the fault when the run's lock file names the phase, clears the fault, and reruns the playbook as an operator would
until the move ends migrated or rolled back. Then it checks the invariants (INVARIANTS below), restarts every
pageserver and checks again that the storage controller's re-attach hands each shard to the one location that
should hold it.

    python -m tests.chaos.campaign --seed 1000 --iterations 20 --jobs 2     # or: make chaos SEED=1000
    python -m tests.chaos.campaign --seed 1007 --iterations 1               # reproduce one iteration

Iteration i of a campaign uses seed SEED+i, so a failing iteration is reproduced by its own seed alone. The
choices are reproduced exactly; timings are not (the fault lands at the same phase, not the same instant).
Results: one JSON line per iteration in WORKDIR/results.jsonl, a summary table at the end (--summary FILE re-prints
the table of an earlier results file). Exit code 1 when any iteration violated an invariant or the harness failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
for entry in (str(REPO), str(REPO / "tests" / "integration")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from migration_harness import (  # noqa: E402
    ATTACHED,
    SLOW_READ_REASONS,
    WORKLOAD,
    Background,
    compute_connstring,
    locations,
    migrate,
    storcon_scheduling,
    topology,
    wait_for_writes,
    workload,
    workload_action,
)

from neonsim import checker  # noqa: E402
from neonsim import fleet as fleet_mod  # noqa: E402

PAGESERVERS = ("ps1", "ps2", "ps3")
SAFEKEEPERS = ("sk1", "sk2", "sk3")
STORCON = "storcon"
# The phases as the run's lock file names them (the engine's write_lock); cutover starts at the end of catchup.
PHASES = ("preflight", "suspend", "prewarm", "stale", "attach", "catchup", "cutover", "finalize", "verify")
FAULT_KINDS = (
    "ps_crash",
    "ps_freeze",
    "s3_errors",
    "s3_slow",
    "safekeeper_down",
    "compute_restart",
    "storcon_down",
    "branch_on_source",
    "playbook_kill",
)
LAYOUTS = ("plain", "sharded", "branched")
TENANT_CONFS = ({}, {"pitr_interval": "1h"}, {"gc_period": "1s", "compaction_period": "1s"})
# Outcomes that end a move: the tenant is on the destination (FORWARD) or back on the source.
FORWARD = ("migrated", "already_done", "failover", "rolled_forward")
TERMINAL = (*FORWARD, "rolled_back")
MAX_RUNS = 4
RUN_TIMEOUT_S = 900
ITERATION_TIMEOUT_S = 2400
INVARIANTS = (
    "outcome_terminal",  # reruns after the fault end migrated or rolled back
    "acked_writes_readable",  # every acknowledged write read back through the compute with its last value
    "one_attached_single",  # per shard exactly one attached location: AttachedSingle on the node that should hold it
    "s3_consistent",  # neonsim checker: no layer referenced by a newest index_part missing, no acked key lost
    "background_config_restored",  # attached locations carry the tenant's own overrides (gc/compaction back)
    "storcon_policy_restored",  # the controller's scheduling policy is the one from before the move
    "lock_released",  # no run left holding the tenant's lock
    "computes_reach_holder",  # every compute's connstring names the pageserver holding each shard
    "branch_kept",  # a branch created on the source mid-move exists where the tenant ended up
    "reattach_no_split_brain",  # after restarting every pageserver: the same single AttachedSingle per shard
    "acked_writes_readable_after_restart",  # and every acknowledged write still readable
)


# ---- the plan ---------------------------------------------------------------------------------------------------


def plan_iteration(seed: int) -> dict:
    """Everything an iteration chooses, from its seed alone."""
    rng = random.Random(seed)
    kind = rng.choice(FAULT_KINDS)
    # A branch is created on one pageserver's tenant shard; a sharded tenant would need it on every shard.
    layout = rng.choice(("plain", "branched") if kind == "branch_on_source" else LAYOUTS)
    source = rng.choice(PAGESERVERS)
    destination = rng.choice([p for p in PAGESERVERS if p != source])
    third = next(p for p in PAGESERVERS if p not in (source, destination))
    options = {
        "prewarm": rng.random() < 0.5,
        "compute_cutover": rng.choice(("reconfigure", "restart")),
        "source_final_mode": rng.choice(("secondary", "detached")),
    }
    phases = [p for p in PHASES if p != "prewarm" or options["prewarm"]]
    fault: dict = {"kind": kind, "phase": rng.choice(phases), "delay_s": round(rng.uniform(0.0, 1.0), 2)}
    if kind == "ps_crash":
        fault["side"] = rng.choice(("source", "destination"))
        # None: down until the run ends (a dead node the run must roll back or fail over from).
        fault["down_s"] = rng.choice((None, round(rng.uniform(0.5, 5.0), 1)))
    elif kind == "ps_freeze":
        fault["side"] = rng.choice(("source", "destination"))
        fault["duration_s"] = round(rng.uniform(2.0, 25.0), 1)
    elif kind == "s3_errors":
        fault["error_rate"] = rng.choice((0.3, 0.6, 1.0))
        fault["duration_s"] = round(rng.uniform(3.0, 20.0), 1)
    elif kind == "s3_slow":
        fault["latency_ms"] = rng.choice((200, 500, 1500))
        fault["duration_s"] = round(rng.uniform(3.0, 20.0), 1)
    elif kind == "safekeeper_down":
        fault["node"] = rng.choice(SAFEKEEPERS)
    elif kind == "storcon_down":
        fault["how"] = rng.choice(("kill", "503"))
        fault["down_s"] = rng.choice((None, round(rng.uniform(1.0, 10.0), 1)))
    conf = dict(rng.choice(TENANT_CONFS))
    if layout == "sharded":
        tenant = {
            "name": "t",
            "shard_count": 2,
            "stripe_size": 2048,
            "pageservers": [source, rng.choice((source, third))],
            "tenant_conf": conf,
        }
        computes = ["c-t"]
    elif layout == "branched":
        tenant = {
            "name": "t",
            "pageservers": [source],
            "tenant_conf": conf,
            "timelines": [{"name": "main"}, {"name": "child", "parent": "main"}],
        }
        computes = ["c-main", "c-child"]
    else:
        tenant = {"name": "t", "pageservers": [source], "tenant_conf": conf}
        computes = ["c-t"]
    if kind == "compute_restart":
        fault["node"] = rng.choice(computes)
    return {
        "seed": seed,
        "layout": layout,
        "tenant": tenant,
        "computes": computes,
        "source": source,
        "destination": destination,
        "options": options,
        "fault": fault,
    }


def fleet_topology(plan: dict) -> dict:
    tenant = plan["tenant"]
    computes = []
    for name in plan["computes"]:
        compute = {"name": name, "tenant": tenant["name"], "workload": dict(WORKLOAD)}
        if plan["layout"] == "branched":
            compute["timeline"] = name.removeprefix("c-")
        computes.append(compute)
    return topology([dict(tenant)], computes)


def repro_command(seed: int) -> str:
    return f"make chaos SEED={seed} ITERATIONS=1   # or: python -m tests.chaos.campaign --seed {seed} --iterations 1"


# ---- reading the fleet -----------------------------------------------------------------------------------------


def get_json(url: str, timeout: float = 10.0):
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    return response.json()


def shard_ids(tenant: dict) -> list[str]:
    if not tenant["shard_count"]:
        return [tenant["tenant_id"]]
    count = tenant["shard_count"]
    return [f"{tenant['tenant_id']}-{n:02x}{count:02x}" for n in range(count)]


def all_locations(sim) -> dict[str, dict]:
    """{pageserver: {tsid: location}} for the pageservers that answer."""
    found = {}
    for ps in PAGESERVERS:
        try:
            found[ps] = locations(sim, ps)
        except (requests.RequestException, ValueError, KeyError):
            found[ps] = None
    return found


def attached_of(found: dict, tsid: str) -> list[tuple[str, str, int | None]]:
    return [
        (ps, loc["mode"], loc.get("generation"))
        for ps, locs in found.items()
        for t, loc in (locs or {}).items()
        if t == tsid and loc and loc.get("mode") in ATTACHED
    ]


def wait_active(sim, node: str, tsid: str, timeout: float = 90.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = get_json(f"{sim.url(node)}/v1/tenant/{tsid}").get("state") or {}
            if state.get("slug") == "Active":
                return True
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.5)
    return False


# Reads answered with a value other than the last acknowledged one (neonsim/workload.py _classify): an older
# acknowledged value (stale: a lost write showed) or one the compute never saw acknowledged (wrong: after a compute
# restart (the fault, or a restart cutover), a write the killed process had sent but not seen acknowledged).
WRONG_READ_REASONS = {"stale_value", "wrong_value"}


def read_split(by_reason: dict) -> dict:
    slow = sum(v for k, v in by_reason.items() if k in SLOW_READ_REASONS)
    wrong = sum(v for k, v in by_reason.items() if k in WRONG_READ_REASONS)
    return {
        "unavailable": sum(by_reason.values()) - slow - wrong,
        "slow": slow,
        "stale": by_reason.get("stale_value", 0),
        "wrong": by_reason.get("wrong_value", 0),
    }


class ReadMonitor:
    """Samples every compute's workload counters once a second; a compute restart resets them, so each sample adds
    what grew since the last one (or all of it, after a reset). Failed reads by reason, summed over the run."""

    def __init__(self, sim, computes: list[str]):
        self.sim, self.computes = sim, computes
        self.last: dict[str, dict] = {}
        self.totals: dict[str, Counter] = {c: Counter() for c in computes}
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(1.0):
            self.sample()

    def sample(self):
        for compute in self.computes:
            try:
                now = workload(self.sim, compute)
            except (requests.RequestException, ValueError):
                continue  # restarting
            for sample in now.get("failure_samples") or []:
                entry = {"compute": compute, **sample}
                if entry not in self.samples and len(self.samples) < 40:
                    self.samples.append(entry)
            counters = Counter({"reads_ok": now.get("reads_ok", 0), "writes_acked": now.get("writes_acked", 0)})
            for reason, n in (now.get("failures_by_reason") or {}).items():
                counters[f"read:{reason}"] = n
            previous = self.last.get(compute) or Counter()
            reset = counters["reads_ok"] < previous.get("reads_ok", 0) or any(
                counters[k] < v for k, v in previous.items()
            )
            base = Counter() if reset else previous
            for key, value in counters.items():
                self.totals[compute][key] += max(0, value - base.get(key, 0))
            self.last[compute] = counters

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()
        merged: Counter = Counter()
        for c in self.totals.values():
            merged.update(c)
        failed = {k.split(":", 1)[1]: v for k, v in merged.items() if k.startswith("read:") and v}
        return {
            "reads_ok": merged["reads_ok"],
            "writes_acked": merged["writes_acked"],
            "reads_failed": sum(failed.values()),
            **read_split(failed),
            "by_reason": failed,
            # Not page-read timeouts: what an unavailable or wrong read looked like.
            "samples": [s for s in self.samples if s.get("reason") not in SLOW_READ_REASONS][:10],
        }


# ---- faults -----------------------------------------------------------------------------------------------------


class Injector:
    """Injects the plan's fault into a fleet and takes it back (a timer, or clear_all once the run ended)."""

    def __init__(self, sim, plan: dict, tenant: dict):
        self.sim, self.plan, self.tenant = sim, plan, tenant
        self.fault = plan["fault"]
        self.record: dict = {"injected": False}
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()

    def node_of(self, side: str) -> str:
        return self.plan[side]

    def later(self, seconds: float | None, action):
        if seconds is None:
            return  # clear_all, after the run
        timer = threading.Timer(seconds, self._guarded, (action,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _guarded(self, action):
        with self._lock:
            try:
                action()
            except Exception as exc:  # a node that will not restart is reported by the invariants
                self.record.setdefault("clear_errors", []).append(repr(exc)[:300])

    def inject(self, phase_seen: str, run: Background | None) -> None:
        f, sim = self.fault, self.sim
        self.record.update({"injected": True, "phase": phase_seen, "at": time.time()})
        kind = f["kind"]
        if kind == "ps_crash":
            node = self.node_of(f["side"])
            sim.kill(node)
            self.later(f["down_s"], lambda: self.ensure_running(node))
        elif kind == "ps_freeze":
            node = self.node_of(f["side"])
            sim.fault(node, freeze=True)
            self.later(f["duration_s"], lambda: sim.clear_fault(node))
        elif kind == "s3_errors":
            sim.fault("s3proxy", error_rate=f["error_rate"], status=503)
            self.later(f["duration_s"], lambda: sim.clear_fault("s3proxy"))
        elif kind == "s3_slow":
            sim.fault("s3proxy", latency_ms=f["latency_ms"])
            self.later(f["duration_s"], lambda: sim.clear_fault("s3proxy"))
        elif kind == "safekeeper_down":
            sim.kill(f["node"])
        elif kind == "compute_restart":
            sim.kill(f["node"])
            sim.start(f["node"])
        elif kind == "storcon_down":
            if f["how"] == "kill":
                sim.kill(STORCON)
                self.later(f["down_s"], lambda: self.ensure_running(STORCON))
            else:
                sim.fault(STORCON, status=503)
                self.later(f["down_s"], lambda: sim.clear_fault(STORCON))
        elif kind == "branch_on_source":
            self.create_branch()
        elif kind == "playbook_kill":
            assert run is not None
            run.kill()

    def create_branch(self):
        main = next(t["timeline_id"] for t in self.tenant["timelines"] if t["ancestor_timeline_id"] is None)
        branch = uuid.uuid4().hex
        node = self.plan["source"]
        response = requests.post(
            f"{self.sim.url(node)}/v1/tenant/{self.tenant['tenant_id']}/timeline",
            json={"new_timeline_id": branch, "ancestor_timeline_id": main},
            timeout=60,
        )
        # Refused once the source no longer serves the tenant (after finalize): nothing to keep then.
        self.record["branch"] = {"timeline_id": branch, "status": response.status_code, "body": response.text[:200]}

    def ensure_running(self, node: str) -> None:
        alive = {row["name"]: row["alive"] for row in self.sim.status()}
        if not alive.get(node, True):
            self.sim.start(node)

    def clear_all(self) -> None:
        for timer in self._timers:
            timer.cancel()
        with self._lock:
            for node in (*PAGESERVERS, STORCON, "s3proxy"):
                with contextlib.suppress(Exception):
                    self.sim.clear_fault(node)
            for row in self.sim.status():
                if not row["alive"]:
                    self.sim.start(row["name"])


def wait_and_inject(run: Background, injector: Injector, target: str, delay_s: float, timeout: float) -> None:
    """Poll the run's lock file; at the target phase (or the first later one, if the target was too short to be
    seen), wait delay_s and inject. A run that ends before leaves the fault not injected."""
    order = {p: i for i, p in enumerate(PHASES)}
    deadline = time.time() + timeout
    while time.time() < deadline:
        phase = run.state().get("phase")
        if phase in order and order[phase] >= order[target]:
            time.sleep(delay_s)
            seen = run.state().get("phase") or phase
            if run.proc.poll() is None:
                injector.inject(seen, run)
            return
        if phase in ("rollback", "failover") or run.proc.poll() is not None:
            return
        time.sleep(0.05)


# ---- one iteration ------------------------------------------------------------------------------------------------


def run_iteration(seed: int, workdir: Path, keep: bool = False) -> dict:
    """Run one seeded iteration in workdir/seed-<seed>; the result dict (a JSON line)."""
    plan = plan_iteration(seed)
    base = Path(workdir) / f"seed-{seed}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    result: dict = {
        "seed": seed,
        "plan": plan,
        "runs": [],
        "violations": [],
        "invariants": {},
        "repro": repro_command(seed),
        "dir": str(base),
    }
    started = time.time()
    sim = None
    try:
        sim = fleet_mod.start_fleet(fleet_topology(plan), base / "fleet", owner_pid=os.getpid())
        result["timings"] = {"fleet_up": round(time.time() - started, 1)}
        _iteration(sim, plan, base, result)
    except Exception:
        result["harness_error"] = traceback.format_exc()[-3000:]
    finally:
        result["duration_s"] = round(time.time() - started, 1)
        if sim is not None:
            try:
                sim.down()
            except Exception as exc:
                result.setdefault("harness_error", f"fleet down: {exc}")
    result["ok"] = not result["violations"] and "harness_error" not in result
    if result["ok"] and not keep:
        shutil.rmtree(base, ignore_errors=True)
    return result


def _iteration(sim, plan: dict, base: Path, result: dict) -> None:
    tenant = next(t for t in sim.fleet["tenants"] if t["name"] == "t")
    tid = tenant["tenant_id"]
    tsids = shard_ids(tenant)
    for compute in plan["computes"]:
        wait_for_writes(sim, compute)
    before = all_locations(sim)
    holders_before = {}
    for tsid in tsids:
        attached = attached_of(before, tsid)
        assert len(attached) == 1, f"fleet started with {tsid} attached at {attached}"
        holders_before[tsid] = attached[0][0]
    policy_before = storcon_scheduling(sim, tid)
    conf_before = dict(tenant.get("tenant_conf") or {})
    report_dir = base / "reports"
    extra = {
        "tenant_migration_prewarm": plan["options"]["prewarm"],
        "tenant_migration_compute_cutover": plan["options"]["compute_cutover"],
        "tenant_migration_source_final_mode": plan["options"]["source_final_mode"],
    }
    monitor = ReadMonitor(sim, plan["computes"]).start()
    injector = Injector(sim, plan, tenant)
    fault = plan["fault"]

    run = Background(sim, tid, plan["source"], plan["destination"], report_dir, **extra)
    try:
        wait_and_inject(run, injector, fault["phase"], fault["delay_s"], RUN_TIMEOUT_S)
        first = run.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.kill()
        first = run.wait(timeout=60)
        result["violations"].append("run_hung")
    finally:
        if run.proc.poll() is None:
            run.kill()
    result["fault"] = injector.record
    result["runs"].append(_run_summary(first))
    injector.clear_all()

    last = first
    while not finished(last.report) and len(result["runs"]) < MAX_RUNS:
        last = migrate(sim, tid, plan["source"], plan["destination"], report_dir, timeout=RUN_TIMEOUT_S, **extra)
        result["runs"].append(_run_summary(last))
    outcome = (last.report or {}).get("outcome")
    result["outcome"] = outcome
    result["timings"]["runs"] = round(time.time() - run.started, 1)
    reads = monitor.stop()
    result["reads"] = reads

    forward = outcome in FORWARD
    moved = [t for t in tsids if holders_before[t] == plan["source"]]
    expected = {t: (plan["destination"] if forward and t in moved else holders_before[t]) for t in tsids}
    result["expected_holders"] = expected
    check = Checks(result)
    check("outcome_terminal", outcome in TERMINAL, f"outcome {outcome} after {len(result['runs'])} runs")

    # A node the fault killed was just restarted (clear_all): let each holder finish attaching before reading.
    for tsid in tsids:
        wait_active(sim, expected[tsid], tsid)
    # Every acknowledged write, read back through each compute as it is configured now.
    lost = read_back(sim, plan, result, "superseded")
    check("acked_writes_readable", not lost, lost)

    found = all_locations(sim)
    check_holders(check, "one_attached_single", found, expected)
    report = checker.run_check(sim.dir)
    check(
        "s3_consistent",
        report["ok"],
        {k: report[k] for k in ("lost_layers_count", "lost_keys_count", "lost_layers", "lost_keys")},
    )
    wrong_conf = [
        (ps, tsid, mode, (found[ps] or {}).get(tsid, {}).get("tenant_conf"))
        for tsid in tsids
        for ps, mode, _gen in attached_of(found, tsid)
        if (found[ps] or {}).get(tsid, {}).get("tenant_conf") != conf_before
    ]
    check("background_config_restored", not wrong_conf, {"expected": conf_before, "found": wrong_conf})
    policy = storcon_scheduling(sim, tid)
    check("storcon_policy_restored", policy == policy_before, {"before": policy_before, "after": policy})
    lock = base / "reports" / ".state" / f"{tid}.lock"
    holder = json.loads(lock.read_text()) if lock.exists() else {}
    check("lock_released", not holder or holder.get("released"), holder.get("owner"))
    wrong_conn = {}
    for compute in plan["computes"]:
        want = ",".join(f"postgres://no_user@127.0.0.1:{sim.entry(expected[t])['pg_port']}" for t in tsids)
        have = compute_connstring(sim, compute)
        if have != want:
            wrong_conn[compute] = {"connstring": have, "expected": want}
    check("computes_reach_holder", not wrong_conn, wrong_conn)
    branch = (result.get("fault") or {}).get("branch")
    if branch and branch["status"] in (200, 201):
        holder_ps = expected[tsids[0]]
        try:
            on_holder = {t["timeline_id"] for t in get_json(f"{sim.url(holder_ps)}/v1/tenant/{tid}/timeline")}
        except (requests.RequestException, ValueError) as exc:
            on_holder = {f"unreadable: {exc}"}
        check("branch_kept", branch["timeline_id"] in on_holder, {"on": holder_ps, "timelines": sorted(on_holder)})

    result["timings"]["checks"] = round(time.time() - run.started - result["timings"]["runs"], 1)
    # Restart every pageserver: the storage controller's re-attach must hand each shard to its one holder.
    for ps in PAGESERVERS:
        sim.kill(ps)
    for ps in PAGESERVERS:
        sim.start(ps)
    for tsid in tsids:
        wait_active(sim, expected[tsid], tsid)
    check_holders(check, "reattach_no_split_brain", all_locations(sim), expected)
    lost = read_back(sim, plan, result, "superseded_after_restart")
    check("acked_writes_readable_after_restart", not lost, lost)
    result["timings"]["restart_checks"] = round(
        time.time() - run.started - result["timings"]["runs"] - result["timings"]["checks"], 1
    )


def read_back(sim, plan: dict, result: dict, figure: str) -> dict:
    """Each compute's verify (every acknowledged key at the last acknowledged LSN); the keys it found lost.

    A key answered with a value the compute never saw acknowledged, proven newer than the acknowledged one (an
    in-doubt write of a killed compute that committed after all: neonsim/workload.py `verify`), is counted in
    result[figure]; an error, an older value or an unexplained value is a violation."""
    lost, superseded = {}, 0
    for name in plan["computes"]:
        verified = workload_action(sim, name, "verify", timeout_ms=10000)
        superseded += verified.get("superseded_writes", 0)
        if verified["lost_writes"]:
            lost[name] = {"lost_writes": verified["lost_writes"], "samples": verified["lost_write_samples"][:5]}
    result[figure] = result.get(figure, 0) + superseded
    return lost


class Checks:
    def __init__(self, result: dict):
        self.result = result

    def __call__(self, name: str, ok: bool, detail) -> None:
        self.result["invariants"][name] = True if ok else {"violated": True, "detail": detail}
        if not ok:
            self.result["violations"].append(name)


def check_holders(check: Checks, name: str, found: dict, expected: dict) -> None:
    wrong = {}
    for tsid, holder in expected.items():
        attached = attached_of(found, tsid)
        if [(ps, mode) for ps, mode, _ in attached] != [(holder, "AttachedSingle")]:
            wrong[tsid] = {"expected": holder, "attached": attached}
    unanswered = [ps for ps, locs in found.items() if locs is None]
    if unanswered:
        wrong["unanswered"] = unanswered
    check(name, not wrong, wrong)


def finished(report: dict | None) -> bool:
    """Whether an operator would stop here: the move ended, and the run did not warn that the storage controller
    still holds the tenant at Stop (its advice then is to rerun once the controller answers)."""
    report = report or {}
    policy_left = any("still at scheduling policy Stop" in w for w in report.get("warnings") or [])
    return report.get("outcome") in TERMINAL and not policy_left


def _run_summary(run) -> dict:
    report = run.report or {}
    return {
        "rc": run.rc,
        "outcome": report.get("outcome"),
        "failed_phase": report.get("failed_phase"),
        "error": (report.get("error") or "")[:400] or None,
        "resumed_from": report.get("resumed_from"),
        "warnings": [w[:300] for w in report.get("warnings") or []][:5],
    }


# ---- the campaign -----------------------------------------------------------------------------------------------


def run_campaign(seeds: list[int], jobs: int, workdir: Path, keep: bool, until: float | None = None) -> list[dict]:
    """Each iteration in a child process of its own (a fleet per iteration, own dir and ports), `jobs` at once.
    No iteration starts after `until` (epoch seconds); SIGTERM/SIGINT stop the running ones and their fleets."""
    workdir.mkdir(parents=True, exist_ok=True)
    results_path = workdir / "results.jsonl"
    pending = list(seeds)
    running: dict[int, tuple[subprocess.Popen, float, Path]] = {}
    results: list[dict] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / ".collections"), env.get("PYTHONPATH", "")])
    print(f"chaos: {len(seeds)} iterations, seeds {seeds[0]}..{seeds[-1]}, {jobs} at once, in {workdir}", flush=True)

    def stop(signum, _frame):
        for seed, (proc, _t0, _out) in running.items():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            with contextlib.suppress(Exception):
                fleet_mod.down(workdir / f"seed-{seed}" / "fleet")
        print(f"chaos: stopped by signal {signum}; iterations not finished: {sorted(running)}", flush=True)
        raise SystemExit(130)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while pending or running:
        if until is not None and time.time() >= until and pending:
            print(f"chaos: --until reached; {len(pending)} iterations not started (seeds {pending[0]}..)", flush=True)
            pending.clear()
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            out = workdir / f"result-{seed}.json"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "tests.chaos.campaign", "--one", str(seed), "--workdir", str(workdir)]
            if keep:
                cmd.append("--keep")
            log = open(workdir / f"iteration-{seed}.log", "w")  # noqa: SIM115
            proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            log.close()
            running[seed] = (proc, time.time(), out)
        time.sleep(1)
        for seed, (proc, t0, out) in list(running.items()):
            timed_out = time.time() - t0 > ITERATION_TIMEOUT_S
            if proc.poll() is None and not timed_out:
                continue
            if timed_out and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                with contextlib.suppress(Exception):
                    fleet_mod.down(workdir / f"seed-{seed}" / "fleet")
            del running[seed]
            if out.exists():
                result = json.loads(out.read_text())
                out.unlink()
            else:
                result = {
                    "seed": seed,
                    "plan": plan_iteration(seed),
                    "violations": [],
                    "harness_error": f"iteration process ended (rc {proc.returncode}, timed out {timed_out}) "
                    f"without a result; see {workdir}/iteration-{seed}.log",
                    "repro": repro_command(seed),
                    "duration_s": round(time.time() - t0, 1),
                    "ok": False,
                }
            results.append(result)
            with results_path.open("a") as f:
                f.write(json.dumps(result, default=str) + "\n")
            print(one_line(result, len(results), len(seeds)), flush=True)
    return results


def one_line(result: dict, n: int, total: int) -> str:
    plan = result["plan"]
    fault = result.get("fault") or {}
    phase = fault.get("phase") if fault.get("injected") else "not-injected"
    status = "ok" if result.get("ok") else "FAIL " + ",".join(result.get("violations") or ["harness_error"])
    line = (
        f"[{n}/{total}] seed {result['seed']}: {plan['layout']} {plan['source']}->{plan['destination']} "
        f"{plan['fault']['kind']}@{phase} outcome={result.get('outcome')} runs={len(result.get('runs') or [])} "
        f"{result.get('duration_s')}s {status}"
    )
    if not result.get("ok"):
        line += f"\n    reproduce: {result['repro']}"
        if result.get("harness_error"):
            line += "\n    " + result["harness_error"].strip().splitlines()[-1]
    return line


def summarize(results: list[dict]) -> dict:
    by_kind_phase: dict[str, Counter] = defaultdict(Counter)
    failed_reads: dict[str, Counter] = defaultdict(Counter)
    outcomes: Counter = Counter()
    violations: Counter = Counter()
    for r in results:
        kind = r["plan"]["fault"]["kind"]
        fault = r.get("fault") or {}
        phase = fault.get("phase") if fault.get("injected") else "not-injected"
        by_kind_phase[kind][phase] += 1
        outcomes[str(r.get("outcome"))] += 1
        for v in r.get("violations") or []:
            violations[v] += 1
        reads = r.get("reads") or {}
        failed_reads[kind].update(
            {"iterations": 1, "reads_ok": reads.get("reads_ok", 0), **read_split(reads.get("by_reason") or {})}
        )
    seeds = sorted(r["seed"] for r in results)
    return {
        "iterations": len(results),
        "seeds": f"{seeds[0]}..{seeds[-1]}" if seeds else "",
        "ok": sum(1 for r in results if r.get("ok")),
        "with_violations": sum(1 for r in results if r.get("violations")),
        "harness_errors": sum(1 for r in results if r.get("harness_error")),
        "violations": dict(violations),
        "outcomes": dict(outcomes),
        "faults": {k: dict(v) for k, v in sorted(by_kind_phase.items())},
        "failed_reads": {k: dict(v) for k, v in sorted(failed_reads.items())},
        "duration_s": round(sum(r.get("duration_s") or 0 for r in results), 1),
        # Keys whose final read-back found a newer, never-acknowledged value, proven newer (read_back).
        "superseded_keys": sum((r.get("superseded") or 0) + (r.get("superseded_after_restart") or 0) for r in results),
        "failing_seeds": [r["seed"] for r in results if not r.get("ok")],
    }


def render_summary(summary: dict, wall_s: float | None = None) -> str:
    lines = [
        f"iterations {summary['iterations']} (seeds {summary['seeds']}): ok {summary['ok']}, "
        f"with invariant violations {summary['with_violations']}, harness errors {summary['harness_errors']}",
        f"iteration time {summary['duration_s']} s" + (f", wall clock {wall_s:.0f} s" if wall_s else ""),
        "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["outcomes"].items())),
        "violations: " + (", ".join(f"{k} {v}" for k, v in sorted(summary["violations"].items())) or "none"),
        f"keys read back with a newer unacknowledged value (proven newer, not violations): "
        f"{summary.get('superseded_keys', 0)}",
        "",
        "faults by kind and phase (phase at injection):",
    ]
    columns = [*PHASES, "not-injected"]
    head = f"| {'fault':<17} | " + " | ".join(f"{c:>9}" for c in columns) + " |  total |"
    lines += [head, "|" + "|".join("-" * (len(part)) for part in head.split("|")[1:-1]) + "|"]
    for kind in FAULT_KINDS:
        row = summary["faults"].get(kind, {})
        cells = " | ".join(f"{row.get(c, 0):>{max(9, len(c))}}" for c in columns)
        lines.append(f"| {kind:<17} | {cells} | {sum(row.values()):>6} |")
    lines += [
        "",
        "failed reads per fault kind (unavailable: refused/404/503; slow: 10 s page-read wait expired; stale: an",
        "older acknowledged value; wrong: a value never seen acknowledged, after a compute restart):",
    ]
    lines.append(f"| {'fault':<17} | iterations | reads ok | unavailable | slow | stale | wrong |")
    lines.append(f"|{'-' * 19}|------------|----------|-------------|------|-------|-------|")
    for kind in FAULT_KINDS:
        row = summary["failed_reads"].get(kind, {})
        lines.append(
            f"| {kind:<17} | {row.get('iterations', 0):>10} | {row.get('reads_ok', 0):>8} | "
            f"{row.get('unavailable', 0):>11} | {row.get('slow', 0):>4} | {row.get('stale', 0):>5} | "
            f"{row.get('wrong', 0):>5} |"
        )
    if summary["failing_seeds"]:
        lines += ["", "failing seeds: " + " ".join(map(str, summary["failing_seeds"]))]
        lines += [f"  {repro_command(s)}" for s in summary["failing_seeds"][:10]]
    return "\n".join(lines)


def until_epoch(text: str | None) -> float | None:
    """The next moment the UTC clock reads HH:MM."""
    if not text:
        return None
    hours, minutes = (int(x) for x in text.split(":"))
    now = time.time()
    today = now - now % 86400 + hours * 3600 + minutes * 60
    return today if today > now else today + 86400


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="first iteration's seed (default: random, printed)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2, help="iterations (fleets) at once")
    parser.add_argument("--workdir", type=Path, help="default: /tmp/neonops-chaos/<time>")
    parser.add_argument("--keep", action="store_true", help="keep every iteration's fleet dir (failing ones are kept)")
    parser.add_argument("--until", help="start no iteration after this UTC time (HH:MM) and finish the running ones")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one iteration
    parser.add_argument("--summary", type=Path, help="print the summary table of a results.jsonl and exit")
    args = parser.parse_args(argv)
    if args.summary:
        results = [json.loads(line) for line in args.summary.read_text().splitlines() if line.strip()]
        summary = summarize(results)
        print(render_summary(summary))
        print(json.dumps(summary))
        return 0
    workdir = args.workdir or Path("/tmp/neonops-chaos") / time.strftime("%Y%m%dT%H%M%S")
    if args.one is not None:
        result = run_iteration(args.one, workdir, keep=args.keep)
        (workdir / f"result-{args.one}.json").write_text(json.dumps(result, default=str))
        return 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    seeds = list(range(seed, seed + args.iterations))
    started = time.time()
    results = run_campaign(seeds, max(1, args.jobs), workdir, args.keep, until=until_epoch(args.until))
    summary = summarize(results)
    summary["wall_s"] = round(time.time() - started, 1)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print()
    print(render_summary(summary, summary["wall_s"]))
    print(f"\nresults: {workdir}/results.jsonl, summary: {workdir}/summary.json")
    return 0 if summary["ok"] == summary["iterations"] else 1


if __name__ == "__main__":
    sys.exit(main())
