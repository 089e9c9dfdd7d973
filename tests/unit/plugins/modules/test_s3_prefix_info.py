from __future__ import annotations

from ansible_collections.neonops.storage.plugins.modules import s3_prefix_info
from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID, TIMELINE_ID, TIMELINE_ID_2
from ansible_collections.neonops.storage.tests.unit.plugins.conftest import aws_args, write_timeline

OTHER_TENANT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def _fill(s3, bucket):
    """Tenant TENANT_ID unsharded (two timelines), OTHER_TENANT in two shards; plus another prefix's tenant."""
    write_timeline(s3, bucket, "ps", TENANT_ID, TIMELINE_ID, [1, 3], layers=3)
    write_timeline(s3, bucket, "ps", TENANT_ID, TIMELINE_ID_2, [2], layers=1)
    write_timeline(s3, bucket, "ps", f"{OTHER_TENANT}-0002", TIMELINE_ID, [4, 7], layers=2, shard="0002")
    write_timeline(s3, bucket, "ps", f"{OTHER_TENANT}-0102", TIMELINE_ID, [6], layers=4, shard="0102")
    write_timeline(s3, bucket, "elsewhere", TENANT_ID, TIMELINE_ID, [9], layers=1)


def test_lists_two_tenants_one_sharded(s3, make_bucket, moto_url, run_module):
    bucket = make_bucket()
    _fill(s3, bucket)
    run = run_module(s3_prefix_info, {**aws_args(moto_url), "bucket": bucket, "prefix_in_bucket": "ps/"})
    assert not run.failed and not run.changed, run.result
    assert run["prefix_in_bucket"] == "ps"
    tenants = {t["tenant_id"]: t for t in run["tenants"]}
    assert sorted(tenants) == sorted([TENANT_ID, OTHER_TENANT])
    [unsharded] = tenants[TENANT_ID]["shards"]
    assert unsharded["tenant_shard_id"] == TENANT_ID and unsharded["shard_count"] == 0
    assert unsharded["newest_generation"] == 3 and unsharded["heatmap"]
    # 3 + 1 layers, 2 + 1 index_parts, one heatmap (the second timeline's write replaced it)
    assert unsharded["objects"] == 8 and unsharded["layers"] == 4
    assert {t["timeline_id"]: t["newest_generation"] for t in unsharded["timelines"]} == {
        TIMELINE_ID: 3,
        TIMELINE_ID_2: 2,
    }
    shards = tenants[OTHER_TENANT]["shards"]
    assert [(s["tenant_shard_id"], s["newest_generation"], s["objects"]) for s in shards] == [
        (f"{OTHER_TENANT}-0002", 7, 2 + 2 + 1),
        (f"{OTHER_TENANT}-0102", 6, 4 + 1 + 1),
    ]
    assert run["objects"] == 8 + 5 + 6
    assert run["bytes"] == sum(t["bytes"] for t in run["tenants"])
    assert run["unrecognized"] == {"objects": 0, "bytes": 0}


def test_one_tenant(s3, make_bucket, moto_url, run_module):
    bucket = make_bucket()
    _fill(s3, bucket)
    run = run_module(
        s3_prefix_info,
        {**aws_args(moto_url), "bucket": bucket, "prefix_in_bucket": "ps", "tenant_id": OTHER_TENANT.upper()},
        check_mode=True,
    )
    assert not run.failed, run.result
    assert [t["tenant_id"] for t in run["tenants"]] == [OTHER_TENANT]
    assert len(run["tenants"][0]["shards"]) == 2


def test_hostile_prefix_refused_before_any_request(moto_url, aws_env, run_module):
    # the bucket does not even exist: a request would fail with another message
    for prefix in ("", "/", "..", "a/../b", "ps ", "p\u0455"):
        run = run_module(s3_prefix_info, {**aws_args(moto_url), "bucket": "no-such-bucket", "prefix_in_bucket": prefix})
        assert run.failed and run["msg"].startswith("prefix_in_bucket: "), (prefix, run["msg"])
    run = run_module(
        s3_prefix_info,
        {**aws_args(moto_url), "bucket": "no-such-bucket", "prefix_in_bucket": "ps", "tenant_id": f"{TENANT_ID}/.."},
    )
    assert run.failed and run["msg"].startswith("tenant_id: ")


def test_missing_bucket_is_an_aws_error(moto_url, aws_env, run_module):
    run = run_module(s3_prefix_info, {**aws_args(moto_url), "bucket": "no-such-bucket", "prefix_in_bucket": "ps"})
    assert run.failed and "list s3://no-such-bucket/ps/tenants/" in run["msg"]


def test_which_pageservers_use_the_prefix_and_hold_its_tenants(s3, make_bucket, moto_url, run_module, fake_api_factory):
    bucket = make_bucket()
    _fill(s3, bucket)
    ps1, ps2 = fake_api_factory(), fake_api_factory()
    ps1.add(
        "GET",
        "/v1/location_config",
        {"tenant_shards": [[f"{OTHER_TENANT}-0002", {"mode": "Secondary"}], ["f" * 32, {"mode": "AttachedSingle"}]]},
    )
    ps2.add("GET", "/v1/location_config", {"tenant_shards": [[TENANT_ID, {"mode": "AttachedSingle"}]]})
    pageservers = [
        {"name": "ps1", "api_url": ps1.url, "prefix_in_bucket": "ps/"},
        {"name": "ps2", "api_url": ps2.url, "prefix_in_bucket": "elsewhere"},
        {"name": "ps3", "api_url": ps2.url, "prefix_in_bucket": "ps", "bucket": "another-bucket"},
        {"name": "ps4", "prefix_in_bucket": ""},
    ]
    args = {**aws_args(moto_url), "bucket": bucket, "prefix_in_bucket": "ps", "pageservers": pageservers}
    run = run_module(s3_prefix_info, args)
    assert not run.failed, run.result
    assert run["used_by"] == ["ps1"]
    assert [p["uses_prefix"] for p in run["pageservers"]] == [True, False, False, False]
    assert "located" not in run["pageservers"][0] and not ps1.requests

    pageservers[3]["api_url"] = ps2.url
    run = run_module(s3_prefix_info, {**args, "locations": True}, check_mode=True)
    assert not run.failed, run.result
    located = [p["located"] for p in run["pageservers"]]
    assert located == [[f"{OTHER_TENANT}-0002"], [TENANT_ID], [TENANT_ID], [TENANT_ID]]
    assert not ps1.mutating_requests and not ps2.mutating_requests

    bad = [dict(pageservers[0], prefix_in_bucket="ps\uff0f")]
    run = run_module(s3_prefix_info, {**args, "pageservers": bad})
    assert run.failed and run["msg"].startswith("pageservers[0].prefix_in_bucket: "), run["msg"]
