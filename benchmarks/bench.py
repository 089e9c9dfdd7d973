"""Read availability during a tenant move, as the compute's workload sees it.

One neonsim fleet, three tenants on ps1 (each with a compute running a read-heavy workload). Each is moved to
ps2 a different way: (a) the runbook with prewarm, (b) the runbook without prewarm, (c) the early naive flow
(detach A, attach B under a new generation, wait until Active, repoint the compute). For each move: failed
reads and p50/p99/max read latency over the move window, lost writes afterwards, and for the runbook its phase
times and orchestration overhead (total minus time spent waiting on downloads and catch-up).
Writes the table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from migration_harness import WORKLOAD, migrate, topology, wait_for_writes, workload, workload_action  # noqa: E402

from neonsim.fleet import start_fleet  # noqa: E402

BENCH_WORKLOAD = {**WORKLOAD, "write_rate": 20, "read_rate": 40}
CASES = [
    ("runbook, prewarm", "warm"),
    ("runbook, no prewarm", "cold"),
    ("naive: detach A, attach B, repoint", "naive"),
]


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


def measure(sim, name: str, kind: str, tenant_id: str, compute: str, work: Path) -> dict:
    workload_action(sim, compute, "reset")
    workload_action(sim, compute, "start")
    time.sleep(3)  # some reads before the move
    if kind == "naive":
        report = naive_move(sim, tenant_id, "ps1", "ps2", compute)
    else:
        run = migrate(sim, tenant_id, "ps1", "ps2", work / kind, tenant_migration_prewarm=(kind == "warm"))
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
        "waiting_seconds": waiting if kind != "naive" else None,
        "overhead_seconds": report.get("overhead_seconds") if kind != "naive" else None,
        "phases": {p["name"]: p.get("seconds") for p in report.get("phases", [])},
        "bytes_warmed": report.get("bytes_warmed"),
        "failures_by_reason": during.get("failures_by_reason"),
    }


def render(rows: list[dict], meta: dict) -> str:
    out = [
        "# Benchmarks",
        "",
        "`make bench` (`benchmarks/run.sh`): read availability while a tenant moves from ps1 to ps2 on one neonsim",
        "fleet, as the compute's workload sees it (reads at the latest acknowledged LSN through the pageserver",
        f"the compute points at; {BENCH_WORKLOAD['read_rate']} reads/s, {BENCH_WORKLOAD['write_rate']} writes/s).",
        "Counters cover the move window (reset 3 s before the move, read 2 s after it). Lost writes: every",
        "acknowledged key read back after the move.",
        "",
        f"Run: {meta['when']}, {meta['machine']}, load average at start {meta['load']}.",
        "",
        "| case | reads ok | failed reads | p50 ms | p99 ms | max ms | lost writes | total s | waiting s "
        "| overhead s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        waiting = "-" if r["waiting_seconds"] is None else r["waiting_seconds"]
        overhead = "-" if r["overhead_seconds"] is None else r["overhead_seconds"]
        out.append(
            f"| {r['case']} | {r['reads_ok']} | {r['reads_failed']} | {r['p50']} | {r['p99']} | {r['max']} | "
            f"{r['lost_writes']} | {r['total_seconds']} | {waiting} | {overhead} |"
        )
    out += ["", "Phase wall times (seconds):", ""]
    phases = ["suspend", "prewarm", "stale", "attach", "catchup", "cutover", "finalize", "verify"]
    out.append("| case | " + " | ".join(phases) + " |")
    out.append("|---|" + "---|" * len(phases))
    for r in rows:
        if r["phases"]:
            out.append(f"| {r['case']} | " + " | ".join(str(r["phases"].get(p, "-")) for p in phases) + " |")
    out += [
        "",
        "Waiting = prewarm + catch-up phases (downloads and WAL catch-up); overhead = total - waiting: Ansible task",
        "startup, API round trips, the verification waits. Failure reasons seen by the workload:",
        "",
    ]
    for r in rows:
        out.append(f"- {r['case']}: {json.dumps(r['failures_by_reason'] or {})}")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    tenants = [{"name": kind, "pageservers": ["ps1"]} for _, kind in CASES]
    computes = [{"name": f"c-{kind}", "tenant": kind, "workload": BENCH_WORKLOAD} for _, kind in CASES]
    with tempfile.TemporaryDirectory(prefix="neonops-bench-") as tmp:
        work = Path(tmp)
        meta = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        }
        sim = start_fleet(topology(tenants, computes), work / "fleet")
        try:
            ids = {t["name"]: t["tenant_id"] for t in sim.fleet["tenants"]}
            for _, kind in CASES:
                wait_for_writes(sim, f"c-{kind}")
            rows = [measure(sim, name, kind, ids[kind], f"c-{kind}", work) for name, kind in CASES]
        finally:
            sim.down()
    text = render(rows, meta)
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
