"""Read availability and orchestration cost of a tenant move, as the compute's workload sees it.

One neonsim fleet, one tenant per case on ps1 (each with a compute running a read-heavy workload). Each is moved
to ps2 a different way: (a) the runbook with prewarm, (b) the runbook without prewarm, (c) the runbook as it was
before its engine moved into Python (commit LEGACY_COMMIT, run from a build of that role in the same process),
(d) the early naive flow (detach A, attach B under a new generation, wait until Active, repoint the compute), and
(e) no move at all: a window of the same length as (a)'s move in that round, the baseline for read latency.
Each round moves every tenant once, alternating direction (ps1 -> ps2, then back), and the cases interleave
within a round so machine noise hits them alike. For each move: failed reads and p50/p99/max read latency over
the move window, lost writes afterwards, and for the runbook its phase times and orchestration overhead (total
minus time spent waiting on downloads and catch-up), per phase too. Medians over the rounds, plus ratios against
the baselines measured in the same run. Writes the tables to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "benchmarks"))

from migration_harness import WORKLOAD, migrate, topology, wait_for_writes, workload, workload_action  # noqa: E402

from neonsim.fleet import start_fleet  # noqa: E402

BENCH_WORKLOAD = {**WORKLOAD, "write_rate": 20, "read_rate": 40}
# The role before the runbook's decisions moved into Python (139 Ansible tasks per move).
LEGACY_COMMIT = "a6c7cf6"
CASES = [
    ("runbook, prewarm", "warm"),
    ("runbook, no prewarm", "cold"),
    (f"runbook before the engine ({LEGACY_COMMIT}), prewarm", "legacy"),
    ("naive: detach A, attach B, repoint", "naive"),
    ("no move (same window)", "idle"),
]
PHASES = ["preflight", "suspend", "prewarm", "stale", "attach", "catchup", "cutover", "finalize", "verify"]
WAITING = ("prewarm", "catchup")


def legacy_collection(work: Path) -> str | None:
    """This tree's collection with roles/tenant_migration as it was at LEGACY_COMMIT; None without git history."""
    root = work / "legacy" / "ansible_collections" / "neonops" / "storage"
    root.mkdir(parents=True)
    try:
        head = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
        old = subprocess.run(
            ["git", "archive", LEGACY_COMMIT, "roles/tenant_migration"], cwd=REPO, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=io.BytesIO(head)) as tar:
        tar.extractall(root, filter="data")
    subprocess.run(["rm", "-rf", str(root / "roles" / "tenant_migration")], check=True)
    with tarfile.open(fileobj=io.BytesIO(old)) as tar:
        tar.extractall(root, filter="data")
    return f"{work / 'legacy'}:{REPO / '.collections'}"


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=None).timestamp()


def phase_overheads(report: dict) -> dict:
    """Per phase, the wall time from its start to the next phase's start (the Ansible work between phases
    included) minus the time it spent waiting on data; 'preflight' is the run's start to the first phase."""
    phases = report.get("phases") or []
    if not phases or not report.get("started") or not report.get("ended"):
        return {}
    starts = [_epoch(p["start"]) for p in phases] + [_epoch(report["ended"])]
    out = {"preflight": round(starts[0] - _epoch(report["started"]), 3)}
    for i, p in enumerate(phases):
        span = starts[i + 1] - starts[i]
        waited = float(p.get("seconds") or 0) if p["name"] in WAITING else 0.0
        out[p["name"]] = round(out.get(p["name"], 0.0) + span - waited, 3)
    return out


def naive_move(sim, tenant_id: str, source: str, dest: str, compute: str) -> dict:
    """The early flow: no Stale/Multi, no warm-up, no catch-up wait; the compute moves after B is Active."""
    t0 = time.time()
    src, dst = sim.url(source), sim.url(dest)
    loc = requests.get(f"{src}/v1/location_config/{tenant_id}", timeout=30).json()
    requests.put(
        f"{src}/v1/tenant/{tenant_id}/location_config",
        json={"mode": "Detached", "generation": None, "secondary_conf": None, "tenant_conf": {}},
        timeout=30,
    ).raise_for_status()
    gen = requests.post(
        f"{sim.storcon_url}/debug/v1/attach-hook",
        json={"tenant_shard_id": tenant_id, "node_id": sim.entry(dest)["node_id"]},
        timeout=30,
    ).json()["gen"]
    body = {
        "mode": "AttachedSingle",
        "generation": gen,
        "secondary_conf": None,
        "shard_number": 0,
        "shard_count": 0,
        "shard_stripe_size": loc.get("shard_stripe_size", 0),
        "tenant_conf": loc.get("tenant_conf") or {},
    }
    requests.put(f"{dst}/v1/tenant/{tenant_id}/location_config", json=body, timeout=30).raise_for_status()
    while requests.get(f"{dst}/v1/tenant/{tenant_id}", timeout=30).json().get("state", {}).get("slug") != "Active":
        time.sleep(0.2)
    spec_path = Path(sim.entry(compute)["spec_path"])
    spec = json.loads(spec_path.read_text())
    spec = spec.get("spec", spec)
    url = f"postgres://no_user@127.0.0.1:{sim.entry(dest)['pg_port']}"
    spec["pageserver_connection_info"] = {
        "shard_count": 0,
        "stripe_size": None,
        "shards": {"0000": {"pageservers": [{"id": sim.entry(dest)["node_id"], "libpq_url": url}]}},
        "prefer_protocol": "libpq",
    }
    spec.pop("pageserver_connstring", None)
    requests.post(
        f"{sim.url(compute)}/configure",
        json={"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}},
        timeout=120,
    ).raise_for_status()
    return {"total_seconds": round(time.time() - t0, 3), "phases": [], "outcome": "migrated"}


def measure(
    sim, name: str, kind: str, tenant_id: str, compute: str, work: Path, source: str, dest: str, window: float, legacy
) -> dict:
    workload_action(sim, compute, "reset")
    workload_action(sim, compute, "start")
    time.sleep(3)  # some reads before the move
    if kind == "naive":
        report = naive_move(sim, tenant_id, source, dest, compute)
    elif kind == "idle":
        time.sleep(window)
        report = {"total_seconds": round(window, 3), "phases": [], "outcome": "no move"}
    else:
        run = migrate(
            sim,
            tenant_id,
            source,
            dest,
            work / kind,
            tenant_migration_prewarm=(kind != "cold"),
            collections_path=legacy if kind == "legacy" else None,
        )
        if run.rc != 0:
            raise SystemExit(f"{name}: playbook failed\n{run.output[-4000:]}")
        report = run.report
    time.sleep(2)  # let reads issued during the cutover finish
    during = workload(sim, compute)
    verified = workload_action(sim, compute, "verify", timeout_ms=10000)
    lat = during.get("read_latency_ms") or {}
    waiting = report.get("waiting_seconds", 0.0)
    return {
        "case": name,
        "reads_ok": during["reads_ok"],
        "reads_failed": during["reads_failed"],
        "p50": lat.get("p50"),
        "p99": lat.get("p99"),
        "max": lat.get("max"),
        "writes_acked": during["writes_acked"],
        "lost_writes": verified["lost_writes"],
        "total_seconds": report.get("total_seconds"),
        "waiting_seconds": waiting if kind not in ("naive", "idle") else None,
        "overhead_seconds": report.get("overhead_seconds") if kind not in ("naive", "idle") else None,
        "phases": {p["name"]: p.get("seconds") for p in report.get("phases", [])},
        "phase_overheads": phase_overheads(report),
        "bytes_warmed": report.get("bytes_warmed"),
        "failures_by_reason": during.get("failures_by_reason"),
    }


READING = [
    "- Failed reads are the availability measure. The naive flow detaches A before B serves the tenant, so every",
    "  read in between is refused (`http_404`); the runbook keeps A attached (AttachedStale, then Secondary only",
    "  after the compute reads from B), so it should show none. Any failed read in a runbook row is a finding.",
    "- Latency ratios compare the move windows' tails: reads on B right after cutover may wait for WAL or fetch",
    "  layers on demand (less so with prewarm); the no-move window of the same length is their baseline.",
    "- Overhead: each runbook phase is one module invocation (about 0.25 s of Ansible start-up each on this",
    "  machine kind) plus its API round trips; the cutover also starts a module on each compute's host. The",
    "  naive flow is a handful of API calls with no checks at all.",
    "- Absolute times depend on the machine's load (the load average is printed above); compare rows of the same",
    "  run, and rerun on an idle machine before quoting numbers.",
]


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(runs: list[dict]) -> dict:
    """One row per case: medians over the rounds; failed reads and lost writes summed (any is a finding)."""
    phases = sorted({p for r in runs for p in r["phases"]})
    return {
        "case": runs[0]["case"],
        "rounds": len(runs),
        "reads_ok": sum(r["reads_ok"] for r in runs),
        "reads_failed": sum(r["reads_failed"] for r in runs),
        "lost_writes": sum(r["lost_writes"] for r in runs),
        **{k: _median([r[k] for r in runs]) for k in ("p50", "p99", "max", "total_seconds")},
        "waiting_seconds": _median([r["waiting_seconds"] for r in runs]),
        "overhead_seconds": _median([r["overhead_seconds"] for r in runs]),
        "phases": {p: _median([r["phases"].get(p) for r in runs]) for p in phases},
        "phase_overheads": {p: _median([r["phase_overheads"].get(p) for r in runs]) for p in PHASES},
        "failures_by_reason": {
            reason: sum((r["failures_by_reason"] or {}).get(reason, 0) for r in runs)
            for reason in sorted({k for r in runs for k in (r["failures_by_reason"] or {})})
        },
    }


def _ratio(value, baseline) -> str:
    if value is None or not baseline:
        return "-"
    return f"{value / baseline:.2f}"


def _fmt(value) -> str:
    return "-" if value is None else str(value)


def render(rows: list[dict], meta: dict) -> str:
    by_kind = {r["kind"]: r for r in rows}
    intro = (
        "`make bench` (`benchmarks/run.sh`): read availability and orchestration cost while a tenant moves between "
        "two pageservers on one neonsim fleet, as the compute's workload sees it (reads at the latest acknowledged "
        f"LSN through the pageserver the compute points at; {BENCH_WORKLOAD['read_rate']} reads/s, "
        f"{BENCH_WORKLOAD['write_rate']} writes/s; a read waits up to {BENCH_WORKLOAD['read_timeout_ms']} ms for its "
        "LSN, so waits show as latency and only refusals and very long waits as failures). Counters cover each move "
        "window (reset 3 s before the move, read 2 s after it). Lost writes: every acknowledged key read back after "
        "the move. The no-move case runs the same workload for a window as long as that round's prewarm move."
    )
    run = (
        f"Run: {meta['when']}, {meta['machine']}, load average at start {meta['load']}, {meta['rounds']} rounds "
        "(each moves every tenant once, alternating direction; cases interleaved). Latencies and times are medians "
        "over the rounds; reads, failures and lost writes are totals."
    )
    out = [
        "# Benchmarks",
        "",
        textwrap.fill(intro, 112),
        "",
        textwrap.fill(run, 112),
        "",
        "| case | reads ok | failed reads | p50 ms | p99 ms | max ms | lost writes | total s | waiting s "
        "| overhead s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['case']} | {r['reads_ok']} | {r['reads_failed']} | {_fmt(r['p50'])} | {_fmt(r['p99'])} | "
            f"{_fmt(r['max'])} | {r['lost_writes']} | {_fmt(r['total_seconds'])} | {_fmt(r['waiting_seconds'])} | "
            f"{_fmt(r['overhead_seconds'])} |"
        )
    moves = [r for r in rows if r["kind"] in ("warm", "cold", "legacy")]
    idle = by_kind.get("idle")
    if idle:
        out += [
            "",
            "Read latency against no move (same run, same window length): ratio of each case to the no-move window.",
            "",
            "| case | p50 ratio | p99 ratio | max ratio |",
            "|---|---|---|---|",
        ]
        for r in rows:
            if r["kind"] != "idle":
                out.append(
                    f"| {r['case']} | {_ratio(r['p50'], idle['p50'])} | {_ratio(r['p99'], idle['p99'])} | "
                    f"{_ratio(r['max'], idle['max'])} |"
                )
    naive = by_kind.get("naive")
    if naive:
        out += [
            "",
            f"Relative to the naive flow ({naive['case']}), same run:",
            "",
            "| case | failed-read rate | p99 latency | max latency | total time |",
            "|---|---|---|---|---|",
        ]

        def rate(r):
            total = r["reads_ok"] + r["reads_failed"]
            return r["reads_failed"] / total if total else 0.0

        for r in moves:
            out.append(
                f"| {r['case']} | {rate(r):.4f} vs {rate(naive):.4f} | {_ratio(r['p99'], naive['p99'])} | "
                f"{_ratio(r['max'], naive['max'])} | {_ratio(r['total_seconds'], naive['total_seconds'])} |"
            )
    out += [
        "",
        "Orchestration overhead per phase (seconds, medians): from the phase's start to the next phase's start, so the",
        "Ansible work between phases counts, minus the time spent waiting on data (prewarm downloads, catch-up);",
        "preflight is from the run's start to the first phase.",
        "",
        "| case | " + " | ".join(PHASES) + " | total overhead |",
        "|---|" + "---|" * (len(PHASES) + 1),
    ]
    for r in moves:
        cells = " | ".join(_fmt(r["phase_overheads"].get(p)) for p in PHASES)
        out.append(f"| {r['case']} | {cells} | {_fmt(r['overhead_seconds'])} |")
    legacy, warm = by_kind.get("legacy"), by_kind.get("warm")
    if legacy and warm and legacy["overhead_seconds"] and warm["overhead_seconds"]:
        out += [
            "",
            f"Overhead of the prewarm move: {warm['overhead_seconds']} s now against {legacy['overhead_seconds']} s "
            f"before ({_ratio(warm['overhead_seconds'], legacy['overhead_seconds'])}x).",
        ]
    out += ["", "Phase wall times inside each phase (seconds, medians):", ""]
    out.append("| case | " + " | ".join(PHASES[1:]) + " |")
    out.append("|---|" + "---|" * len(PHASES[1:]))
    for r in moves:
        out.append(f"| {r['case']} | " + " | ".join(_fmt(r["phases"].get(p)) for p in PHASES[1:]) + " |")
    out += ["", "Failure reasons seen by the workload (totals):", ""]
    for r in rows:
        out.append(f"- {r['case']}: {json.dumps(r['failures_by_reason'] or {})}")
    out += ["", "## Reading these numbers", "", *READING]
    return "\n".join(out) + "\n"


S3_SECTION = "## S3 tenant copy"


def replace_section(path: Path, moves: str | None, s3copy: str | None) -> str:
    """docs/benchmarks.md: the move tables (with their reading notes), then the S3 copy section last; a part not
    measured in this run is kept as it was."""
    old = path.read_text() if path.exists() else ""
    old_moves, sep, old_s3 = old.partition(S3_SECTION)
    text = (moves if moves is not None else old_moves).rstrip()
    s3 = s3copy if s3copy is not None else (S3_SECTION + old_s3 if sep else "")
    return f"{text}\n\n{s3.strip()}\n" if s3.strip() else f"{text}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("--rounds", type=int, default=3, help="moves per case (alternating direction)")
    parser.add_argument(
        "--only", choices=["all", "moves", "s3copy"], default="all", help="measure only these (the rest is kept)"
    )
    parser.add_argument("--s3-layers", type=int, default=5000, help="small layer files of the S3 copy benchmark")
    args = parser.parse_args()
    output = Path(args.output)
    s3_text = None
    if args.only in ("all", "s3copy"):
        import s3copy

        with tempfile.TemporaryDirectory(prefix="neonops-bench-s3-") as tmp:
            result = s3copy.bench(Path(tmp), layers=args.s3_layers)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        s3_text = s3copy.render(result, when, f"{platform.machine()}, {os.cpu_count()} cores")
        print(s3_text)
        if args.only == "s3copy":
            output.write_text(replace_section(output, None, s3_text))
            return 0
    tenants = [{"name": kind, "pageservers": ["ps1"]} for _, kind in CASES]
    computes = [{"name": f"c-{kind}", "tenant": kind, "workload": BENCH_WORKLOAD} for _, kind in CASES]
    with tempfile.TemporaryDirectory(prefix="neonops-bench-") as tmp:
        work = Path(tmp)
        meta = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "rounds": args.rounds,
        }
        legacy = legacy_collection(work)
        cases = [(name, kind) for name, kind in CASES if kind != "legacy" or legacy]
        sim = start_fleet(topology(tenants, computes), work / "fleet")
        try:
            ids = {t["name"]: t["tenant_id"] for t in sim.fleet["tenants"]}
            for _, kind in cases:
                wait_for_writes(sim, f"c-{kind}")
            runs: dict[str, list[dict]] = {kind: [] for _, kind in cases}
            for n in range(args.rounds):
                source, dest = ("ps1", "ps2") if n % 2 == 0 else ("ps2", "ps1")
                window = 10.0
                for name, kind in cases:
                    result = measure(
                        sim, name, kind, ids[kind], f"c-{kind}", work / str(n), source, dest, window, legacy
                    )
                    if kind == "warm":
                        window = float(result["total_seconds"] or window)
                    runs[kind].append(result)
            rows = [{**summarize(runs[kind]), "kind": kind} for _, kind in cases]
        finally:
            sim.down()
    text = render(rows, meta)
    output.write_text(replace_section(output, text, s3_text))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
