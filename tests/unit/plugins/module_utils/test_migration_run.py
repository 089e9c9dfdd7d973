"""The runbook's executor (module_utils/_migration_run.py) against an in-memory fleet: the order of requests, what
each phase changes, resumes, the lock, failover, rollback and a branch created mid-move."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from ansible_collections.neonops.storage.plugins.module_utils._client import ApiResponse, NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._migration import MigrationError
from ansible_collections.neonops.storage.plugins.module_utils._migration_run import MigrationRun

T = "3aa8fcc61f6d357410b7de754b1d9001"
TL = "de200bd42b49cc1814412c7e592dd6e9"
BRANCH = "3a7c2b6e1d0f4c8a9b5e6d7f8a9b0c1d"
ORIGINAL = {"pitr_interval": "1h"}
SUSPENDED = {"pitr_interval": "1h", "gc_period": "0s", "compaction_period": "0s"}


class Fleet:
    """Two pageservers, a storage controller and one safekeeper, with the semantics the runbook relies on."""

    def __init__(self):
        self.log = []  # (service, method, path, body)
        self.locations = {"ps1": {T: self.loc("AttachedSingle", 1, ORIGINAL)}, "ps2": {}}
        self.timelines = {"ps1": {T: {TL: 0x1000}}, "ps2": {}}
        self.ancestors = {}
        self.generation = {T: (1, 1)}  # latest issued: (generation, node)
        self.policy = "Active"
        self.down = set()
        self.nodes = {1: "Active", 2: "Active"}
        self.commit_lsn = 0x1000
        self.heatmap_late = 0
        self.die_after = {}

    @staticmethod
    def loc(mode, generation=None, conf=None):
        return {
            "mode": mode,
            "generation": generation,
            "secondary_conf": None,
            "shard_number": 0,
            "shard_count": 0,
            "shard_stripe_size": 0,
            "tenant_conf": dict(conf or {}),
        }

    def client(self, url, token, field):
        return FakeClient(self, url.split("//", 1)[1])

    def mutations(self, service=None):
        return [e for e in self.log if e[1] != "GET" and not e[2].endswith("/inspect") and service in (None, e[0])]


class FakeClient:
    timeout = 30.0

    def __init__(self, fleet, service):
        self.fleet, self.service, self.base_url = fleet, service, f"http://{service}"

    def request(self, method, path, params=None, json=None, expected=(200,), timeout=None, **_checks):
        # _checks: returns/check/mutating of the real client's request(), which this fake does not need
        f = self.fleet
        f.log.append((self.service, method, path, json))
        if self.service in f.die_after:  # answers this many more requests, then is gone
            f.die_after[self.service] -= 1
            if f.die_after[self.service] < 0:
                f.down.add(self.service)
        if self.service in f.down:
            raise NeonAPIError(method, self.base_url + path, None, "ConnectionError: refused")
        handler = getattr(self, self.service.rstrip("0123456789"))
        status, data = handler(method, path, json)
        if status not in expected:
            raise NeonAPIError(method, self.base_url + path, status, (data or {}).get("msg", ""), data)
        return ApiResponse(status, data, {})

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    # -- pageservers
    def ps(self, method, path, body):
        f, me = self.fleet, self.service
        locs, tls = f.locations[me], f.timelines[me]
        if path == "/v1/status":
            return 200, {"id": int(me[2:])}
        if path == "/v1/location_config":
            return 200, {"tenant_shards": [[k, v] for k, v in locs.items()]}
        if path == "/v1/utilization":
            return 200, {"free_space_bytes": 10**9}
        m = re.fullmatch(r"/v1/tenant/(\w+)(/.*)?", path)
        tsid, rest = m.group(1), m.group(2) or ""
        attached = (locs.get(tsid) or {}).get("mode", "").startswith("Attached")
        if rest == "/location_config" and method == "PUT":
            if body["mode"] == "Detached":
                locs.pop(tsid, None)
                tls.pop(tsid, None)
            else:
                locs[tsid] = {k: body[k] for k in body}
                if body["mode"].startswith("Attached"):
                    tls.setdefault(tsid, {tl: 0 for tl in f.timelines["ps1"].get(tsid, {TL: 0})})
                    for tl in tls[tsid]:  # catches up at once
                        tls[tsid][tl] = max(tls[tsid][tl], f.commit_lsn)
            return 200, {}
        if not attached and rest != "/secondary/download":
            return 404, {"msg": f"tenant {tsid} not found"}
        if rest == "":
            return 200, {"state": {"slug": "Active"}, "current_physical_size": 1000}
        if rest == "/timeline" and method == "GET":
            return 200, [
                {
                    "timeline_id": tl,
                    "last_record_lsn": f"0/{lsn:X}",
                    "remote_consistent_lsn": f"0/{lsn:X}",
                    "ancestor_timeline_id": f.ancestors.get(tl),
                    "ancestor_lsn": "0/10" if f.ancestors.get(tl) else None,
                }
                for tl, lsn in tls[tsid].items()
            ]
        if rest == "/timeline" and method == "POST":
            tls[tsid][body["new_timeline_id"]] = f.commit_lsn
            return 201, {"timeline_id": body["new_timeline_id"]}
        if rest == "/heatmap_upload":
            return 200, None
        if rest == "/secondary/download":
            if f.heatmap_late:  # the source's upload has not landed yet
                f.heatmap_late -= 1
                return 200, {"heatmap_mtime": None, "layers_downloaded": 0, "layers_total": 0}
            return 200, {"heatmap_mtime": "x", "layers_downloaded": 2, "layers_total": 2, "bytes_downloaded": 10}
        raise AssertionError(f"unexpected {method} {path}")

    # -- storage controller
    def storcon(self, method, path, body):
        f = self.fleet
        if path == f"/control/v1/tenant/{T}" and method == "GET":
            shards = [{"tenant_shard_id": T, "scheduling_policy": f.policy, "node_attached": 1}]
            return 200, {"shards": shards, "config": ORIGINAL}
        if path == f"/control/v1/tenant/{T}/policy":
            f.policy = body["scheduling"]
            return 200, {}
        m = re.fullmatch(r"/control/v1/node/(\d+)", path)
        if m:
            node = int(m.group(1))
            return (200, {"id": node, "scheduling": f.nodes[node]}) if node in f.nodes else (404, {"msg": "no node"})
        if path == "/debug/v1/inspect":
            gen, node = f.generation[body["tenant_shard_id"]]
            return 200, {"attachment": [gen, node]}
        if path == "/debug/v1/attach-hook":
            gen = f.generation[body["tenant_shard_id"]][0] + 1
            f.generation[body["tenant_shard_id"]] = (gen, body["node_id"])
            return 200, {"gen": gen}
        raise AssertionError(f"unexpected {method} {path}")

    # -- safekeeper
    def sk(self, method, path, body):
        return 200, {"commit_lsn": f"0/{self.fleet.commit_lsn:X}"}


SETTINGS = {
    "prewarm": True,
    "download_request_ms": 100,
    "download_timeout": 5.0,
    "download_require_complete": False,
    "compute_cutover": "reconfigure",
    "compute_restart_command": "",
    "source_final_mode": "secondary",
    "flush_ms": 100,
    "attach_timeout": 2.0,
    "catchup_timeout": 2.0,
    "catchup_poll_interval": 0.01,
    "catchup_include_safekeepers": True,
    "remote_lsn_timeout": 2.0,
    "suspend_overrides": {"gc_period": "0s", "compaction_period": "0s"},
    "disk_headroom_ratio": 1.5,
    "refused_scheduling_policies": ["Draining", "Deleting", "PauseForRestart"],
    "rollback": True,
    "failover": True,
    "source_grace": 0.0,
    "missing_timeline_action": "recreate",
    "lock_stale_after": 1800.0,
    "lock_takeover": False,
    "rollback_destination_mode": "detached",
}


@pytest.fixture
def fleet():
    return Fleet()


@pytest.fixture
def params(tmp_path):
    nodes = [
        {"name": f"ps{i}", "node_id": i, "api_url": f"http://ps{i}", "pg_addr": f"ps{i}:6400", "s3_prefix": "p/"}
        for i in (1, 2)
    ]
    counter = iter(range(1000))
    return lambda **kw: {
        "tenant_id": T,
        "run_id": f"run-{next(counter)}",
        "state_dir": str(tmp_path / "state"),
        "report_dir": str(tmp_path / "reports"),
        "source": "ps1",
        "destination": "ps2",
        "shard": "",
        "pageservers": nodes,
        "safekeeper_urls": ["http://sk1"],
        "storcon_url": "http://storcon",
        "computes": [],
        "owner": {"host": "ctl", "pid": os.getpid(), "user": "me"},
        "started_s": None,
        "settings": dict(SETTINGS),
        **kw,
    }


def run_phases(fleet, p, phases, s3_client=None, between=None):
    run = MigrationRun(p, fleet.client, warn=lambda _: None, sleep=lambda _: None, s3_client=s3_client)
    begin = run.begin(check_mode=False)
    for phase in phases:
        MigrationRun(p, fleet.client, warn=lambda _: None, sleep=lambda _: None, s3_client=s3_client).step(phase)
        if between:
            between(phase)
    return begin


def end(fleet, p, outcome="migrated"):
    return MigrationRun(p, fleet.client, warn=lambda _: None).end(outcome, None)


LIVE = ["suspend", "prewarm", "stale", "attach", "catchup", "finalize", "verify"]


def location_puts(fleet):
    return [
        (s, b["mode"], b["generation"], b["tenant_conf"]) for s, m, p, b in fleet.mutations() if "location_config" in p
    ]


def test_a_live_move_in_order_with_gc_and_compaction_suspended_on_both_sides_until_the_end(fleet, params):
    p = params()
    begin = run_phases(fleet, p, LIVE)
    result = end(fleet, p)

    assert begin["path"] == "live" and begin["stages"] == {T: "start"}
    assert location_puts(fleet) == [
        ("ps1", "AttachedSingle", 1, SUSPENDED),  # suspend
        ("ps2", "Secondary", None, SUSPENDED),  # prewarm
        ("ps1", "AttachedStale", 1, SUSPENDED),  # stale
        ("ps2", "AttachedMulti", 2, SUSPENDED),  # attach under a new generation
        ("ps2", "AttachedSingle", 2, ORIGINAL),  # finalize: originals back
        ("ps1", "Secondary", None, ORIGINAL),  # demote
    ]
    # The new generation was issued for the destination's node, which is the node that uses it.
    hooks = [b for s, m, path, b in fleet.mutations("storcon") if path == "/debug/v1/attach-hook"]
    assert hooks == [{"tenant_shard_id": T, "node_id": 2}]
    # The controller is held at Stop for the whole move and given back its policy.
    policies = [b["scheduling"] for s, m, path, b in fleet.mutations("storcon") if path.endswith("/policy")]
    assert policies == ["Stop", "Active"] and fleet.policy == "Active"
    assert result["outcome"] == "migrated"
    report = json.loads(Path(result["report_path"]).read_text())
    assert [ph["name"] for ph in report["phases"]] == [
        "suspend",
        "prewarm",
        "stale",
        "attach",
        "catchup",
        "cutover",
        "finalize",
        "verify",
    ]
    assert report["generations"] == {T: {"before": 1, "after": 2}}
    assert report["storcon_scheduling"] == {"original": "Active", "restored": True}
    assert not os.path.exists(os.path.join(p["state_dir"], f"{T}.lock"))  # a finished move leaves no lock


def test_check_mode_reads_only_takes_no_lock_and_writes_the_plan(fleet, params):
    p = params()
    result = MigrationRun(p, fleet.client, warn=lambda _: None).begin(check_mode=True)
    assert fleet.mutations() == []
    assert not os.path.exists(os.path.join(p["state_dir"], f"{T}.lock"))
    report = json.loads(Path(result["report_path"]).read_text())
    assert report["outcome"] == "planned" and any(line.startswith("attach:") for line in report["plan"])


def test_a_lock_held_by_a_live_run_refuses_and_changes_nothing(fleet, params, tmp_path):
    p = params()
    lock = tmp_path / "state" / f"{T}.lock"
    lock.parent.mkdir()
    held = {"owner": {"host": "ctl", "pid": os.getpid(), "run_id": "other"}, "heartbeat_s": 9e12, "released": False}
    lock.write_text(json.dumps(held))
    with pytest.raises(MigrationError, match="holds"):
        MigrationRun(p, fleet.client, warn=lambda _: None).begin(check_mode=False)
    assert fleet.mutations() == []
    assert json.loads(lock.read_text()) == held


def test_refusals_in_preflight_change_nothing(fleet, params):
    fleet.nodes[2] = "Draining"
    draining = params()
    with pytest.raises(MigrationError, match="Draining"):
        run_phases(fleet, draining, [])
    end(fleet, draining, "failed_preflight")
    fleet.nodes[2] = "Active"
    other_prefix = params()
    other_prefix["pageservers"] = [dict(n) for n in other_prefix["pageservers"]]
    other_prefix["pageservers"][1]["s3_prefix"] = "q/"
    with pytest.raises(MigrationError, match="prefix"):
        run_phases(fleet, other_prefix, [])
    end(fleet, other_prefix, "failed_preflight")
    tight = params()
    tight["settings"]["disk_headroom_ratio"] = 10**7
    with pytest.raises(MigrationError, match="bytes free"):
        run_phases(fleet, tight, [])
    end(fleet, tight, "failed_preflight")
    assert fleet.mutations() == []
    assert not os.path.exists(os.path.join(tight["state_dir"], f"{T}.lock"))


def test_a_rerun_after_a_kill_during_catchup_resumes_without_a_new_generation_and_restores_the_originals(fleet, params):
    first = params(owner={"host": "ctl", "pid": 2**22 + 12345, "user": "me"})  # a pid that does not run
    run_phases(fleet, first, ["suspend", "prewarm", "stale", "attach"])  # then killed: no end step
    fleet.log.clear()

    second = params()
    begin = run_phases(fleet, second, ["attach", "catchup", "finalize", "verify"])
    end(fleet, second)

    assert begin["stages"] == {T: "catchup"}
    assert not [m for m in fleet.mutations("storcon") if m[2] == "/debug/v1/attach-hook"]
    # The originals come from the journal: what the shards carry now is the suspended set.
    assert ("ps2", "AttachedSingle", 2, ORIGINAL) in location_puts(fleet)
    assert fleet.policy == "Active"  # the interrupted run's Stop is undone by the rerun


def test_a_dead_source_fails_over_under_a_generation_for_the_destination(fleet, params):
    fleet.down.add("ps1")
    p = params()
    begin = run_phases(fleet, p, ["failover", "finalize", "verify"])
    end(fleet, p, "failover")

    assert begin["path"] == "failover"
    assert fleet.generation[T] == (2, 2)
    assert location_puts(fleet)[:2] == [("ps2", "AttachedSingle", 2, ORIGINAL), ("ps2", "AttachedSingle", 2, ORIGINAL)]
    assert not [e for e in fleet.mutations() if e[0] == "ps1"]


class RestartingNode:
    """A fake clock whose pauses bring a node back after ``down_for`` seconds (a pageserver restarting)."""

    def __init__(self, fleet, name, down_for):
        self.fleet, self.name, self.now, self.back_at = fleet, name, 1000.0, 1000.0 + down_for
        fleet.down.add(name)

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        if self.now >= self.back_at:
            self.fleet.down.discard(self.name)


def test_a_source_that_answers_again_within_the_grace_is_not_failed_over_from(fleet, params):
    p = params()
    p["settings"]["source_grace"] = 10.0
    restart = RestartingNode(fleet, "ps1", down_for=3.0)
    begin = MigrationRun(p, fleet.client, warn=lambda _: None, sleep=restart.sleep, monotonic=restart.monotonic).begin(
        check_mode=False
    )

    assert begin["path"] == "live"
    assert any("did not answer for 3" in w for w in begin["run_warnings"]), begin["run_warnings"]


def test_a_source_silent_for_longer_than_the_grace_is_failed_over_from(fleet, params):
    late = params()
    late["settings"]["source_grace"] = 10.0
    restart = RestartingNode(fleet, "ps1", down_for=30.0)
    begin = MigrationRun(
        late, fleet.client, warn=lambda _: None, sleep=restart.sleep, monotonic=restart.monotonic
    ).begin(check_mode=False)
    assert begin["path"] == "failover"
    assert restart.now - 1000.0 >= 10.0


def test_a_failure_while_the_source_restarts_rolls_back_to_it_once_it_answers(fleet, params):
    """The source is down when the recovery looks at it and back a few seconds later: a rollback (no cold
    attach on the destination), not a failover."""
    p = params()
    p["settings"]["source_grace"] = 10.0
    run_phases(fleet, p, ["suspend", "prewarm", "stale"])
    restart = RestartingNode(fleet, "ps1", down_for=4.0)
    result = MigrationRun(
        {**p, "error": "x"}, fleet.client, warn=lambda _: None, sleep=restart.sleep, monotonic=restart.monotonic
    ).step("recover")

    assert result["recovery"] == "rollback" and result["outcome"] == "rolled_back"
    assert fleet.locations["ps1"][T]["mode"] == "AttachedSingle"
    assert T not in fleet.locations["ps2"] or fleet.locations["ps2"][T]["mode"] != "AttachedSingle"


def test_a_failure_before_cutover_rolls_back_under_a_new_generation_for_the_source(fleet, params):
    p = params()
    run_phases(fleet, p, ["suspend", "prewarm", "stale", "attach"])
    fleet.commit_lsn = 0x9000  # the safekeepers are far ahead; the destination never gets there
    fleet.timelines["ps2"][T][TL] = 0x10
    fleet.locations["ps2"][T]["mode"] = "AttachedMulti"
    run = MigrationRun(p, fleet.client, warn=lambda _: None, sleep=lambda _: None)
    with pytest.raises(MigrationError, match="catch-up"):
        run.step("catchup")
    # A fresh commit_lsn keeps the destination behind whatever it ingests meanwhile.
    recover = MigrationRun(
        {**p, "error": "catch-up timed out"}, fleet.client, warn=lambda _: None, sleep=lambda _: None
    )
    result = recover.step("recover")

    assert result["recovery"] == "rollback" and result["outcome"] == "rolled_back"
    assert T not in fleet.locations["ps2"]
    assert fleet.generation[T] == (3, 1)
    assert fleet.locations["ps1"][T]["mode"] == "AttachedSingle"
    assert fleet.locations["ps1"][T]["tenant_conf"] == ORIGINAL


def test_a_destination_that_dies_right_before_the_cutover_stops_the_move_where_it_can_roll_back(fleet, params):
    """The destination caught up, then died (after the last catch-up probe): no compute may be sent to it. The
    catch-up step fails before the point of no return, and the recovery rolls back to the source."""
    p = params()
    run_phases(fleet, p, ["suspend", "prewarm", "stale", "attach"])
    run = MigrationRun(p, fleet.client, warn=lambda _: None, sleep=lambda _: None)
    close_gap = run.close_gap

    def close_gap_then_die():
        close_gap()
        fleet.down.add("ps2")

    run.close_gap = close_gap_then_die
    with pytest.raises(MigrationError, match="ps2"):
        run.step("catchup")
    state = json.loads((Path(p["state_dir"]) / f"{p['run_id']}.run.json").read_text())
    assert not state["cutover_started"] and state["failed_phase"] == "catchup"

    result = MigrationRun({**p, "error": "x"}, fleet.client, warn=lambda _: None, sleep=lambda _: None).step("recover")

    assert result["recovery"] == "rollback" and result["outcome"] == "rolled_back"
    assert fleet.locations["ps1"][T]["mode"] == "AttachedSingle"
    assert fleet.generation[T] == (3, 1)  # above the destination's: the dead destination is fenced off


def test_a_policy_the_controller_did_not_take_back_is_given_back_by_a_rerun(fleet, params):
    """The storage controller fails at the end of a finished move: the tenant stays at Stop, the lock keeps the
    journal (released) with the policy from before, and a rerun (the move already done) puts it back."""
    p = params()
    run_phases(fleet, p, LIVE)
    fleet.down.add("storcon")
    result = end(fleet, p)

    assert result["outcome"] == "migrated" and fleet.policy == "Stop"
    assert any("still at scheduling policy Stop" in w for w in result["run_warnings"])
    lock = json.loads((Path(p["state_dir"]) / f"{T}.lock").read_text())
    assert lock["released"] and lock["journal"]["storcon_scheduling"] == "Active"

    fleet.down.discard("storcon")
    rerun = params()
    begin = MigrationRun(rerun, fleet.client, warn=lambda _: None).begin(check_mode=False)
    again = end(fleet, rerun, "already_done")

    assert begin["path"] == "done"
    assert fleet.policy == "Active"
    assert again["outcome"] == "already_done" and not again["run_warnings"]
    assert not (Path(p["state_dir"]) / f"{T}.lock").exists()


def test_a_failure_before_the_attach_rolls_back_in_place_under_the_source_generation(fleet, params):
    """No generation was issued to the destination: the source gets its overrides back in its own generation (an
    in-place change, no re-attach), and nothing asks the storage controller for a new one."""
    p = params()
    run_phases(fleet, p, ["suspend", "prewarm"])
    result = MigrationRun({**p, "error": "x"}, fleet.client, warn=lambda _: None, sleep=lambda _: None).step("recover")

    assert result["recovery"] == "rollback" and result["outcome"] == "rolled_back"
    assert fleet.generation[T] == (1, 1)
    assert not [e for e in fleet.log if e[2].endswith("/attach-hook")]
    assert fleet.locations["ps1"][T] == {**fleet.locations["ps1"][T], "mode": "AttachedSingle", "generation": 1}
    assert fleet.locations["ps1"][T]["tenant_conf"] == ORIGINAL
    assert T not in fleet.locations["ps2"]


def test_a_rollback_before_the_attach_after_a_generation_the_journal_missed_issues_a_new_one(fleet, params):
    """A run killed between the attach-hook for the destination and the journal: the generation authority has moved
    on to ps2's generation 2, the journal knows nothing of it. Rolling back in place under the source's generation 1
    would leave the source attached under a generation the authority no longer validates: a new one is issued."""
    p = params()
    run_phases(fleet, p, ["suspend", "prewarm", "stale"])
    fleet.generation[T] = (2, 2)  # the attach-hook of the killed run
    result = MigrationRun({**p, "error": "x"}, fleet.client, warn=lambda _: None, sleep=lambda _: None).step("recover")

    assert result["recovery"] == "rollback" and result["outcome"] == "rolled_back"
    assert fleet.generation[T] == (3, 1)
    assert fleet.locations["ps1"][T]["mode"] == "AttachedSingle"
    assert fleet.locations["ps1"][T]["generation"] == 3


def test_a_branch_created_on_the_source_after_the_attach_is_recreated_on_the_destination(fleet, params):
    p = params()
    run_phases(fleet, p, ["suspend", "prewarm", "stale", "attach"])
    fleet.timelines["ps1"][T][BRANCH] = 0x1000
    fleet.ancestors[BRANCH] = TL

    run_phases_after = MigrationRun(p, fleet.client, warn=lambda _: None, sleep=lambda _: None)
    run_phases_after.step("catchup")

    created = [b for s, m, path, b in fleet.mutations("ps2") if m == "POST" and path.endswith("/timeline")]
    assert created == [{"new_timeline_id": BRANCH, "ancestor_timeline_id": TL, "ancestor_start_lsn": "0/10"}]
    assert BRANCH in fleet.timelines["ps2"][T]


def test_a_root_timeline_created_mid_move_stops_the_move_before_cutover(fleet, params):
    p = params()
    run_phases(fleet, p, ["suspend", "prewarm", "stale", "attach"])
    fleet.timelines["ps1"][T][BRANCH] = 0x1000  # no ancestor: cannot be recreated from ancestor information
    with pytest.raises(MigrationError, match="root timelines"):
        MigrationRun(p, fleet.client, warn=lambda _: None, sleep=lambda _: None).step("catchup")


def test_prewarm_waits_for_a_heatmap_that_has_not_landed_yet(fleet, params):
    fleet.heatmap_late = 3
    p = params()
    run_phases(fleet, p, ["suspend", "prewarm"])
    downloads = [e for e in fleet.log if e[2].endswith("/secondary/download")]
    assert len(downloads) == 4


def test_a_source_that_dies_during_the_rollback_is_failed_over_instead(fleet, params):
    p = params()
    run_phases(fleet, p, ["suspend", "prewarm", "stale", "attach"])
    fleet.commit_lsn = 0x9000
    fleet.timelines["ps2"][T][TL] = 0x10
    with pytest.raises(MigrationError, match="catch-up"):
        MigrationRun(p, fleet.client, warn=lambda _: None, sleep=lambda _: None).step("catchup")
    fleet.die_after["ps1"] = 2  # answers the recovery's check (status, locations), then dies

    result = MigrationRun({**p, "error": "x"}, fleet.client, warn=lambda _: None, sleep=lambda _: None).step("recover")

    assert result["recovery"] == "failover" and result["outcome"] == "failover"
    assert fleet.generation[T][1] == 2  # the latest generation is the destination's
    assert fleet.locations["ps2"][T]["mode"] == "AttachedSingle"
    assert fleet.locations["ps2"][T]["tenant_conf"] == ORIGINAL


# ---- across S3 locations: the copy phase (moto) -------------------------------------------------------------------

LIVE_ACROSS = ["suspend", "stale", "copy", "prewarm", "attach", "catchup", "copy", "finalize", "verify"]


class RecordingS3:
    """The engine's S3 client, recording every call (method, key) and failing copies on request."""

    def __init__(self, inner, fail_copies_after=None):
        self.inner, self.calls, self.fail_copies_after = inner, [], fail_copies_after

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args, **kwargs):
            key = kwargs.get("Key") or kwargs.get("Prefix") or (args[2] if name == "copy" else None)
            done = sum(1 for n, _k in self.calls if n in ("copy_object", "copy"))
            if (
                name in ("copy_object", "copy")
                and self.fail_copies_after is not None
                and done >= self.fail_copies_after
            ):
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "CopyObject")
            self.calls.append((name, key))
            return method(*args, **kwargs)

        return call

    def copies(self):
        return [k for n, k in self.calls if n in ("copy_object", "copy")]

    def mutating(self):
        return [(n, k) for n, k in self.calls if not n.startswith(("list_", "head_", "get_"))]


@pytest.fixture
def across(moto_url, make_bucket, s3, params):
    """ps1 keeps tenants under src/, ps2 under dst/ in the same bucket; ps1's prefix holds the tenant."""
    from ansible_collections.neonops.storage.plugins.module_utils._migration_run import default_s3_client
    from ansible_collections.neonops.storage.tests.unit.plugins.conftest import write_timeline

    bucket = make_bucket()
    keys = write_timeline(s3, bucket, "src", T, TL, [1], layers=6)
    settings = {"endpoint_url": moto_url, "region": "us-east-1", "access_key": "AKIDTEST", "secret_key": "s3cr3t-k3y"}

    def make(**kw):
        p = params(s3=dict(settings), **kw)
        p["pageservers"] = [
            {**n, "s3_bucket": bucket, "s3_prefix": "src/" if n["name"] == "ps1" else "dst/"} for n in p["pageservers"]
        ]
        return p

    class Across:
        pass

    a = Across()
    a.bucket, a.keys, a.params, a.s3 = bucket, keys, make, s3
    a.client = lambda fail_copies_after=None: RecordingS3(
        default_s3_client(settings), fail_copies_after=fail_copies_after
    )
    a.listing = lambda prefix: {
        o["Key"][len(prefix) :]: o["ETag"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    }
    return a


def test_a_move_across_prefixes_copies_after_stale_before_attach_and_the_delta_before_cutover(fleet, across):
    from ansible_collections.neonops.storage.tests.unit.plugins.conftest import write_timeline

    p = across.params()
    client = across.client()
    seen = {}

    def between(phase):
        if phase in seen:  # the second copy: the delta
            seen["delta"], seen["source_at_delta"] = across.listing("dst/"), across.listing("src/")
        seen.setdefault(phase, across.listing("dst/"))
        if phase == "attach":
            # The stale source goes on uploading: new layers and its index_part rewritten, same generation.
            write_timeline(across.s3, across.bucket, "src", T, TL, [1], layers=8)

    begin = run_phases(fleet, p, LIVE_ACROSS, s3_client=lambda _s: client, between=between)
    result = end(fleet, p)

    assert begin["s3_copy"]["source"] == {"bucket": across.bucket, "prefix": "src"}
    assert begin["s3_copy"]["estimate"]["to_copy"]["objects"] == len(across.keys)
    # Nothing at the destination before the source went stale; everything before the destination attached.
    assert seen["stale"] == {}
    assert set(seen["copy"]) == {k[len("src/") :] for k in across.keys}
    # Before the computes moved, the destination held the source's newest index_part and every layer, byte for byte.
    assert seen["delta"] == seen["source_at_delta"]
    report = json.loads(Path(result["report_path"]).read_text())
    passes = report["s3_copy"]["passes"]
    assert [x["pass"] for x in passes] == ["initial", "delta"]
    assert passes[0]["copied"]["objects"] == len(across.keys)
    assert passes[1]["copied"]["objects"] == 3  # two new layers and the rewritten index_part; not the heatmap
    assert [ph["name"] for ph in report["phases"]] == [
        "suspend",
        "stale",
        "copy",
        "prewarm",
        "attach",
        "catchup",
        "copy",
        "cutover",
        "finalize",
        "verify",
    ]
    assert not [e for e in fleet.log if e[2].endswith("/heatmap_upload")]  # the stale source's heatmap was copied
    assert result["outcome"] == "migrated"
    for path in [*Path(p["state_dir"]).glob("*"), *Path(p["report_dir"]).glob("*")]:
        assert "s3cr3t-k3y" not in path.read_text() and "AKIDTEST" not in path.read_text(), path


def test_the_copy_refuses_while_the_source_is_not_stale(fleet, across):
    p = across.params()
    client = across.client()
    run_phases(fleet, p, ["suspend"], s3_client=lambda _s: client)
    with pytest.raises(MigrationError, match="mode other than AttachedStale"):
        MigrationRun(p, fleet.client, warn=lambda _: None, s3_client=lambda _s: client).step("copy")
    assert client.mutating() == []


def test_a_rerun_after_a_copy_killed_midway_copies_only_the_rest(fleet, across):
    first = across.params(owner={"host": "ctl", "pid": 2**22 + 12345, "user": "me"})
    broken = across.client(fail_copies_after=4)
    run_phases(fleet, first, ["suspend", "stale"], s3_client=lambda _s: broken)
    with pytest.raises(MigrationError, match="AccessDenied"):
        MigrationRun(first, fleet.client, warn=lambda _: None, s3_client=lambda _s: broken).step("copy")
    assert len(broken.copies()) == 4

    second = across.params()
    client = across.client()
    begin = run_phases(fleet, second, ["copy", "prewarm", "attach", "catchup", "copy"], s3_client=lambda _s: client)

    assert begin["stages"] == {T: "attach"}
    copies = broken.copies() + client.copies()
    assert len(copies) == len(set(copies)) == len(across.keys)  # every object once, none twice
    assert across.listing("dst/") == across.listing("src/")


def test_check_mode_reports_the_copy_with_reads_only(fleet, across):
    p = across.params()
    client = across.client()
    result = MigrationRun(p, fleet.client, warn=lambda _: None, s3_client=lambda _s: client).begin(check_mode=True)
    assert client.mutating() == [] and fleet.mutations() == []
    assert across.listing("dst/") == {}
    assert result["s3_copy"]["estimate"]["to_copy"]["objects"] == len(across.keys)
    assert any(line.startswith("copy: would copy dst/tenants/") for line in result["plan"])


def test_a_source_location_without_the_tenant_is_refused_before_any_change(fleet, across):
    p = across.params()
    p["pageservers"][0]["s3_prefix"] = "nothing-here/"
    client = across.client()
    with pytest.raises(MigrationError, match="holds no object of the tenant.*neon_s3_prefix of ps1"):
        run_phases(fleet, p, [], s3_client=lambda _s: client)
    end(fleet, p, "failed_preflight")
    assert fleet.mutations() == [] and client.mutating() == []


def test_unreachable_s3_is_refused_before_any_change(fleet, across):
    from botocore.exceptions import EndpointConnectionError

    class Unreachable:
        def __getattr__(self, name):
            def call(*args, **kwargs):
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

            return call

    p = across.params()
    with pytest.raises(MigrationError, match="reading S3 failed: Could not connect to the endpoint URL"):
        run_phases(fleet, p, [], s3_client=lambda _s: Unreachable())
    end(fleet, p, "failed_preflight")
    assert fleet.mutations() == []
