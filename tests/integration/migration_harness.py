"""Helpers for the migration runbook's integration tests: ansible-playbook against neonsim fleets.

`migrate(...)` runs `neonops.storage.migrate_tenant` against a fleet's inventory and returns the exit code, the
output and the run's JSON report. `start_migrate(...)` does the same in the background (for kill tests).
Fleets come from the `neonsim_fleet*` factories of tests/neonsim/conftest.py; one fleet per test file
(`--dist loadfile`), tests in a file share it and use their own tenants where they could interfere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


PLAYBOOK = "neonops.storage.migrate_tenant"
ATTACHED = ("AttachedSingle", "AttachedMulti", "AttachedStale")

# Three pageservers; every tenant has a compute with a live workload, so each test moves its own tenant.
MIGRATION_TOPOLOGY = {
    "seed": 7,
    "auth": False,
    "availability_zones": ["az-a", "az-b"],
    "storage_controller": {"name": "storcon"},
    "pageservers": [{"name": "ps1", "az": "az-a"}, {"name": "ps2", "az": "az-a"}, {"name": "ps3", "az": "az-b"}],
    "safekeepers": [{"name": "sk1", "az": "az-a"}, {"name": "sk2", "az": "az-a"}, {"name": "sk3", "az": "az-b"}],
    "tenants": [],
    "computes": [],
}
# Reads wait up to 10 s for the pageserver to ingest their LSN, as a compute waits on its pageserver: on a starved
# machine a 2 s page-read timeout fails reads on any pageserver, migration or not. A read outage still fails fast
# (404/503 from a pageserver that does not serve the tenant), so "0 failed reads" keeps its meaning.
WORKLOAD = {"enabled": True, "write_rate": 20, "read_rate": 20, "keys": 100, "read_timeout_ms": 10000}


def topology(tenants: list[dict], computes: list[dict], prefixes: dict[str, str] | None = None) -> dict:
    """MIGRATION_TOPOLOGY with these tenants and computes; ``prefixes`` gives pageservers (by name) another
    prefix_in_bucket than the fleet's, as in a fleet grown in two generations."""
    # A seed of its own per fleet: tenant ids derive from it, and fleets that run at once (xdist workers) must not
    # share ids, or a request that reaches another fleet's node (a killed node's port reused) would find a tenant.
    seed = int.from_bytes(os.urandom(4), "big")
    layout = {**MIGRATION_TOPOLOGY, "seed": seed, "tenants": tenants, "computes": computes}
    if prefixes:
        layout["pageservers"] = [
            {**ps, "prefix_in_bucket": prefixes[ps["name"]]} if ps["name"] in prefixes else ps
            for ps in layout["pageservers"]
        ]
    return layout


def plain_tenants(*names: str, on: str = "ps1") -> tuple[list[dict], list[dict]]:
    tenants = [{"name": n, "pageservers": [on]} for n in names]
    computes = [{"name": f"c-{n}", "tenant": n, "workload": WORKLOAD} for n in names]
    return tenants, computes


@dataclass
class Run:
    rc: int
    output: str
    report: dict | None

    def __repr__(self) -> str:
        # The report's verdict first: pytest truncates long reprs, and the output's tail may not show the cause.
        report = self.report or {}
        verdict = (
            f"outcome={report.get('outcome')} failed_phase={report.get('failed_phase')} error={report.get('error')}"
        )
        return f"rc={self.rc} {verdict}\n{self.output[-8000:]}"


def ansible_env(tmp: Path, collections_path: str | None = None) -> dict:
    env = dict(os.environ)
    # The benchmark points this at another build of the collection (the role before a change) to compare runs.
    collections = collections_path or str(REPO / ".collections")
    env.update(
        ANSIBLE_COLLECTIONS_PATH=collections,
        PYTHONPATH=os.pathsep.join([str(REPO), collections]),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )
    return env


def playbook_cmd(
    fleet, tenant_id: str, source: str, destination: str, report_dir: Path, check=False, ansible_args=(), **extra
):
    extra_vars = {
        "tenant_migration_tenant_id": tenant_id,
        "tenant_migration_source": source,
        "tenant_migration_destination": destination,
        "tenant_migration_report_dir": str(report_dir),
        # neonsim: a compute "restart" is a process restart that re-reads its spec file.
        "tenant_migration_compute_restart_command": neonsim_restart_command(),
        **extra,
    }
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(fleet.inventory_path),
        PLAYBOOK,
        "-e",
        json.dumps(extra_vars),
    ]
    if check:
        cmd.append("--check")
    return cmd + list(ansible_args)


def neonsim_restart_command() -> str:
    # A restart of the compute process: like compute_ctl, it renders postgresql.conf from the (rewritten) spec.
    neonsim = f"cd {REPO} && {sys.executable} -m neonsim"
    fleet_dir = "--dir {{ neonsim_dir }}"
    return f"{neonsim} kill {{compute}} {fleet_dir} && {neonsim} start {{compute}} {fleet_dir}"


def latest_report(report_dir: Path, since: float = 0.0) -> dict | None:
    reports = [p for p in Path(report_dir).glob("*.json") if p.stat().st_mtime >= since]
    if not reports:
        return None
    return json.loads(max(reports, key=lambda p: p.stat().st_mtime).read_text())


def migrate(
    fleet,
    tenant_id,
    source,
    destination,
    report_dir,
    check=False,
    timeout=1800,
    ansible_args=(),
    collections_path=None,
    **extra,
) -> Run:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    run_workloads_of(fleet, tenant_id)
    started = time.time()
    proc = subprocess.run(
        playbook_cmd(
            fleet, tenant_id, source, destination, report_dir, check=check, ansible_args=ansible_args, **extra
        ),
        cwd=report_dir,
        env=ansible_env(report_dir, collections_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout + proc.stderr, latest_report(report_dir, started - 1))


class Background:
    """A playbook run in its own process group, for tests that kill it or break nodes under it."""

    def __init__(self, fleet, tenant_id, source, destination, report_dir, **extra):
        self.report_dir = Path(report_dir)
        self.report_dir.mkdir(parents=True, exist_ok=True)
        self.tenant_id = tenant_id
        run_workloads_of(fleet, tenant_id)
        self.started = time.time()
        self.log = open(self.report_dir / f"playbook-{int(self.started)}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            playbook_cmd(fleet, tenant_id, source, destination, self.report_dir, **extra),
            cwd=self.report_dir,
            env=ansible_env(self.report_dir),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def state(self) -> dict:
        path = self.report_dir / ".state" / f"{self.tenant_id}.lock"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def wait_phase(self, phase: str, timeout: float = 1200) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.state().get("phase") == phase:
                return
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                raise AssertionError(f"playbook ended (rc {rc}) before phase {phase}:\n{self.output()}")
            time.sleep(0.2)
        raise AssertionError(f"phase {phase} not reached in {timeout} s:\n{self.output()}")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def wait(self, timeout: float = 1800) -> Run:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.log.close()
        return Run(self.proc.returncode, self.output(), latest_report(self.report_dir, self.started - 1))

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()


def tenant_id(fleet, name: str) -> str:
    return next(t["tenant_id"] for t in fleet.fleet["tenants"] if t["name"] == name)


def tenant_entry(fleet, name: str) -> dict:
    return next(t for t in fleet.fleet["tenants"] if t["name"] == name)


def locations(fleet, pageserver: str) -> dict:
    body = requests.get(
        f"{fleet.url(pageserver)}/v1/location_config",
        headers=fleet.headers("pageserver"),
        timeout=10,
        verify=fleet.verify,
    )
    body = body.json()
    return {tsid: conf for tsid, conf in body["tenant_shards"]}


def shard_ids(fleet, name: str) -> list[str]:
    t = tenant_entry(fleet, name)
    if not t["shard_count"]:
        return [t["tenant_id"]]
    return [f"{t['tenant_id']}-{n:02x}{t['shard_count']:02x}" for n in range(t["shard_count"])]


def timelines(fleet, pageserver: str, tsid: str) -> dict:
    body = requests.get(
        f"{fleet.url(pageserver)}/v1/tenant/{tsid}/timeline",
        headers=fleet.headers("pageserver"),
        timeout=10,
        verify=fleet.verify,
    ).json()
    return {t["timeline_id"]: t for t in body}


def location_history(fleet, pageserver: str, tsid: str, since: float) -> list[dict]:
    """The simulator's own record of location changes (not the role's report)."""
    body = requests.get(f"{fleet.url(pageserver)}/sim/pageserver", timeout=10, verify=fleet.verify).json()
    return [e for e in body["location_history"] if e["tenant_shard_id"] == tsid and e["ts"] >= since]


def first_change(history: list[dict], mode: str) -> float:
    times = [e["ts"] for e in history if e["mode"] == mode]
    assert times, f"no change to {mode} in {history}"
    return times[0]


def compute_switched_at(fleet, compute: str, pageserver: str, since: float) -> float:
    """When the compute started reading from `pageserver`, by the simulated compute's own record."""
    history = requests.get(f"{fleet.url(compute)}/sim/compute", timeout=10, verify=fleet.verify).json()[
        "pageserver_history"
    ]
    port = fleet.entry(pageserver)["pg_port"]
    times = [e["ts"] for e in history if e["ts"] >= since and e["connstring"].endswith(f":{port}")]
    assert times, f"{compute} never switched to {pageserver}: {history}"
    return times[0]


def storcon_scheduling(fleet, tid: str) -> set:
    """The tenant's shard scheduling policies on the storage controller."""
    url = f"{fleet.storcon_url}/control/v1/tenant/{tid}"
    body = requests.get(url, headers=fleet.headers("storcon"), timeout=10, verify=fleet.verify).json()
    return {shard["scheduling_policy"] for shard in body["shards"]}


def workload(fleet, compute: str) -> dict:
    return requests.get(f"{fleet.url(compute)}/sim/workload", timeout=10, verify=fleet.verify).json()


def workload_action(fleet, compute: str, action: str, **options) -> dict:
    r = requests.post(
        f"{fleet.url(compute)}/sim/workload", json={"action": action, **options}, timeout=120, verify=fleet.verify
    )
    r.raise_for_status()
    return r.json()


def wait_for_writes(fleet, compute: str, at_least: int = 20, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if workload(fleet, compute).get("writes_acked", 0) >= at_least:
            return
        time.sleep(0.3)
    raise AssertionError(f"{compute}: workload acknowledged fewer than {at_least} writes: {workload(fleet, compute)}")


def verdict(fleet, compute: str) -> dict:
    """Stop the workload and read back every acknowledged key; it stays stopped (counters reset) until the next
    move of its tenant starts it again."""
    during = workload(fleet, compute)
    verified = workload_action(fleet, compute, "verify", timeout_ms=10000)
    workload_action(fleet, compute, "reset")
    return {"during": during, "verified": verified}


def pause_workloads(fleet) -> None:
    """Stop every compute's workload (acknowledged history kept). Only the tenant being moved needs live traffic,
    and idle computes would cost the 2-core machine most of its CPU."""
    for compute in fleet.fleet["computes"]:
        workload_action(fleet, compute["name"], "stop")


def wait_for_writes_then_pause(fleet) -> None:
    """A new fleet ready for moves: every compute's workload has acknowledged writes (each tenant is served),
    then all are paused; a move starts its own tenant's workload again (run_workloads_of)."""
    for compute in fleet.fleet["computes"]:
        wait_for_writes(fleet, compute["name"])
    pause_workloads(fleet)


def run_workloads_of(fleet, tenant_id: str, new_writes: int = 10) -> None:
    """Start the workload of each compute of this tenant that is stopped, and wait for some fresh writes so the
    move happens under load. Running ones are left alone (they may be waiting on a node a test broke)."""
    for compute in fleet.fleet["computes"]:
        if compute["tenant_id"] != tenant_id:
            continue
        name = compute["name"]
        current = workload(fleet, name)
        if current.get("running"):
            continue
        workload_action(fleet, name, "start")
        wait_for_writes(fleet, name, at_least=current.get("writes_acked", 0) + new_writes)


# Page-read timeouts: the pageserver had not ingested the requested LSN in time (a lagging destination).
SLOW_READ_REASONS = {"http_504", "timeout"}


def unavailable_reads(during: dict) -> dict:
    """Failed reads that mean the tenant was not served (404/500/503, refused...), by reason."""
    return {k: v for k, v in (during.get("failures_by_reason") or {}).items() if k not in SLOW_READ_REASONS and v}


def slow_reads(during: dict) -> int:
    return sum(v for k, v in (during.get("failures_by_reason") or {}).items() if k in SLOW_READ_REASONS)


def compute_connstring(fleet, compute: str) -> str:
    entry = fleet.entry(compute)
    conf = Path(entry["pgdata"]) / "postgresql.conf"
    for line in conf.read_text().splitlines():
        if line.startswith("neon.pageserver_connstring"):
            return line.split("=", 1)[1].strip().strip("'")
    raise AssertionError(f"no pageserver connstring in {conf}")


def mutating_requests(fleet, since_ts: float | None = None) -> list[dict]:
    """Non-sim requests that changed something, across every node's request log."""
    names = [n["name"] for group in ("pageservers", "safekeepers", "computes") for n in fleet.fleet.get(group) or []]
    names.append(fleet.fleet["storage_controller"]["name"])
    found = []
    for name in names:
        for line in fleet.request_log(name):
            if since_ts is not None and _ts(line) < since_ts:
                continue
            if not line.get("sim") and line.get("mutating"):
                found.append(line)
    return found


def _ts(line: dict) -> float:
    ts = line.get("ts")
    if isinstance(ts, int | float):
        return float(ts)
    from datetime import datetime

    return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
