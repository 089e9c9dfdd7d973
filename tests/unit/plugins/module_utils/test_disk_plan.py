"""The provision planner: which tenants leave a full pageserver, and the report of every disk before and after."""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _disk_plan as plan
from ansible_collections.neonops.storage.plugins.module_utils._disk_plan import PlanRefused

GIB = 1024**3
A, B, C, D = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
SIZES = {A: 30 * GIB, B: 20 * GIB, C: 20 * GIB, D: 15 * GIB}


def node(name, used_gib, capacity_gib, **extra):
    return {"name": name, "used_bytes": used_gib * GIB, "capacity_bytes": capacity_gib * GIB, **extra}


SOURCE = node("ps3", 85, 100)
DESTINATION = node("ps4", 0, 200)


def test_disk_usage_is_used_plus_free():
    usage = plan.disk_usage({"disk_usage_bytes": 85, "free_space_bytes": 15})
    assert usage == {"used_bytes": 85, "free_bytes": 15, "capacity_bytes": 100, "pct": 85.0}


@pytest.mark.parametrize("body", [{}, {"disk_usage_bytes": -1, "free_space_bytes": 1}, {"disk_usage_bytes": True}])
def test_disk_usage_refuses_a_body_without_sizes(body):
    with pytest.raises(ValueError, match="ps9: disk_usage_bytes"):
        plan.disk_usage(body, "ps9")


def test_fullest_by_percentage_then_name():
    disk = {"ps1": {"pct": 40.0}, "ps3": {"pct": 85.0}, "ps2": {"pct": 85.0}}
    assert plan.fullest(disk) == "ps2"


def test_tenant_sizes_sum_a_tenants_shards():
    shards = {f"{A}-0002": 5, f"{A}-0102": 7, B: 3, C: None}
    assert plan.tenant_sizes(shards) == {A: 12, B: 3, C: 0}


def test_largest_tenants_until_the_target():
    result = plan.plan_moves(SOURCE, DESTINATION, SIZES, target_pct=50)
    assert [m["tenant_id"] for m in result["moves"]] == [A, B]  # B and C tie: the tenant id decides
    assert result["projected"] == {"source_pct": 35.0, "destination_pct": 25.0}
    assert result["moves"][0]["source_pct_after"] == 55.0
    assert result["mode"] == "largest" and result["moved_bytes"] == 50 * GIB


def test_nothing_moves_when_already_under_the_target():
    result = plan.plan_moves(node("ps3", 40, 100), DESTINATION, SIZES, target_pct=50)
    assert result["moves"] == []
    assert (
        "nothing to move"
        in plan.plan_lines({"ps3": {**node("ps3", 40, 100), "pct": 40.0}, "ps4": {**DESTINATION, "pct": 0.0}}, result)[
            -1
        ]
    )


def test_refuses_a_target_that_max_tenants_cannot_reach():
    with pytest.raises(PlanRefused, match=r"target_pct: moving the 1 largest tenant\(s\) of ps3 .* 55.0 % full"):
        plan.plan_moves(SOURCE, DESTINATION, SIZES, target_pct=50, max_tenants=1)


def test_refuses_to_overfill_the_destination():
    with pytest.raises(PlanRefused, match="destination_max_pct: ps4 would be 95.0 % full"):
        plan.plan_moves(SOURCE, node("ps4", 45, 100), SIZES, target_pct=50, destination_max_pct=80)


def test_refuses_the_same_node_and_other_remote_storage():
    with pytest.raises(PlanRefused, match="destination: ps3 is also the source"):
        plan.plan_moves(SOURCE, SOURCE, SIZES)
    with pytest.raises(PlanRefused, match="destination: ps4 has s3_prefix 'other/'"):
        plan.plan_moves({**SOURCE, "s3_prefix": "pageserver/"}, {**DESTINATION, "s3_prefix": "other/"}, SIZES)
    # A trailing slash is the same prefix.
    plan.plan_moves({**SOURCE, "s3_prefix": "pageserver/"}, {**DESTINATION, "s3_prefix": "pageserver"}, SIZES)


def test_an_explicit_list_moves_exactly_those_in_order():
    result = plan.plan_moves(SOURCE, DESTINATION, SIZES, tenants=[D.upper(), B])
    assert [m["tenant_id"] for m in result["moves"]] == [D, B]
    assert result["mode"] == "list" and result["projected"]["source_pct"] == 50.0


@pytest.mark.parametrize(
    ("tenants", "words"),
    [
        (["e" * 32], r"tenants\[0\]: tenant eeee"),
        ([A, A], r"tenants\[1\]: tenant aaaa.* listed twice"),
        (["not-a-tenant"], r"tenants\[0\]: invalid tenant id"),
    ],
)
def test_an_explicit_list_refuses_what_is_not_on_the_source(tenants, words):
    with pytest.raises(ValueError, match=words):
        plan.plan_moves(SOURCE, DESTINATION, SIZES, tenants=tenants)


@pytest.mark.parametrize(
    ("field", "value"), [("target_pct", 0), ("target_pct", 100), ("max_tenants", 0), ("destination_max_pct", 101)]
)
def test_refuses_out_of_range_settings(field, value):
    with pytest.raises(PlanRefused, match=field):
        plan.plan_moves(SOURCE, DESTINATION, SIZES, **{field: value})


def test_report_shows_each_node_before_and_after():
    before = {
        "ps3": {"node_id": 3, **plan.disk_usage({"disk_usage_bytes": 85 * GIB, "free_space_bytes": 15 * GIB})},
        "ps4": {"node_id": 4, **plan.disk_usage({"disk_usage_bytes": 0, "free_space_bytes": 200 * GIB})},
    }
    after = {
        "ps3": {"node_id": 3, **plan.disk_usage({"disk_usage_bytes": 35 * GIB, "free_space_bytes": 65 * GIB})},
        "ps4": {"node_id": 4, **plan.disk_usage({"disk_usage_bytes": 50 * GIB, "free_space_bytes": 150 * GIB})},
    }
    moves = [{"tenant_id": A, "size_bytes": 30 * GIB, "outcome": "migrated", "report": "r.json"}]
    report = plan.build_report("run-1", before, after, None, moves, {"name": "ps4", "node_id": 4})
    assert report["outcome"] == "moved"
    assert [(n["name"], n["before"]["pct"], n["after"]["pct"]) for n in report["nodes"]] == [
        ("ps3", 85.0, 35.0),
        ("ps4", 0.0, 25.0),
    ]
    assert report["nodes"][0]["delta_bytes"] == -50 * GIB
    markdown = plan.render_markdown(report)
    assert "| ps3 | 85.0 % (85.0 GiB of 100.0 GiB) | 35.0 % (35.0 GiB of 100.0 GiB) | -50.0 GiB |" in markdown
    failed = plan.build_report("run-2", before, after, None, [{**moves[0], "outcome": "rolled_back"}], {})
    assert failed["outcome"] == "failed"


def test_a_failed_move_and_the_moves_after_it_are_in_the_report():
    disk = {"ps3": {"node_id": 3, **plan.disk_usage({"disk_usage_bytes": 85 * GIB, "free_space_bytes": 15 * GIB})}}
    planned = {"moves": [{"tenant_id": t, "size_bytes": GIB} for t in (A, B, C)]}
    done = [{"tenant_id": A, "size_bytes": GIB, "outcome": "migrated", "report": "a.json"}]
    failure = {"error": "catch-up timed out", "outcome": "rolled_back", "report": "b.json"}
    report = plan.build_report("run-3", disk, disk, planned, done, {}, failure)
    assert report["outcome"] == "failed"
    assert [(m["tenant_id"], m["outcome"], m.get("report")) for m in report["moves"]] == [
        (A, "migrated", "a.json"),
        (B, "rolled_back", "b.json"),
        (C, "not_started", ""),
    ]
    assert report["moves"][1]["error"] == "catch-up timed out"
    assert "| rolled_back | b.json |" in plan.render_markdown(report)
    # A failure before the move's own report (its end step left the previous move's result behind): no outcome of
    # the previous move is taken for it.
    stale = {"error": "the role's arguments", "outcome": "migrated", "report": "a.json"}
    report = plan.build_report("run-4", disk, disk, planned, done, {}, stale)
    assert [(m["outcome"], m.get("report")) for m in report["moves"][1:]] == [("failed", ""), ("not_started", "")]
    # A failure with every planned move recorded (or none planned) still fails the run.
    assert plan.build_report("run-5", disk, disk, None, [], {}, failure)["outcome"] == "failed"


DF = "    1B-blocks        Avail\n   1000000000   900000000\n"


def test_headroom_is_the_lower_of_the_two_eviction_thresholds():
    by_pct = plan.data_volume_headroom(DF, "/storage", 80, 1000)
    assert by_pct == {
        "mount": "/storage",
        "size_bytes": 1_000_000_000,
        "max_usage_pct": 80,
        "min_avail_bytes": 1000,
        "usable_bytes": 800_000_000,
        "usable_pct": 80.0,
    }
    assert plan.data_volume_headroom(DF, "/storage", 95, 100_000_000)["usable_bytes"] == 900_000_000
    # A volume smaller than min_avail_bytes keeps nothing usable.
    assert plan.data_volume_headroom(DF, "/storage", 80, 2_000_000_000)["usable_bytes"] == 0


def test_headroom_changes_only_with_the_volume_or_the_thresholds():
    busier = "    1B-blocks        Avail\n   1000000000   10\n"
    assert plan.data_volume_headroom(busier, "/s", 80, 1) == plan.data_volume_headroom(DF, "/s", 80, 1)
    grown = "    1B-blocks        Avail\n   2000000000   900000000\n"
    assert plan.data_volume_headroom(grown, "/s", 80, 1)["usable_bytes"] == 1_600_000_000


@pytest.mark.parametrize(
    ("df", "max_pct", "min_avail", "message"),
    [
        ("", 80, 1, "cannot read the file system size"),
        ("1B-blocks Avail\n- -\n", 80, 1, "cannot read the file system size"),
        (DF, 0, 1, "pageserver_disk_max_usage_pct: expected 1..100, got 0"),
        (DF, 101, 1, "pageserver_disk_max_usage_pct: expected 1..100, got 101"),
        (DF, True, 1, "pageserver_disk_max_usage_pct: expected a non-negative integer"),
        (DF, 80, -1, "pageserver_disk_min_avail_bytes: expected a non-negative integer, got -1"),
    ],
)
def test_headroom_refuses_what_it_cannot_read(df, max_pct, min_avail, message):
    with pytest.raises(ValueError, match=message):
        plan.data_volume_headroom(df, "/s", max_pct, min_avail)
