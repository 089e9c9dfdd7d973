"""s3_prefix_release on moto: every refusal changes nothing, hostile input is refused before any request, and a
release removes exactly the validated tenant shard directories (the bucket is listed before and after)."""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _s3_release
from ansible_collections.neonops.storage.plugins.modules import s3_prefix_release
from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID, TIMELINE_ID, TIMELINE_ID_2
from ansible_collections.neonops.storage.tests.unit.plugins.conftest import aws_args, snapshot, write_timeline

OTHER_TENANT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SHARDS = (f"{TENANT_ID}-0002", f"{TENANT_ID}-0102")
# Neighbours that a sloppy string-prefix listing would catch: a longer directory name, another prefix.
NEIGHBOURS = (
    f"old/tenants/{TENANT_ID}x/timelines/{TIMELINE_ID}/index_part.json-00000009",
    f"old/tenants/{TENANT_ID}-00021/heatmap-v1.json",
    "old/tenants/README",
    f"old2/tenants/{TENANT_ID}/heatmap-v1.json",
    f"oldx/tenants/{TENANT_ID}-0002/heatmap-v1.json",
)


def _fill(s3, bucket) -> dict:
    """TENANT_ID (two shards, one with two timelines) and OTHER_TENANT under old/, consolidated newer under new/."""
    keys = {"tenant": [], "other": [], "new": []}
    keys["tenant"] += write_timeline(s3, bucket, "old", SHARDS[0], TIMELINE_ID, [1, 2], layers=2, shard="0002")
    keys["tenant"] += write_timeline(s3, bucket, "old", SHARDS[0], TIMELINE_ID_2, [2], layers=1, shard="0002")
    keys["tenant"] += write_timeline(s3, bucket, "old", SHARDS[1], TIMELINE_ID, [2], layers=2, shard="0102")
    keys["other"] += write_timeline(s3, bucket, "old", OTHER_TENANT, TIMELINE_ID, [5], layers=1)
    keys["new"] += write_timeline(s3, bucket, "new", SHARDS[0], TIMELINE_ID, [1, 2, 3], layers=2, shard="0002")
    keys["new"] += write_timeline(s3, bucket, "new", SHARDS[0], TIMELINE_ID_2, [2], layers=1, shard="0002")
    keys["new"] += write_timeline(s3, bucket, "new", SHARDS[1], TIMELINE_ID, [2, 3], layers=2, shard="0102")
    keys["new"] += write_timeline(s3, bucket, "new", OTHER_TENANT, TIMELINE_ID, [5], layers=1)
    for key in NEIGHBOURS:
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    keys["tenant"] = sorted(set(keys["tenant"]))
    keys["other"] = sorted(set(keys["other"]))
    return keys


def _locations(*entries):
    return {"tenant_shards": [[tsid, {"mode": mode, "generation": 3}] for tsid, mode in entries]}


@pytest.fixture(scope="module")
def shared_bucket(moto_url):
    """One filled bucket for the tests that must change nothing (filling one costs ~60 requests)."""
    import boto3

    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **creds)
    bucket = "neon-release-shared"
    client.create_bucket(Bucket=bucket)
    return bucket, _fill(client, bucket)


def _world(s3, bucket, keys, moto_url, fake_api_factory, monkeypatch):
    """A bucket, two fake pageservers (ps-old reads old/, ps-new reads new/) and a log of S3 operations."""
    ps_old, ps_new = fake_api_factory(), fake_api_factory()
    ps_old.add("GET", "/v1/location_config", _locations((OTHER_TENANT, "AttachedSingle")))
    ps_new.add("GET", "/v1/location_config", _locations((SHARDS[0], "AttachedSingle"), (SHARDS[1], "AttachedSingle")))
    operations = []
    real_client = s3_prefix_release.s3_client

    def recording_client(module):
        client = real_client(module)
        client.meta.events.register("before-call.s3.*", lambda model, **_kw: operations.append(model.name))
        return client

    monkeypatch.setattr(s3_prefix_release, "s3_client", recording_client)

    class World:
        pass

    w = World()
    w.bucket, w.keys, w.ps_old, w.ps_new, w.operations, w.s3 = bucket, keys, ps_old, ps_new, operations, s3
    w.pageservers = [
        {"name": "ps-old", "api_url": ps_old.url, "prefix_in_bucket": "old/"},
        {"name": "ps-new", "api_url": ps_new.url, "prefix_in_bucket": "new/"},
    ]

    def args(**kw):
        base = {
            **aws_args(moto_url),
            "bucket": bucket,
            "prefix_in_bucket": "old/",
            "tenant_id": TENANT_ID,
            "consolidated_prefix_in_bucket": "new",
            "pageservers": w.pageservers,
            "batch_size": 5,
        }
        base.update(kw)
        return {k: v for k, v in base.items() if v is not None}

    w.args = args
    w.snapshot = lambda: snapshot(s3, bucket)
    return w


@pytest.fixture
def world(s3, make_bucket, moto_url, fake_api_factory, monkeypatch):
    """A bucket of its own (for tests that release or change the consolidated copy)."""
    bucket = make_bucket()
    return _world(s3, bucket, _fill(s3, bucket), moto_url, fake_api_factory, monkeypatch)


@pytest.fixture
def ro_world(s3, shared_bucket, moto_url, fake_api_factory, monkeypatch):
    """The shared bucket, for tests that must leave it as it is (they assert so)."""
    return _world(s3, *shared_bucket, moto_url, fake_api_factory, monkeypatch)


MUTATING_S3 = {"CopyObject", "DeleteObjects", "DeleteObject", "PutObject", "PutObjectTagging", "UploadPartCopy"}


def _refused(run, code, field):
    assert run.failed and not run.changed, run.result
    assert code in {r["code"] for r in run["refusals"]}, run["refusals"]
    assert any(r["field"] == field for r in run["refusals"] if r["code"] == code), run["refusals"]
    assert f"{field}: " in run["msg"] and f"refusal {code}" in run["msg"], run["msg"]


def _nothing_changed(world, before):
    assert world.snapshot() == before
    assert not MUTATING_S3 & set(world.operations), world.operations
    assert not world.ps_old.mutating_requests and not world.ps_new.mutating_requests


# ---- the releases ------------------------------------------------------------------------------------------------


def test_check_mode_lists_exactly_what_would_go_and_mutates_nothing(ro_world, run_module):
    before = ro_world.snapshot()
    run = run_module(s3_prefix_release, ro_world.args(), check_mode=True, diff=True)
    assert not run.failed and run.changed, run.result
    tenant_keys = ro_world.keys["tenant"]
    assert run["release"]["objects"] == len(tenant_keys) == 11
    assert run["release"]["bytes"] == sum(before[k][0] for k in tenant_keys)
    assert run["release"]["sample"] == sorted(tenant_keys)[:20]
    assert run["target"] == f"old/tenants/{TENANT_ID}"
    assert [t["tenant_shard_id"] for t in run["tenants"]] == list(SHARDS)
    assert run["tenants"][0]["released_generation"] == 2 and run["tenants"][0]["consolidated_generation"] == 3
    assert run["checks"] == {"index_parts": 3, "layers": 2 + 1 + 2}
    assert {p["name"]: p["reads"] for p in run["pageservers"]} == {"ps-old": "released", "ps-new": "consolidated"}
    assert run["pageservers"][1]["located"] == list(SHARDS)
    assert run["diff"]["before"]["objects"] == 11 and run["diff"]["after"]["objects"] == 0
    assert run["deleted"]["objects"] == 0
    _nothing_changed(ro_world, before)
    assert {"ListObjectsV2", "GetObject"} <= set(ro_world.operations)
    assert [r.method for r in ro_world.ps_old.requests] == ["GET"]


def test_tombstone_moves_only_the_tenant_then_a_rerun_changes_nothing(world, run_module):
    before = world.snapshot()
    run = run_module(s3_prefix_release, world.args())
    assert not run.failed and run.changed, run.result
    after = world.snapshot()
    gone = set(before) - set(after)
    assert gone == set(world.keys["tenant"])
    trash = {f"neonops-trash/{k}" for k in gone}
    assert set(after) - set(before) == trash
    assert {k: v for k, v in after.items() if k in before} == {k: v for k, v in before.items() if k not in gone}
    assert run["deleted"] == {"objects": 11, "bytes": sum(before[k][0] for k in gone), "batches": 3}
    assert run["tombstoned"] == {"copied": 11, "copied_bytes": run["deleted"]["bytes"], "already_in_trash": 0}
    tags = world.s3.get_object_tagging(Bucket=world.bucket, Key=sorted(trash)[0])["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == run["trash"]["tags"]
    assert run["trash"]["tags"]["neonops-tombstone"] == "30"
    for key in gone:
        assert after[f"neonops-trash/{key}"][0] == before[key][0]

    world.operations.clear()
    again = run_module(s3_prefix_release, world.args())
    assert not again.failed and not again.changed, again.result
    assert again["release"]["objects"] == 0 and again["deleted"]["objects"] == 0
    assert world.snapshot() == after
    assert not MUTATING_S3 & set(world.operations)


def test_delete_a_whole_prefix_with_confirm_keeps_what_is_not_a_tenant_directory(world, run_module):
    pageservers = [dict(world.pageservers[0], prefix_in_bucket="new"), world.pageservers[1]]
    world.ps_old.routes.clear()
    world.ps_old.add("GET", "/v1/location_config", _locations((OTHER_TENANT, "AttachedSingle")))
    before = world.snapshot()
    run = run_module(
        s3_prefix_release,
        world.args(tenant_id=None, mode="delete", confirm="old", pageservers=pageservers, batch_size=1000),
    )
    assert not run.failed and run.changed, run.result
    after = world.snapshot()
    assert set(before) - set(after) == set(world.keys["tenant"] + world.keys["other"])
    assert not set(after) - set(before)
    assert run["deleted"]["batches"] == 1
    assert run["kept"]["objects"] == 3  # the odd directories and the loose object below old/tenants/
    for key in NEIGHBOURS:
        assert key in after


def test_interrupted_between_delete_batches_then_rerun_completes(world, run_module, monkeypatch):
    before = world.snapshot()
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise RuntimeError("killed between batches")

    monkeypatch.setattr(_s3_release, "after_batch", interrupt)
    run = run_module(s3_prefix_release, world.args(batch_size=4))
    assert run.failed and run.changed and "a rerun resumes" in run["msg"], run.result
    middle = world.snapshot()
    assert len(set(before) - set(middle)) == 8  # two batches of four went
    assert all(f"neonops-trash/{k}" in middle for k in world.keys["tenant"])

    monkeypatch.setattr(_s3_release, "after_batch", lambda done, total: None)
    again = run_module(s3_prefix_release, world.args(batch_size=4))
    assert not again.failed and again.changed, again.result
    assert again["tombstoned"]["copied"] == 0 and again["tombstoned"]["already_in_trash"] == 11 - 8
    assert again["deleted"]["objects"] == 11 - 8
    after = world.snapshot()
    assert set(before) - set(after) == set(world.keys["tenant"])


def test_originals_stay_when_a_tombstone_does_not_verify(world, run_module, monkeypatch):
    real_copy = _s3_release.copy_to_trash

    def copy_all_but_one(client, bucket, items, *args):
        return real_copy(client, bucket, items[1:], *args)  # a copy lost (or corrupted) on the way

    monkeypatch.setattr(_s3_release, "copy_to_trash", copy_all_but_one)
    before = world.snapshot()
    run = run_module(s3_prefix_release, world.args())
    assert run.failed and "tombstones missing or different after the copy" in run["msg"], run.result
    assert "nothing deleted" in run["msg"] and run["deleted"]["objects"] == 0
    after = world.snapshot()
    assert set(before) <= set(after) and all(after[k] == before[k] for k in before)

    monkeypatch.setattr(_s3_release, "copy_to_trash", real_copy)
    again = run_module(s3_prefix_release, world.args())
    assert not again.failed and again["tombstoned"]["copied"] == 1, again.result
    assert set(before) - set(world.snapshot()) == set(world.keys["tenant"])


def test_a_key_outside_the_validated_path_stops_the_batch_before_it_is_sent():
    sent = []

    class Client:
        def delete_objects(self, **kw):
            sent.append(kw)
            return {}

    check = _s3_release.deletable_check("old", [SHARDS[0]])
    inside = f"old/tenants/{SHARDS[0]}/heatmap-v1.json"
    for outside in (
        f"old/tenants/{SHARDS[1]}/heatmap-v1.json",
        f"old/tenants/{SHARDS[0]}1/heatmap-v1.json",
        f"old2/tenants/{SHARDS[0]}/heatmap-v1.json",
        f"old/tenants/{SHARDS[0]}/../{OTHER_TENANT}/heatmap-v1.json",
        "new/tenants/x",
    ):
        with pytest.raises(_s3_release.KeyOutsideRelease):
            _s3_release.delete_keys(Client(), "b", [inside, outside], {inside: 1, outside: 1}, check, 1000)
    assert sent == []
    _s3_release.delete_keys(Client(), "b", [inside], {inside: 1}, check, 1000)
    assert sent[0]["Delete"]["Objects"] == [{"Key": inside}]


# ---- refusals: each one changes nothing ----------------------------------------------------------------------------


def test_refused_while_a_pageserver_is_configured_with_the_prefix(ro_world, run_module):
    before = ro_world.snapshot()
    run = run_module(s3_prefix_release, ro_world.args(tenant_id=None))
    _refused(run, "prefix_in_use", "pageservers[0].prefix_in_bucket")
    assert "'ps-old'" in run["msg"] and "'old'" in run["msg"]
    _nothing_changed(ro_world, before)
    assert ro_world.operations == []  # refused before any request


def test_refused_when_the_consolidated_prefix_is_read_by_no_pageserver(ro_world, run_module):
    before = ro_world.snapshot()
    pageservers = [ro_world.pageservers[0], dict(ro_world.pageservers[1], prefix_in_bucket="elsewhere")]
    run = run_module(s3_prefix_release, ro_world.args(pageservers=pageservers))
    _refused(run, "consolidated_not_live", "consolidated_prefix_in_bucket")
    _nothing_changed(ro_world, before)


@pytest.mark.parametrize("trash", ["old/trash", "new", "new/x", "old"])
def test_refused_when_the_trash_prefix_overlaps(ro_world, run_module, trash):
    before = ro_world.snapshot()
    run = run_module(s3_prefix_release, ro_world.args(trash_prefix=trash))
    _refused(run, "trash_overlap", "trash_prefix")
    _nothing_changed(ro_world, before)


def test_refused_when_a_shard_is_missing_in_the_consolidated_prefix(world, run_module):
    for key in [k for k in world.snapshot() if k.startswith(f"new/tenants/{SHARDS[1]}/timelines/")]:
        world.s3.delete_object(Bucket=world.bucket, Key=key)
    before = world.snapshot()
    run = run_module(s3_prefix_release, world.args())
    _refused(run, "not_consolidated", "consolidated_prefix_in_bucket")
    assert SHARDS[1] in run["msg"]
    _nothing_changed(world, before)


def test_refused_when_the_consolidated_generation_is_older(world, run_module):
    write_timeline(world.s3, world.bucket, "old", SHARDS[1], TIMELINE_ID, [2, 4], layers=2, shard="0102")
    before = world.snapshot()
    run = run_module(s3_prefix_release, world.args())
    _refused(run, "not_consolidated", "consolidated_prefix_in_bucket")
    assert "00000003" in run["msg"] and "00000004" in run["msg"]
    _nothing_changed(world, before)


def test_refused_when_a_timeline_is_only_in_the_old_prefix(world, run_module):
    for key in [k for k in world.snapshot() if k.startswith(f"new/tenants/{SHARDS[0]}/timelines/{TIMELINE_ID_2}/")]:
        world.s3.delete_object(Bucket=world.bucket, Key=key)
    before = world.snapshot()
    run = run_module(s3_prefix_release, world.args())
    _refused(run, "not_consolidated", "consolidated_prefix_in_bucket")
    assert TIMELINE_ID_2 in run["msg"]
    _nothing_changed(world, before)


def test_refused_when_a_referenced_layer_is_missing_in_the_consolidated_prefix(world, run_module):
    layer = next(
        k for k in world.snapshot() if k.startswith(f"new/tenants/{SHARDS[1]}/timelines/") and "__" in k.rsplit("/")[-1]
    )
    world.s3.delete_object(Bucket=world.bucket, Key=layer)
    before = world.snapshot()
    run = run_module(s3_prefix_release, world.args())
    _refused(run, "missing_layers", "consolidated_prefix_in_bucket")
    _nothing_changed(world, before)


def test_refused_when_the_consolidated_index_part_is_unreadable(world, run_module):
    key = f"new/tenants/{SHARDS[1]}/timelines/{TIMELINE_ID}/index_part.json-00000003"
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=b"not json")
    before = world.snapshot()
    run = run_module(s3_prefix_release, world.args())
    _refused(run, "missing_layers", "consolidated_prefix_in_bucket")
    assert "unreadable" in run["msg"]
    _nothing_changed(world, before)


@pytest.mark.parametrize("mode", ["AttachedStale", "Secondary"])
def test_refused_while_the_tenant_is_located_on_a_pageserver_reading_the_prefix(ro_world, run_module, mode):
    ro_world.ps_old.routes.clear()
    ro_world.ps_old.add("GET", "/v1/location_config", _locations((OTHER_TENANT, "AttachedSingle"), (SHARDS[1], mode)))
    before = ro_world.snapshot()
    run = run_module(s3_prefix_release, ro_world.args())
    _refused(run, "still_located", "tenant_id")
    assert f"{SHARDS[1]} is {mode} on pageserver 'ps-old'" in run["msg"]
    _nothing_changed(ro_world, before)


def test_refused_when_a_pageserver_does_not_answer(ro_world, run_module):
    ro_world.ps_new.routes.clear()
    ro_world.ps_new.add("GET", "/v1/location_config", {"msg": "boom"}, status=500)
    before = ro_world.snapshot()
    run = run_module(s3_prefix_release, ro_world.args(retries=0))
    _refused(run, "pageserver_unanswered", "pageservers[1].api_url")
    _nothing_changed(ro_world, before)


@pytest.mark.parametrize(
    "confirm", [None, "old/", "old", f"old/tenants/{TENANT_ID} ", f"old/tenants/{TENANT_ID.upper()}", "new"]
)
def test_delete_refused_without_the_exact_confirmation(ro_world, run_module, confirm):
    before = ro_world.snapshot()
    run = run_module(s3_prefix_release, ro_world.args(mode="delete", confirm=confirm))
    _refused(run, "confirm", "confirm")
    assert repr(confirm) in run["msg"] and f"confirm=old/tenants/{TENANT_ID}" in run["msg"]
    _nothing_changed(ro_world, before)
    assert ro_world.operations == []


# ---- hostile input: refused before any request, naming the field and the value ------------------------------------

HOSTILE = [
    ("prefix_in_bucket", ""),
    ("prefix_in_bucket", "/"),
    ("prefix_in_bucket", ".."),
    ("prefix_in_bucket", "a/../b"),
    ("prefix_in_bucket", "old/./"),
    ("prefix_in_bucket", "old//"),
    ("prefix_in_bucket", "/old"),
    ("prefix_in_bucket", "old "),
    ("prefix_in_bucket", " old"),
    ("prefix_in_bucket", "old\n"),
    ("prefix_in_bucket", "old\uff0f"),  # fullwidth solidus
    ("prefix_in_bucket", "\u043eld"),  # Cyrillic o
    ("prefix_in_bucket", "old*"),
    ("tenant_id", f"{TENANT_ID}/.."),
    ("tenant_id", f"../{TENANT_ID}"),
    ("tenant_id", f"{TENANT_ID}-0002"),
    ("tenant_id", f"{TENANT_ID[:31]}/"),
    ("tenant_id", f"{TENANT_ID} "),
    ("consolidated_prefix_in_bucket", "new\u2215"),  # division slash
    ("consolidated_prefix_in_bucket", "../new"),
    ("trash_prefix", ""),
    ("trash_prefix", "trash/../old"),
    ("bucket", "Bucket With Spaces"),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_hostile_input_is_refused_before_any_request(ro_world, run_module, field, value):
    before = ro_world.snapshot()
    run = run_module(s3_prefix_release, ro_world.args(**{field: value}, mode="delete", confirm="old"))
    assert run.failed and not run.changed, run.result
    assert run["msg"].startswith(f"{field}: ") and repr(value) in run["msg"], run["msg"]
    assert ro_world.operations == [] and ro_world.ps_old.requests == [] and ro_world.ps_new.requests == []
    assert ro_world.snapshot() == before


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"prefix_in_bucket": "ne"}, "pageservers[3].prefix_in_bucket"),  # parent of ne/w, not of new
        ({"prefix_in_bucket": "new"}, "consolidated_prefix_in_bucket"),
        ({"prefix_in_bucket": "srv", "consolidated_prefix_in_bucket": "srv/new"}, "prefix_in_bucket"),
        ({"prefix_in_bucket": "new/tenants/x"}, "prefix_in_bucket"),
    ],
)
def test_a_live_prefix_or_its_parent_is_refused(ro_world, run_module, args, field):
    before = ro_world.snapshot()
    pageservers = ro_world.pageservers + [
        {"name": "ps-srv", "api_url": ro_world.ps_new.url, "prefix_in_bucket": "srv/new"},
        {"name": "ps-ne", "api_url": ro_world.ps_new.url, "prefix_in_bucket": "ne/w"},
    ]
    run = run_module(s3_prefix_release, ro_world.args(pageservers=pageservers, tenant_id=None, **args))
    assert run.failed and not run.changed, run.result
    codes = {r["code"] for r in run["refusals"]}
    assert "live_prefix" in codes, run["refusals"]
    assert any(r["field"] == field for r in run["refusals"] if r["code"] == "live_prefix"), run["refusals"]
    assert f"{field}: " in run["msg"]
    _nothing_changed(ro_world, before)
    assert ro_world.operations == []


def test_pageserver_entries_are_validated(ro_world, run_module):
    for entry, field in (
        ({"prefix_in_bucket": "new "}, "pageservers[1].prefix_in_bucket"),
        ({"api_url": "ftp://x"}, "pageservers[1].api_url"),
        ({"name": "ps-old"}, "pageservers[1].name"),
        ({"bucket": "UPPER"}, "pageservers[1].bucket"),
    ):
        pageservers = [ro_world.pageservers[0], dict(ro_world.pageservers[1], **entry)]
        run = run_module(s3_prefix_release, ro_world.args(pageservers=pageservers))
        assert run.failed and run["msg"].startswith(f"{field}: "), run["msg"]
    assert ro_world.operations == [] and ro_world.ps_old.requests == []


def test_client_pool_fits_the_tombstone_copies_in_flight():
    # botocore keeps 10 connections by default: 16 tombstone copies at once would each wait for, or open and drop,
    # a connection ("Connection pool is full")
    calls = []

    class Module:
        params = {"concurrency": 32}

        def client(self, service, retry_decorator=None, **extra):
            calls.append((service, extra))

    s3_prefix_release.s3_client(Module())
    [(service, extra)] = calls
    assert service == "s3" and extra["config"].max_pool_connections >= 32
