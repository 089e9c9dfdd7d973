"""The runbook's guards and invariants, observed from outside the role: the per-tenant lock refuses a live holder
and takes over a dead or stale one; preflight refuses a destination short of disk headroom or one the storage
controller is draining; gc and compaction stay suspended on both pageservers for the whole move; the new
generation belongs to the destination (a restart of both pageservers leaves the tenant there).

Every test reads only the playbook's exit code and output, the lock-file contract (docs/runbooks/migrate-tenant.md,
preflight) and neonsim's own records (request logs, location and background-job histories; docs/contracts.md §5).
The file moves two tenants, each once (module fixtures): each move starts over a lock that must be taken over, and
two tests look at each move.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from migration_harness import (
    ATTACHED,
    MIGRATION_TOPOLOGY,
    WORKLOAD,
    Run,
    location_history,
    locations,
    migrate,
    mutating_requests,
    tenant_id,
    topology,
    verdict,
    wait_for_writes_then_pause,
    workload,
    workload_action,
)

pytestmark = pytest.mark.neonsim

GIB = 1024**3
# ps3 is small: the headroom test's tenant fits in its free space, but not with the default 1.5x headroom.
PS3_CAPACITY = 4 * GIB
BIG_TENANT_BYTES = 3 * GIB
# gc and compaction every second, so a move of several seconds would see both run if they were not suspended.
BUSY_CONF = {"gc_period": "1s", "compaction_period": "1s"}
# Destination scheduling policies on the storage controller the runbook must refuse (one tenant each).
REFUSED_POLICIES = ("Draining", "PauseForRestart")


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    pageservers = [dict(ps) for ps in MIGRATION_TOPOLOGY["pageservers"]]
    pageservers[2]["disk_capacity_bytes"] = PS3_CAPACITY
    # Tenants that only need the playbook's decisions have no compute; the others run their workload while moved.
    names = ("locked", "big", *(f"drain-{p}" for p in REFUSED_POLICIES))
    tenants = [{"name": n, "pageservers": ["ps1"]} for n in names]
    tenants += [
        {"name": "busy", "pageservers": ["ps1"], "tenant_conf": BUSY_CONF},
        {"name": "regen", "pageservers": ["ps1"]},
    ]
    computes = [{"name": f"c-{n}", "tenant": n, "workload": WORKLOAD} for n in ("busy", "regen")]
    sim = neonsim_fleet_module({**topology(tenants, computes), "pageservers": pageservers})
    wait_for_writes_then_pause(sim)
    big = tenant_id(sim, "big")
    made = requests.post(
        f"{sim.url('ps1')}/sim/tenant/{big}/synthetic",
        json={"physical_size_bytes": BIG_TENANT_BYTES, "layers": 4},
        timeout=60,
    )
    made.raise_for_status()
    return sim


@dataclass
class Move:
    tid: str
    run: Run
    started: float
    ended: float
    verdict: dict = field(default_factory=dict)


# ---- helpers ------------------------------------------------------------------------------------------------------


def fleet_changes(fleet, since: float, until: float) -> list[dict]:
    """Requests that changed something on a node in [since, until], other than the pageservers' own upcalls."""
    return [
        r for r in mutating_requests(fleet, since_ts=since) if r["ts"] <= until and not r["path"].startswith("/upcall/")
    ]


def hostname() -> str:
    return subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()


def write_lock(report_dir: Path, tid: str, pid: int, heartbeat_s: float) -> tuple[Path, dict]:
    """A lock as another run of the playbook on this host leaves it (the runbook's lock-file contract)."""
    lock = {
        "owner": {"host": hostname(), "pid": pid, "run_id": f"other-run-{pid}", "user": "someone-else"},
        "heartbeat_s": heartbeat_s,
        "released": False,
        "phase": "attach",
        "journal": {},
    }
    path = report_dir / ".state" / f"{tid}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(lock))
    return path, lock


def sleeper() -> subprocess.Popen:
    """A process of this host, to name as a lock's owner."""
    return subprocess.Popen(["sleep", "600"])


@pytest.fixture
def live_pid():
    proc = sleeper()
    yield proc.pid
    proc.kill()
    proc.wait()


def assert_moved(fleet, tid: str, source: str, destination: str) -> None:
    dst = locations(fleet, destination).get(tid) or {}
    src = locations(fleet, source).get(tid) or {}
    assert dst.get("mode") == "AttachedSingle", (destination, dst)
    assert src.get("mode", "Detached") not in ATTACHED, (source, src)


def assert_refused_untouched(fleet, run, tid: str, started: float, ended: float, before: dict) -> None:
    changes = fleet_changes(fleet, started, ended)
    assert run.rc != 0, f"the run was not refused; it made {len(changes)} changes, first {changes[:3]}\n{run}"
    assert changes == [], f"the refused run changed the fleet: {changes}"
    assert {ps: locations(fleet, ps).get(tid) for ps in before} == before


def set_node_scheduling(fleet, node: str, policy: str) -> None:
    node_id = fleet.entry(node)["node_id"]
    resp = requests.put(
        f"{fleet.storcon_url}/control/v1/node/{node_id}/config",
        json={"node_id": node_id, "scheduling": policy},
        headers=fleet.headers("storcon"),
        timeout=10,
    )
    resp.raise_for_status()


def background(fleet, pageserver: str, tsid: str, since: float) -> list[dict]:
    """neonsim's record of the periodic gc and compaction iterations a pageserver started for a shard."""
    body = requests.get(
        f"{fleet.url(pageserver)}/sim/background", params={"tenant_shard_id": tsid, "since": since}, timeout=10
    ).json()
    return body["iterations"]


def timeline_ids(fleet, pageserver: str, tsid: str) -> set:
    resp = requests.get(f"{fleet.url(pageserver)}/v1/tenant/{tsid}/timeline", timeout=10)
    return {t["timeline_id"] for t in resp.json()} if resp.status_code == 200 else set()


def wait_until(what: str, probe, timeout: float = 60):
    deadline = time.time() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.5)


# ---- 1. the lock ----------------------------------------------------------------------------------------------


def test_lock_held_by_a_live_process_refuses_the_run_and_changes_nothing(fleet, report_dir, live_pid):
    """A lock with a live owner on this host and a fresh heartbeat: the run stops, names the holder, and sends no
    request that changes anything."""
    tid = tenant_id(fleet, "locked")
    path, lock = write_lock(report_dir, tid, live_pid, heartbeat_s=time.time())
    before = {ps: locations(fleet, ps).get(tid) for ps in ("ps1", "ps2")}
    started = time.time()

    run = migrate(fleet, tid, "ps1", "ps2", report_dir)
    ended = time.time()

    assert_refused_untouched(fleet, run, tid, started, ended, before)
    assert str(live_pid) in run.output and lock["owner"]["run_id"] in run.output, run
    # The holder's lock is left as it was.
    assert json.loads(path.read_text()) == lock


@pytest.fixture(scope="module")
def regen_move(fleet, tmp_path_factory) -> Move:
    """`regen` moved ps1 -> ps2 (cold) over the lock of an earlier run whose process is gone."""
    report_dir = tmp_path_factory.mktemp("regen") / "reports"
    tid = tenant_id(fleet, "regen")
    holder = sleeper()
    holder.kill()
    holder.wait()
    write_lock(report_dir, tid, holder.pid, heartbeat_s=time.time())
    started = time.time()
    run = migrate(fleet, tid, "ps1", "ps2", report_dir, tenant_migration_prewarm=False)
    move = Move(tid, run, started, time.time())
    workload_action(fleet, "c-regen", "stop")
    return move


@pytest.fixture(scope="module")
def busy_move(fleet, tmp_path_factory) -> Move:
    """`busy` (gc and compaction every second) moved ps1 -> ps2 (warm) over a stale lock: its holder still runs,
    but its heartbeat is older than tenant_migration_lock_stale_after. The destination ingests WAL only 6 s after
    it attaches, so the move spans several gc and compaction periods."""
    report_dir = tmp_path_factory.mktemp("busy") / "reports"
    tid = tenant_id(fleet, "busy")
    holder = sleeper()
    lag = f"{fleet.url('ps2')}/sim/walreceiver"
    try:
        write_lock(report_dir, tid, holder.pid, heartbeat_s=time.time() - 600)
        started = time.time()
        requests.post(lag, json={"connect_delay_ms": 6000}, timeout=10).raise_for_status()
        run = migrate(fleet, tid, "ps1", "ps2", report_dir, tenant_migration_lock_stale_after=300)
        ended = time.time()
    finally:
        requests.post(lag, json={"connect_delay_ms": 0}, timeout=10)
        holder.kill()
        holder.wait()
    return Move(tid, run, started, ended, verdict=verdict(fleet, "c-busy"))


def test_lock_of_a_process_that_is_gone_is_taken_over(fleet, regen_move):
    """The lock names a pid of this host that no longer runs: the run takes it over and moves the tenant."""
    assert regen_move.run.rc == 0, regen_move.run
    assert_moved(fleet, regen_move.tid, "ps1", "ps2")


def test_lock_with_a_stale_heartbeat_is_taken_over(fleet, busy_move):
    """The lock's owner runs, but its heartbeat is older than lock_stale_after: taken over, the tenant moved."""
    assert busy_move.run.rc == 0, busy_move.run
    assert_moved(fleet, busy_move.tid, "ps1", "ps2")


# ---- 2. disk headroom -----------------------------------------------------------------------------------------


def test_destination_without_disk_headroom_is_refused(fleet, report_dir):
    tid = tenant_id(fleet, "big")
    size = requests.get(f"{fleet.url('ps1')}/v1/tenant/{tid}", timeout=10).json()["current_physical_size"]
    free = requests.get(f"{fleet.url('ps3')}/v1/utilization", timeout=10).json()["free_space_bytes"]
    needed = int(size * 1.5)  # tenant_migration_disk_headroom_ratio's default
    # The tenant itself would fit: only the headroom ratio refuses it.
    assert size == BIG_TENANT_BYTES and size < free < needed, (size, free, needed)
    before = {ps: locations(fleet, ps).get(tid) for ps in ("ps1", "ps3")}
    started = time.time()

    run = migrate(fleet, tid, "ps1", "ps3", report_dir)
    ended = time.time()

    assert_refused_untouched(fleet, run, tid, started, ended, before)
    assert str(needed) in run.output, f"the error does not name the {needed} bytes needed:\n{run}"


# ---- 3. the destination's scheduling policy on the storage controller --------------------------------------------


@pytest.mark.parametrize("policy", REFUSED_POLICIES)
def test_destination_the_controller_drains_is_refused(fleet, report_dir, policy):
    tid = tenant_id(fleet, f"drain-{policy}")
    before = {ps: locations(fleet, ps).get(tid) for ps in ("ps1", "ps2")}
    set_node_scheduling(fleet, "ps2", policy)
    try:
        started = time.time()
        run = migrate(fleet, tid, "ps1", "ps2", report_dir)
        ended = time.time()
    finally:
        set_node_scheduling(fleet, "ps2", "Active")

    assert_refused_untouched(fleet, run, tid, started, ended, before)
    assert policy in run.output, run


# ---- 4. gc and compaction suspended on both locations ----------------------------------------------------------


def test_gc_and_compaction_stay_suspended_on_both_pageservers_for_the_whole_move(fleet, busy_move):
    """From the source's first change (the suspension) to the destination's AttachedSingle, every location either
    pageserver takes carries gc_period and compaction_period 0s and neither starts a gc or compaction iteration
    for the tenant; afterwards both hold the original config and the destination runs gc and compaction again."""
    tid, started, ended = busy_move.tid, busy_move.started, busy_move.ended
    assert busy_move.run.rc == 0, busy_move.run

    src, dst = location_history(fleet, "ps1", tid, since=started), location_history(fleet, "ps2", tid, since=started)
    assert src and any(e["mode"] == "AttachedSingle" for e in dst), (src, dst)
    window_start = src[0]["ts"]
    window_end = next(e["ts"] for e in dst if e["mode"] == "AttachedSingle")
    assert window_end - window_start >= 5, (src, dst)
    unsuspended, ran = [], []
    for node, changes in (("ps1", src), ("ps2", dst)):
        for change in changes:
            conf = change.get("tenant_conf") or {}
            if change["ts"] < window_end and (conf.get("gc_period"), conf.get("compaction_period")) != ("0s", "0s"):
                unsuspended.append({"node": node, **change})
        ran += [{"node": node, **i} for i in background(fleet, node, tid, window_start) if i["ts"] < window_end]
    assert unsuspended == [] and ran == [], (
        f"during the move ({window_end - window_start:.1f} s): locations without gc and compaction suspended "
        f"{unsuspended}; gc and compaction iterations started {ran}"
    )

    # Afterwards both hold the original config again, and the destination runs gc and compaction.
    assert locations(fleet, "ps2")[tid]["tenant_conf"] == BUSY_CONF
    assert locations(fleet, "ps1")[tid]["tenant_conf"] == BUSY_CONF
    wait_until(
        "gc and compaction on ps2 after the move",
        lambda: {i["job"] for i in background(fleet, "ps2", tid, ended)} == {"gc", "compaction"},
        timeout=30,
    )
    assert busy_move.verdict["verified"]["lost_writes"] == 0, busy_move.verdict["verified"]


# ---- 5. the new generation belongs to the destination ------------------------------------------------------------


def test_after_a_restart_of_both_pageservers_the_tenant_stays_on_the_destination(fleet, regen_move):
    """Restarted pageservers ask the storage controller which tenants to attach (re-attach). It gives each shard to
    the node its latest generation was issued for: that must be the destination, or the tenant moves back to the
    source and the computes, now reading from the destination, fail. Runs last: it restarts ps1 and ps2."""
    tid = regen_move.tid
    assert regen_move.run.rc == 0, regen_move.run
    assert_moved(fleet, tid, "ps1", "ps2")
    timelines_before = timeline_ids(fleet, "ps2", tid)

    for node in ("ps1", "ps2"):
        fleet.kill(node)
    for node in ("ps1", "ps2"):
        fleet.start(node)  # returns once the node answers, after its re-attach

    dst = locations(fleet, "ps2").get(tid) or {}
    src = locations(fleet, "ps1").get(tid) or {}
    assert dst.get("mode") == "AttachedSingle", f"after re-attach ps2 holds {dst or 'nothing'} for {tid}"
    assert src.get("mode", "Detached") not in ATTACHED, f"after re-attach ps1 holds {src} for {tid}"
    wait_until("ps2 serving the tenant with its timelines", lambda: timeline_ids(fleet, "ps2", tid) == timelines_before)

    workload_action(fleet, "c-regen", "reset")
    workload_action(fleet, "c-regen", "start")
    wait_until("reads after the restarts", lambda: workload(fleet, "c-regen").get("reads_ok", 0) >= 60)
    outcome = verdict(fleet, "c-regen")
    assert outcome["during"]["reads_failed"] == 0, outcome["during"]
    assert outcome["verified"]["lost_writes"] == 0, outcome["verified"]
