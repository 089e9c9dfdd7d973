"""The tenant-migration runbook's decisions (module_utils/_migration.py), on the states that are hard to reach end
to end: a resume at every stage, sharded tenants, a dead source, a branch created mid-move, a compute already
switched, a lock held by someone else."""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _migration as m
from ansible_collections.neonops.storage.plugins.module_utils._migration import MigrationError

T = "3aa8fcc61f6d357410b7de754b1d9001"
OTHER = "1f359dd625e519a1a4e8d7509690f6fc"
SUSPEND = {"gc_period": "0s", "compaction_period": "0s"}


def loc(mode, generation=None, conf=None, stripe=0):
    return {"mode": mode, "generation": generation, "tenant_conf": conf or {}, "shard_stripe_size": stripe}


# ---- parameters ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), ("", ""), ("0004", "0004"), ("0304", "0304"), (f"{T}-0104", "0104"), ("0A10", "0a10")],
)
def test_shard_filter_forms(value, expected):
    assert m.normalize_shard_filter(T, value) == expected


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("0401", "shard_number"),  # shard 4 of a count of 1
        ("0100", "unsharded"),  # shard 1 of an unsharded tenant
        ("04", "expected NNCC"),
        ("0004\n", "expected NNCC"),
        ("zz04", "expected NNCC"),
        (f"{OTHER}-0004", "another tenant"),
    ],
)
def test_shard_filter_refuses_bad_shards_naming_the_field(value, needle):
    with pytest.raises(MigrationError, match="shard: ") as exc:
        m.normalize_shard_filter(T, value)
    assert needle in str(exc.value)


NODES = [
    {
        "name": "ps1",
        "node_id": 1,
        "api_url": "http://a",
        "pg_addr": "a:1",
        "s3_bucket": "neon-b",
        "s3_prefix": "pageserver/",
    },
    {
        "name": "ps2",
        "node_id": 2,
        "api_url": "http://b",
        "pg_addr": "b:1",
        "s3_bucket": "neon-b",
        "s3_prefix": "pageserver",
    },
    {
        "name": "ps3",
        "node_id": 3,
        "api_url": "http://c",
        "pg_addr": "c:1",
        "s3_bucket": "neon-b",
        "s3_prefix": "other/",
    },
]


def test_nodes_resolve_by_name_then_by_node_id():
    assert m.resolve_node(NODES, "ps2", "source")["node_id"] == 2
    assert m.resolve_node(NODES, 3, "source")["name"] == "ps3"
    assert m.resolve_node(NODES, "1", "source")["name"] == "ps1"


@pytest.mark.parametrize("wanted", ["ps9", "9", "", None])
def test_unknown_node_names_the_field_and_the_candidates(wanted):
    with pytest.raises(MigrationError, match="destination: ") as exc:
        m.resolve_node(NODES, wanted, "destination")
    if wanted:
        assert "ps1 (node 1)" in str(exc.value)


S3 = {"copy": True, "region": "us-east-1", "endpoint_url": None}


def test_same_remote_storage_needs_no_copy_whatever_the_slashes():
    assert m.remote_copy(NODES[0], NODES[1], S3) is None
    assert m.remote_copy(NODES[0], NODES[1], {"copy": False}) is None  # nothing to copy, nothing to refuse


def test_another_prefix_or_bucket_is_copied_from_the_source_location_to_the_destination_location():
    assert m.remote_copy(NODES[0], NODES[2], S3) == {
        "source": {"bucket": "neon-b", "prefix": "pageserver"},
        "destination": {"bucket": "neon-b", "prefix": "other"},
    }
    other_bucket = {**NODES[1], "s3_bucket": "elsewhere"}
    assert m.remote_copy(NODES[0], other_bucket, {"endpoint_url": "http://moto"}) == {
        "source": {"bucket": "neon-b", "prefix": "pageserver"},
        "destination": {"bucket": "elsewhere", "prefix": "pageserver"},
    }


@pytest.mark.parametrize(
    ("destination", "s3", "needle"),
    [
        ({"s3_prefix": "other/"}, {"copy": False}, "tenant_migration_s3_copy is false"),
        ({"s3_prefix": "other/"}, {"copy": True}, "no S3 access is configured"),
        ({"s3_prefix": ""}, S3, "neon_s3_prefix of ps3: invalid prefix ''"),
        ({"s3_prefix": "ot her"}, S3, "neon_s3_prefix of ps3: invalid prefix 'ot her'"),
        ({"s3_prefix": "a/../b"}, S3, "neon_s3_prefix of ps3"),
        ({"s3_bucket": None, "s3_prefix": "other"}, S3, "neon_s3_bucket of ps3: invalid bucket name ''"),
        ({"s3_prefix": "pageserver/tenants/x"}, S3, "inside the tenant tree"),
    ],
)
def test_a_copy_that_cannot_be_done_is_refused_naming_both_locations_and_the_reason(destination, s3, needle):
    with pytest.raises(MigrationError) as exc:
        m.remote_copy(NODES[0], {**NODES[2], **destination}, s3)
    text = str(exc.value)
    assert needle in text, text
    assert text.startswith("ps1 stores tenants in bucket 'neon-b' under prefix 'pageserver', ps3 in bucket"), text


def test_copy_pass_is_initial_until_the_destination_attached():
    assert m.copy_pass({T: "start"}, False) == "initial"
    assert m.copy_pass({T: "attach"}, False) == "initial"
    assert m.copy_pass({T: "start"}, True) == "delta"  # attached in this run
    assert m.copy_pass({T: "catchup"}, False) == "delta"  # a rerun that finds it attached
    assert m.copy_pass({T + "-0002": "catchup", T + "-0102": "attach"}, False) == "initial"


def test_copy_selection_keeps_the_tenant_and_leaves_heatmaps_that_are_not_the_movers_own():
    root = "ps/tenants"
    layer = f"{'0' * 36}-{'F' * 36}__{1:016X}-{2:016X}"
    keys = [
        f"{root}/{T}-0002/timelines/{'a' * 32}/index_part.json-00000003",
        f"{root}/{T}-0002/heatmap-v1.json",
        f"{root}/{T}-0102/heatmap-v1.json",
        f"{root}/{T}/timelines/{'a' * 32}/{layer}-00000001",  # a layer from before the split
        f"{root}/{OTHER}/heatmap-v1.json",
        "ps/other/thing",
    ]
    moving = [f"{T}-0002"]
    assert m.copy_selection(keys, "ps", T, moving, "initial") == sorted(keys[:2] + keys[3:4])
    # delta: the destination is attached and uploads its own heatmap
    assert m.copy_selection(keys, "ps", T, moving, "delta") == sorted([keys[0], keys[3]])


def test_a_copy_round_is_done_only_when_nothing_changed_under_it():
    assert m.copy_round_verdict({"mismatched": [], "missing_layers": []}) == "done"
    assert m.copy_round_verdict({"source_changed": True}) == "again"
    assert m.copy_round_verdict({"mismatched": ["k"], "missing_layers": []}) == "again"
    assert m.copy_round_verdict({"mismatched": [], "missing_layers": [{"layer_key": "l"}]}) == "again"


# ---- lock -------------------------------------------------------------------------------------------------------

ME = {"host": "ctl", "pid": 10, "run_id": "r-new"}


def holder(**kw):
    base = {"owner": {"host": "ctl", "pid": 42, "run_id": "r-old"}, "heartbeat_s": 1000.0, "released": False}
    base.update(kw)
    return base


def test_lock_free_without_a_holder_or_when_released():
    assert m.lock_verdict({}, ME, 1000, None, 1800, False)[0]
    assert m.lock_verdict(holder(released=True), ME, 1000, True, 1800, False)[0]


def test_lock_held_by_a_live_process_with_a_fresh_heartbeat_refuses():
    free, reason = m.lock_verdict(holder(phase="attach"), ME, 1010, True, 1800, False)
    assert not free
    assert "attach" in reason and "r-old" in reason


def test_lock_of_a_dead_process_on_this_host_is_free():
    free, reason = m.lock_verdict(holder(), ME, 1010, False, 1800, False)
    assert free and "gone" in reason


def test_dead_pid_on_another_host_says_nothing_until_the_heartbeat_is_stale():
    other_host = holder(owner={"host": "elsewhere", "pid": 42, "run_id": "r-old"})
    assert not m.lock_verdict(other_host, ME, 1010, None, 1800, False)[0]
    assert m.lock_verdict(other_host, ME, 1000 + 1801, None, 1800, False)[0]


def test_takeover_on_request():
    assert m.lock_verdict(holder(), ME, 1010, True, 1800, True) == (True, "taken over on request")


# ---- discovery: stages at every point a run can stop ------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst", "stage"),
    [
        ("AttachedSingle", "absent", "start"),
        ("AttachedMulti", "absent", "start"),
        ("AttachedSingle", "Secondary", "start"),  # killed during prewarm
        ("AttachedStale", "Secondary", "attach"),  # killed after stale
        ("AttachedStale", "absent", "attach"),
        ("AttachedStale", "AttachedMulti", "catchup"),  # killed during catch-up or cutover
        ("unreachable", "AttachedMulti", "catchup"),
        ("AttachedStale", "AttachedSingle", "finalize"),  # killed between the two finalize PUTs
        ("Secondary", "AttachedSingle", "done"),
        ("absent", "AttachedSingle", "done"),
        ("unreachable", "AttachedSingle", "done"),
        ("unreachable", "absent", "attach"),  # failover: the controller says the dead source held it
        ("unreachable", "Secondary", "attach"),
        ("absent", "absent", "lost"),
        ("Secondary", "Secondary", "lost"),
    ],
)
def test_stage_from_both_modes(src, dst, stage):
    assert m.shard_stage(src, dst) == stage


def test_a_resumed_run_keeps_the_originals_from_the_journal_not_the_suspended_config_it_sees_now():
    suspended = {"gc_period": "0s", "compaction_period": "0s", "pitr_interval": "1h"}
    journal = {
        "orig_conf": {"pitr_interval": "1h"},
        "orig_generation": 4,
        "orig_mode": "AttachedSingle",
        "stripe_size": 0,
    }
    shard = m.describe_shard(T, loc("AttachedStale", 4, suspended), None, True, journal, SUSPEND)
    assert shard["orig_conf"] == {"pitr_interval": "1h"}
    assert shard["suspended_conf"] == suspended
    assert shard["orig_generation"] == 4 and shard["stage"] == "attach"


def test_first_run_takes_the_originals_from_the_attached_source():
    shard = m.describe_shard(T, loc("AttachedMulti", 7, {"pitr_interval": "2h"}), None, True, {}, SUSPEND)
    assert shard["orig_conf"] == {"pitr_interval": "2h"}
    assert shard["orig_mode"] == "AttachedMulti" and shard["orig_generation"] == 7
    assert shard["suspended_conf"] == {"pitr_interval": "2h", **SUSPEND}


def test_a_dead_source_leaves_the_destination_config_and_journal_stripe():
    shard = m.describe_shard(f"{T}-0104", None, None, False, {"stripe_size": 2048}, SUSPEND)
    assert shard["src_mode"] == "unreachable" and shard["dst_mode"] == "absent"
    assert (shard["shard_number"], shard["shard_count"], shard["stripe_size"]) == (1, 4, 2048)


def test_sharded_tenant_collects_every_shard_and_honours_the_filter():
    src = {f"{T}-0002": loc("AttachedSingle"), OTHER: loc("AttachedSingle"), f"{OTHER}-0002": loc("AttachedSingle")}
    dst = {f"{T}-0102": loc("AttachedMulti")}
    assert m.collect_shard_ids(T, "", src, dst) == [f"{T}-0002", f"{T}-0102"]
    assert m.collect_shard_ids(T, "0102", src, dst) == [f"{T}-0102"]
    # With the source dead, the controller's list of shards attached there is all there is.
    assert m.collect_shard_ids(T, "", {}, {}, [f"{T}-0002"]) == [f"{T}-0002"]


def test_path():
    done = {"stage": "done"}
    assert m.migration_path([done, done], True) == "done"
    assert m.migration_path([done, {"stage": "catchup"}], True) == "live"
    assert m.migration_path([{"stage": "catchup"}], False) == "failover"
    assert m.migration_path([done], False) == "done"


def test_journal_of_another_move_is_ignored():
    journal = {"source": "ps1", "destination": "ps2", "baseline": {"x": 1}}
    assert m.journal_for(journal, "ps1", "ps2") == journal
    assert m.journal_for(journal, "ps2", "ps1") == {}  # the way back


def test_stop_found_now_is_restored_to_the_policy_recorded_before():
    assert m.storcon_policy_to_restore("Stop", "Active") == "Active"
    assert m.storcon_policy_to_restore("Stop", "") == "Stop"  # an operator's own Stop stays
    assert m.storcon_policy_to_restore("Pause", "Active") == "Pause"


def test_generations_seen_on_a_resume_come_from_the_destination():
    shards = [
        {"tsid": "a", "dst_mode": "AttachedMulti", "dst_generation": 9, "orig_generation": 8},
        {"tsid": "b", "dst_mode": "Secondary", "dst_generation": None, "orig_generation": 8},
    ]
    assert m.generations_seen({"b": {"before": 8, "after": 5}}, shards) == {
        "a": {"before": 8, "after": 9},
        "b": {"before": 8, "after": 5},
    }


# ---- preflight ------------------------------------------------------------------------------------------------


def test_headroom():
    assert m.headroom_refusal(1500, 1000, 1.5, "ps2") is None
    assert "1000 bytes x 1.5 = 1500" in m.headroom_refusal(1499, 1000, 1.5, "ps2")
    assert "unknown" in m.headroom_refusal(None, 0, 1.5, "ps2")


def test_scheduling_refusal():
    refused = ["Draining", "Deleting", "PauseForRestart"]
    assert m.scheduling_refusal(None, refused, "ps2") is None  # not known to the controller
    assert m.scheduling_refusal({"id": 2, "scheduling": "Active"}, refused, "ps2") is None
    assert "Draining" in m.scheduling_refusal({"id": 2, "scheduling": "Draining"}, refused, "ps2")


# ---- catch-up and branches ----------------------------------------------------------------------------------


def test_targets_take_the_higher_of_the_source_baseline_and_the_safekeepers():
    targets = m.catchup_targets(["a", "b"], ["t1", "t2"], {"a": {"t1": 100, "t2": 50}}, {"t1": 90, "t2": 70})
    assert targets == {"a": {"t1": 100, "t2": 70}, "b": {"t1": 90, "t2": 70}}


def test_lagging_counts_missing_timelines_as_behind():
    assert m.lagging({"t1": 100, "t2": 10}, {"t1": 100}) == {"t2": 11}
    assert m.lagging({"t1": 100}, {"t1": 101}) == {}


def test_a_branch_created_on_the_source_mid_move_is_found_per_shard_and_parents_come_first():
    src = {
        "a-0002": [
            {"timeline_id": "main"},
            {"timeline_id": "b1", "ancestor_timeline_id": "main", "ancestor_lsn": "0/10"},
        ],
        "a-0102": [
            {"timeline_id": "main"},
            {"timeline_id": "b2", "ancestor_timeline_id": "b1", "ancestor_lsn": "0/20"},
            {"timeline_id": "b1", "ancestor_timeline_id": "main", "ancestor_lsn": "0/10"},
        ],
    }
    dst = {"a-0002": [{"timeline_id": "main"}], "a-0102": [{"timeline_id": "main"}]}
    missing = m.missing_timelines(src, dst, {"a-0002": 0, "a-0102": 1})
    assert [(x["tsid"], x["timeline_id"]) for x in missing] == [("a-0002", "b1"), ("a-0102", "b1"), ("a-0102", "b2")]
    order = m.creation_order(list(reversed(missing)))
    shard1 = [x["timeline_id"] for x in order if x["tsid"] == "a-0102"]
    assert shard1 == ["b1", "b2"]


# ---- computes ------------------------------------------------------------------------------------------------

DST = {"node_id": 2, "libpq_url": "postgres://no_user@b:1"}


def test_every_shard_moving_points_every_shard_at_the_destination():
    plan, switch = m.compute_pageservers("postgres://no_user@a:1", 0, [0], DST, {"a:1": 1})
    assert plan == [DST] and switch


def test_a_compute_already_switched_needs_nothing():
    plan, switch = m.compute_pageservers("postgres://no_user@b:1", 0, [0], DST, {})
    assert plan == [DST] and not switch


def test_moving_one_shard_keeps_the_others_where_they_are():
    current = "postgres://no_user@a:1,postgres://no_user@c:1"
    plan, switch = m.compute_pageservers(current, 2, [1], DST, {"a:1": 1, "c:1": 3})
    assert plan == [{"node_id": 1, "libpq_url": "postgres://no_user@a:1"}, DST] and switch


def test_compute_on_destination_checks_every_moved_shard():
    assert m.compute_on_destination("postgres://no_user@b:1", [0], DST["libpq_url"])
    assert not m.compute_on_destination("postgres://no_user@a:1,postgres://no_user@b:1", [0, 1], DST["libpq_url"])
    assert not m.compute_on_destination("", [0], DST["libpq_url"])


def test_tenant_computes():
    computes = [{"name": "c1", "tenant_id": T.upper()}, {"name": "c2", "tenant_id": OTHER}, {"name": "c3"}]
    assert [c["name"] for c in m.tenant_computes(computes, T)] == ["c1"]


# ---- recovery ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutated", "cutover", "phase", "source", "expected"),
    [
        (False, False, "preflight", True, "none"),
        (True, False, "attach", True, "rollback"),
        (True, False, "catchup", True, "rollback"),
        (True, False, "catchup", False, "failover"),  # the source died mid-move
        (True, True, "catchup", True, "forward"),  # a compute may read from the destination
        (True, False, "cutover", True, "forward"),
        (True, False, "finalize", False, "forward"),
        (True, False, "verify", True, "forward"),
        (True, False, "failover", False, "forward"),
    ],
)
def test_recovery(mutated, cutover, phase, source, expected):
    assert m.recovery_decision(mutated, cutover, phase, source, True, True) == expected


def test_recovery_honours_rollback_and_failover_off():
    assert m.recovery_decision(True, False, "attach", True, False, True) == "none"
    assert m.recovery_decision(True, False, "attach", False, True, False) == "none"


@pytest.mark.parametrize(
    ("issued", "src_loc", "inspected", "keeps"),
    [
        # Nothing issued to the destination yet, the authority names the source's generation: kept (in place).
        (False, loc("AttachedSingle", 5), {"generation": 5, "node_id": 1}, True),
        (False, loc("AttachedStale", 5), {"generation": 5, "node_id": 1}, True),
        # A generation was issued during the move (journal), or one the journal missed (killed run): a new one.
        (True, loc("AttachedStale", 5), {"generation": 5, "node_id": 1}, False),
        (False, loc("AttachedStale", 5), {"generation": 6, "node_id": 2}, False),
        (False, loc("AttachedStale", 5), {"generation": 5, "node_id": 2}, False),
        # The source holds nothing attached (or nothing the authority knows of): a new one.
        (False, loc("Secondary"), {"generation": 5, "node_id": 1}, False),
        (False, None, {"generation": 5, "node_id": 1}, False),
        (False, loc("AttachedSingle", 5), {"generation": None, "node_id": None}, False),
    ],
)
def test_a_rollback_keeps_the_source_generation_only_while_no_other_was_issued(issued, src_loc, inspected, keeps):
    assert m.rollback_keeps_generation(issued, src_loc, inspected, 1) is keeps


# ---- plan and report -----------------------------------------------------------------------------------------

OPTIONS = {
    "prewarm": True,
    "download_request_ms": 20000,
    "download_timeout": 300,
    "flush_ms": 10000,
    "catchup_include_safekeepers": True,
    "catchup_timeout": 600,
    "compute_cutover": "reconfigure",
    "source_final_mode": "secondary",
}


def state(path, shards, src_reachable=True):
    return {
        "tenant_id": T,
        "source": {**NODES[0]},
        "destination": {**NODES[1]},
        "storcon": {"url": "http://sc"},
        "shards": shards,
        "computes": [{"name": "c1", "api_url": "http://c1", "spec_path": "/s"}],
        "physical_size": 10,
        "free_bytes": 100,
        "path": path,
        "storcon_known": True,
        "storcon_scheduling": "Active",
        "src_reachable": src_reachable,
    }


def shard(stage, tsid=T):
    s = m.describe_shard(tsid, loc("AttachedSingle", 1), None, True, {}, SUSPEND)
    s["stage"] = stage
    return s


def test_plan_of_a_fresh_move_lists_every_phase_in_order():
    lines = m.plan_lines(state("live", [shard("start")]), OPTIONS)
    kinds = [line.split(":", 1)[0] for line in lines]
    order = ["controller", "path", "suspend", "prewarm", "stale", "attach", "catchup", "timelines", "cutover"]
    assert [k for k in kinds if k in order] == order
    assert kinds[-1] == "verify"
    assert any("scheduling=Stop" in line for line in lines)


def test_plan_of_a_move_across_locations_copies_after_stale_and_prewarms_from_the_copy():
    st = state("live", [shard("start")])
    st["copy"] = {
        "source": {"bucket": "neon-b", "prefix": "pageserver"},
        "destination": {"bucket": "neon-b", "prefix": "other"},
        "estimate": {
            "source": {"objects": 30, "bytes": 3000},
            "to_copy": {"objects": 25, "bytes": 2500},
            "identical": {"objects": 5, "bytes": 500},
            "would_copy": [f"other/tenants/{T}/k{i}" for i in range(25)],
        },
    }
    lines = m.plan_lines(st, OPTIONS)
    kinds = [line.split(":", 1)[0] for line in lines]
    order = ["suspend", "stale", "copy", "prewarm", "attach", "catchup", "timelines", "copy (delta)", "cutover"]
    firsts = []
    for k in kinds:
        if k in order and (not firsts or firsts[-1] != k):
            firsts.append(k)
    assert firsts == order
    text = "\n".join(lines)
    assert "25 objects (2500 bytes) to copy, 5 already at the destination" in text
    assert f"copy: would copy other/tenants/{T}/k19" in text and "... and 5 more objects" in text
    assert "heatmap_upload" not in text  # the source is stale by then; its heatmap came with the copy


def test_plan_of_a_resume_at_catchup_skips_what_is_done():
    lines = m.plan_lines(state("live", [shard("catchup")]), OPTIONS)
    assert not any(line.startswith(("suspend:", "prewarm:", "stale:", "attach:")) for line in lines)
    assert any(line.startswith("catchup:") for line in lines)
    assert "resuming at stages catchup" in " ".join(lines)


def test_plan_of_a_failover_and_of_nothing_to_do():
    failover = m.plan_lines(state("failover", [shard("start")], src_reachable=False), OPTIONS)
    assert any(line.startswith("failover:") for line in failover)
    assert any("skipped: source unreachable" in line for line in failover)
    done = m.plan_lines(state("done", [shard("done")]), OPTIONS)
    assert any("nothing to move" in line for line in done)
    assert not any(line.startswith(("finalize:", "controller:")) for line in done)


def test_figures_count_prewarm_and_catchup_as_waiting():
    phases = [{"name": "suspend", "seconds": 1}, {"name": "prewarm", "seconds": 4}, {"name": "catchup", "seconds": 2}]
    assert m.figures(phases, 100.0, 110.0) == {"total_seconds": 10.0, "waiting_seconds": 6.0, "overhead_seconds": 4.0}


def test_lsn_texts():
    assert m.lsn_texts({"a": {"t": 0x100000010}}) == {"a": {"t": "1/10"}}


def test_a_url_that_answers_as_another_node_is_refused():
    assert m.identity_refusal(NODES[0], 1, "source") is None
    assert m.identity_refusal(NODES[0], None, "source") is None  # unreachable: decided elsewhere
    assert "answers as node 7" in m.identity_refusal(NODES[0], 7, "source")
