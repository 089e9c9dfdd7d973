"""End to end across S3 locations: ps3 keeps its tenants under another prefix_in_bucket, so a move from ps1 copies
the tenant's remote data into ps3's prefix (after ps1 went stale, before ps3 attaches, and the delta before the
computes move). Under a live workload nothing is lost, ps3 serves from its own copy after a restart, check mode
sends no mutating request to the fleet or to S3, and a copy killed midway (with S3 faults) resumes without copying
anything twice."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from migration_harness import (
    Background,
    ansible_env,
    compute_switched_at,
    locations,
    migrate,
    mutating_requests,
    plain_tenants,
    storcon_scheduling,
    tenant_id,
    timelines,
    topology,
    unavailable_reads,
    verdict,
    wait_for_writes_then_pause,
    workload,
)

from neonsim._reqlog import read_request_log
from neonsim.checker import run_check

pytestmark = pytest.mark.neonsim

OTHER = "other"  # ps3's prefix_in_bucket; ps1 and ps2 keep the default pageserver/


@pytest.fixture(scope="module")
def fleet(neonsim_fleet_module):
    tenants, computes = plain_tenants("across", "planned", "killed")
    sim = neonsim_fleet_module(topology(tenants, computes, prefixes={"ps3": f"{OTHER}/"}))
    wait_for_writes_then_pause(sim)
    return sim


def bucket_keys(fleet, prefix: str) -> dict:
    """{key: etag} straight from moto (not through the fault proxy)."""
    out = {}
    pages = fleet.moto_s3().get_paginator("list_objects_v2").paginate(Bucket=fleet.fleet["s3"]["bucket"], Prefix=prefix)
    for page in pages:
        out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return out


def s3_requests(fleet, since: float, path_prefix: str) -> list[dict]:
    log = read_request_log(fleet.dir / "s3proxy" / "requests.jsonl")
    bucket = fleet.fleet["s3"]["bucket"]
    return [r for r in log if r["ts"] >= since and r["path"].startswith(f"/{bucket}/{path_prefix}")]


def written(fleet, since: float, path_prefix: str) -> list[str]:
    """Keys written (PUT, answered 200: CopyObject or an upload) under a path, once per write."""
    return [r["path"] for r in s3_requests(fleet, since, path_prefix) if r["method"] == "PUT" and r["status"] == 200]


def test_a_move_to_another_prefix_copies_the_tenant_and_loses_nothing(fleet, report_dir):
    tid = tenant_id(fleet, "across")
    tl = next(iter(timelines(fleet, "ps1", tid)))
    timelines_before = set(timelines(fleet, "ps1", tid))
    started = time.time()
    # Hold ps3's catch-up (its timeline listing) while ps1, stale, uploads a new layer and its index_part.
    fleet.fault("ps3", routes=r"^/v1/tenant/[^/]+/timeline$", freeze=True)
    try:
        run = Background(fleet, tid, "ps1", "ps3", report_dir)
        run.wait_phase("catchup")
        before = bucket_keys(fleet, f"pageserver/tenants/{tid}/")
        time.sleep(1.0)  # some writes to flush
        flushed = requests.put(f"{fleet.url('ps1')}/v1/tenant/{tid}/timeline/{tl}/checkpoint", timeout=60)
        assert flushed.status_code == 200, flushed.text
        after = bucket_keys(fleet, f"pageserver/tenants/{tid}/")
    finally:
        fleet.clear_fault("ps3")
    result = run.wait()

    assert result.rc == 0, result
    uploaded_while_stale = sorted(k for k in after if before.get(k) != after[k])
    assert any("index_part" in k for k in uploaded_while_stale), (before, after)
    during = workload(fleet, "c-across")
    assert during["reads_failed"] == 0 and not unavailable_reads(during), during
    assert during["writes_acked"] > 0
    assert locations(fleet, "ps3")[tid]["mode"] == "AttachedSingle"
    assert locations(fleet, "ps1")[tid]["mode"] == "Secondary"
    assert set(timelines(fleet, "ps3", tid)) == timelines_before
    # What ps1 uploaded while stale was in ps3's prefix before the compute read from ps3 (the delta pass).
    switched_at = compute_switched_at(fleet, "c-across", "ps3", since=started)
    bucket = fleet.fleet["s3"]["bucket"]
    copied_at = {}
    for r in s3_requests(fleet, started, f"{OTHER}/tenants/{tid}"):
        if r["method"] == "PUT" and r["status"] == 200:
            copied_at.setdefault(r["path"][len(f"/{bucket}/") :], []).append(r["ts"])
    for key in uploaded_while_stale:
        ours = OTHER + key[len("pageserver") :]
        assert any(ts < switched_at for ts in copied_at.get(ours, [])), (key, copied_at.get(ours), switched_at)
    copy = result.report["s3_copy"]
    assert copy["needed"] and copy["destination"]["prefix"] == OTHER, copy
    assert [p["pass"] for p in copy["passes"]] == ["initial", "delta"], copy
    assert copy["passes"][0]["copied"]["objects"] > 0, copy
    # ps3 keeps its own index_part, under the generation issued for it, in its own prefix.
    generation = result.report["generations"][tid]["after"]
    ours = bucket_keys(fleet, f"{OTHER}/tenants/{tid}/")
    assert any(k.endswith(f"index_part.json-{generation:08x}") for k in ours), sorted(ours)
    assert storcon_scheduling(fleet, tid) == {"Active"}
    # Every layer any newest index_part references exists, in both prefixes, and every acknowledged write is there.
    check = run_check(fleet.dir)
    assert check["ok"], {k: check[k] for k in ("lost_layers", "lost_keys")}

    # ps3 restarts and serves the tenant from its own prefix: every acknowledged write reads back through it.
    ingested = {t: v["last_record_lsn"] for t, v in timelines(fleet, "ps3", tid).items()}
    fleet.kill("ps3")
    fleet.start("ps3")
    wait_ingested(fleet, "ps3", tid, ingested)
    outcome = verdict(fleet, "c-across")
    verified = outcome["verified"]
    assert verified["lost_writes"] == 0, (verified["lost_writes"], verified["lost_write_samples"][:5])
    assert locations(fleet, "ps3")[tid]["mode"] == "AttachedSingle"


def test_after_the_move_releasing_the_old_prefix_removes_only_the_old_copy(fleet, tmp_path):
    """The operation's last step (docs/runbooks/release-s3-prefix.md) after the move above: the tenant's old copy
    under pageserver/ is released, with other/ (ps3's) as the consolidated prefix. Refused while ps1 keeps the
    tenant as a Secondary (it reads the old prefix); once ps1 let go, the tombstone takes exactly the tenant's keys
    under pageserver/ to the trash, and nothing else in the bucket goes."""
    tid = tenant_id(fleet, "across")
    assert locations(fleet, "ps3")[tid]["mode"] == "AttachedSingle", "the move above did not complete"
    old_tree = f"pageserver/tenants/{tid}/"

    def release() -> tuple[int, str]:
        variables = {
            "release_s3_prefix_prefix": "pageserver/",
            "release_s3_prefix_consolidated_prefix": OTHER,
            "release_s3_prefix_tenant_id": tid,
        }
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(fleet.inventory_path)]
            + ["neonops.storage.release_s3_prefix", "-e", json.dumps(variables)],
            env=ansible_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr

    before = bucket_keys(fleet, "")
    old_copy = {k: v for k, v in before.items() if k.startswith(old_tree)}
    assert old_copy and locations(fleet, "ps1")[tid]["mode"] == "Secondary"

    rc, out = release()
    assert rc != 0 and "still_located" in out, out[-3000:]
    assert {k: v for k, v in bucket_keys(fleet, old_tree).items()} == old_copy

    detached = requests.put(
        f"{fleet.url('ps1')}/v1/tenant/{tid}/location_config",
        json={
            "mode": "Detached",
            "generation": None,
            "secondary_conf": None,
            "shard_number": 0,
            "shard_count": 0,
            "shard_stripe_size": 2048,
            "tenant_conf": {},
        },
        timeout=60,
    )
    assert detached.status_code == 200, detached.text
    rc, out = release()
    assert rc == 0, out[-3000:]

    after = bucket_keys(fleet, "")
    assert not [k for k in after if k.startswith(old_tree)], "the old copy is still there"
    assert all(after.get(f"neonops-trash/{k}") == etag for k, etag in old_copy.items()), "a tombstone is missing"
    # Nothing else went (ps3's own compaction may replace layers of its copy: that tree is its business).
    gone = {k for k in before if k not in after and not k.startswith(f"{OTHER}/tenants/{tid}")}
    assert gone == set(old_copy), sorted(gone - set(old_copy))[:10]
    # The tenant is whole where ps3 reads it.
    check = run_check(fleet.dir)
    assert check["ok"], {k: check[k] for k in ("lost_layers", "lost_keys")}


def wait_ingested(fleet, pageserver: str, tid: str, lsns: dict, timeout: float = 180) -> None:
    """Until the restarted pageserver serves the tenant again and has ingested what it had before the restart."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            now = timelines(fleet, pageserver, tid)
            last = {t: v["last_record_lsn"] for t, v in now.items()}
            if all(t in now and lsn_int(now[t]["last_record_lsn"]) >= lsn_int(lsn) for t, lsn in lsns.items()):
                return
        except (requests.RequestException, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{pageserver} did not get back to {lsns} after its restart: {last}")


def lsn_int(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def test_check_mode_prints_the_copy_plan_and_sends_no_mutating_request(fleet, report_dir):
    tid = tenant_id(fleet, "planned")
    started = time.time()

    run = migrate(fleet, tid, "ps1", "ps3", report_dir, check=True)

    assert run.rc == 0, run
    assert run.report["outcome"] == "planned"
    assert [r for r in mutating_requests(fleet, since_ts=started) if not r["path"].startswith("/upcall/")] == []
    s3 = s3_requests(fleet, started, f"{OTHER}/tenants/{tid}")
    assert [r for r in s3 if r["mutating"]] == [], s3
    assert not bucket_keys(fleet, f"{OTHER}/tenants/{tid}")
    plan = "\n".join(run.report["plan"])
    assert f"copy: s3://{fleet.fleet['s3']['bucket']}/pageserver/tenants/{tid}* -> " in plan, plan
    assert re.search(r"copy: now \d+ objects \(\d+ bytes\) at the source; \d+ objects", plan), plan
    assert f"copy: would copy {OTHER}/tenants/{tid}/" in plan, plan
    assert "copy (delta):" in plan
    assert f"copy: would copy {OTHER}/tenants/{tid}/" in run.output


def test_a_copy_killed_midway_under_s3_faults_resumes_and_copies_nothing_twice(fleet, report_dir):
    tid = tenant_id(fleet, "killed")
    bucket = fleet.fleet["s3"]["bucket"]
    started = time.time()
    # Slow, failing copies into ps3's prefix (the pageservers' own uploads elsewhere are left alone).
    fleet.fault("s3proxy", routes=f"^PUT /{bucket}/{OTHER}/tenants/{tid}", latency_ms=400, error_rate=0.2)
    try:
        first = Background(fleet, tid, "ps1", "ps3", report_dir, tenant_migration_s3_concurrency=2)
        first.wait_phase("copy")
        deadline = time.time() + 300
        while time.time() < deadline:
            if len(written(fleet, started, f"{OTHER}/tenants/{tid}")) >= 3:
                break
            time.sleep(0.2)
        first.kill()
        copied_first = set(written(fleet, started, f"{OTHER}/tenants/{tid}"))
        assert copied_first, "nothing copied before the kill"
        assert locations(fleet, "ps1")[tid]["mode"] == "AttachedStale"
        # The rerun meets the same errors and dropped connections.
        fleet.fault("s3proxy", routes=f"^PUT /{bucket}/{OTHER}/tenants/{tid}", error_rate=0.2, drop_rate=0.1)
        run = migrate(fleet, tid, "ps1", "ps3", report_dir)
    finally:
        fleet.clear_fault("s3proxy")

    assert run.rc == 0, run
    assert run.report["resumed_from"] == {tid: "attach"}, run.report
    initial = run.report["s3_copy"]["passes"][0]
    assert initial["pass"] == "initial"
    assert initial["rounds"][0]["identical"]["objects"] >= len(copied_first), initial
    # Layers never change: each one the copy wrote into ps3's prefix was written once across both runs (ps3's
    # own uploads carry its new generation; index_part and heatmap files are rewritten by design).
    generation = run.report["generations"][tid]["after"]
    puts = written(fleet, started, f"{OTHER}/tenants/{tid}")
    copied_layers = [
        p for p in puts if "index_part" not in p and "heatmap" not in p and not p.endswith(f"-{generation:08x}")
    ]
    assert copied_layers and len(copied_layers) == len(set(copied_layers)), sorted(copied_layers)
    result = verdict(fleet, "c-killed")
    assert result["during"]["reads_failed"] == 0, result["during"]
    assert result["verified"]["lost_writes"] == 0, result["verified"]
    check = run_check(fleet.dir)
    assert check["ok"], {k: check[k] for k in ("lost_layers", "lost_keys")}
