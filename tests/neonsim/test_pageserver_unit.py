"""Pageserver building blocks without processes: LSNs, sharding, body rules, layers, slots, GC choice."""

from __future__ import annotations

import asyncio

import pytest

from neonsim._server import ApiError, NodeContext
from neonsim.lsn import format_lsn, lsn_hex16, parse_lsn, record_size
from neonsim.pageserver import layers as L
from neonsim.pageserver.config import BadRequest, effective_config, parse_duration, parse_location_config
from neonsim.pageserver.http import Pageserver
from neonsim.pageserver.node import IN_PROGRESS, InProgress
from neonsim.pageserver.remote import index_generation, layer_key, normalize_prefix
from neonsim.pageserver.tenant import TenantShard
from neonsim.pageserver.timeline import Timeline
from neonsim.sharding import TenantShardId, key_to_shard, shard_suffix

TENANT = "a" * 32


def test_lsn_text_form_and_integer_order():
    assert parse_lsn("0/16960E8") == parse_lsn("0/16960e8") == 0x16960E8
    assert parse_lsn("1/0") == 1 << 32
    assert format_lsn(0x16960E8) == "0/16960E8" and format_lsn(1 << 32) == "1/0"
    assert parse_lsn("0/10") > parse_lsn("0/9")
    assert lsn_hex16(0x16960E8) == "00000000016960E8"
    assert record_size("k", "vv") == 67 and record_size("k", None) == 65
    for bad in ("16960E8", "0/", "x/1", "1/100000000"):
        with pytest.raises(ValueError, match="LSN"):
            parse_lsn(bad)


def test_key_to_shard_is_deterministic_and_spreads():
    assert key_to_shard("anything", 0, 2048) == key_to_shard("anything", 1, 2048) == 0
    shards = [key_to_shard(f"k{i}", 4, 1) for i in range(400)]
    assert shards == [key_to_shard(f"k{i}", 4, 1) for i in range(400)]
    assert set(shards) == {0, 1, 2, 3}
    assert all(0 <= key_to_shard(f"k{i}", 8, 2048) < 8 for i in range(100))


def test_tenant_shard_id_forms():
    assert str(TenantShardId.parse(TENANT)) == TENANT and TenantShardId.parse(TENANT).is_unsharded
    sharded = TenantShardId.parse(f"{TENANT}-0104")
    assert (sharded.shard_number, sharded.shard_count, sharded.shard_index) == (1, 4, "0104")
    assert str(TenantShardId.parse(f"{TENANT}-0001")) != TENANT  # 1-shard is not unsharded
    # upstream's FromStr reads hex in either case; `-0000` is the unsharded id itself
    assert str(TenantShardId.parse(f"{TENANT.upper()}-01A0")) == f"{TENANT}-01a0"
    assert TenantShardId.parse(f"{TENANT}-0000") == TenantShardId.parse(TENANT)
    for bad in ("abc", TENANT + "-01", TENANT[:-1] + "g", f"{TENANT}_0104", f"{TENANT}-0404", f"{TENANT}-0100"):
        with pytest.raises(ValueError, match="failed to parse tenant_shard_id"):
            TenantShardId.parse(bad)
    assert [str(s) for s in TenantShardId.shards_of(TENANT, 0)] == [TENANT]
    assert [str(s) for s in TenantShardId.shards_of(TENANT, 2)] == [f"{TENANT}-0002", f"{TENANT}-0102"]
    assert shard_suffix("0000") == "" and shard_suffix("0104") == "-0104"


def test_location_config_normalisation():
    conf = parse_location_config({"mode": "Secondary", "tenant_conf": {"gc_period": "0s", "pitr_interval": None}})
    assert conf == {
        "mode": "Secondary",
        "generation": None,
        "secondary_conf": {"warm": False},
        "shard_number": 0,
        "shard_count": 0,
        "shard_stripe_size": 0,
        "tenant_conf": {"gc_period": "0s"},
    }
    conf = parse_location_config({"mode": "Detached", "generation": 5, "tenant_conf": {}})
    assert conf["generation"] is None  # ignored for Detached
    with pytest.raises(BadRequest, match="gc_period"):
        parse_location_config({"mode": "Secondary", "tenant_conf": {"gc_period": "soon"}})
    with pytest.raises(BadRequest, match="generation"):
        parse_location_config({"mode": "AttachedSingle", "generation": -1, "tenant_conf": {}})


def test_durations_and_effective_config():
    assert parse_duration("0s") == 0 and parse_duration("20 s") == 20 and parse_duration("1 hr") == 3600
    assert parse_duration("7days") == 7 * 86400 and parse_duration("1h 30m") == 5400
    with pytest.raises(ValueError):
        parse_duration("fast")
    eff = effective_config({"gc_period": "5s"}, {"gc_period": "0s", "checkpoint_timeout": None})
    assert eff["gc_period"] == "0s" and eff["checkpoint_timeout"] == "10m" and eff["compaction_threshold"] == 10


def test_layer_names_and_remote_keys():
    delta = L.delta_layer_name(0x1696070, 0x16960E9)
    assert delta == ("000000000000000000000000000000000000-FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF__"
                     "0000000001696070-00000000016960E9")  # fmt: skip
    assert L.parse_layer_name(delta) == ("delta", 0x1696070, 0x16960E9)
    assert L.parse_layer_name(L.image_layer_name(0x10)) == ("image", 0x10, 0x10)
    assert L.LayerDesc(delta, 2, None, 1).level0
    assert not L.LayerDesc(L.delta_layer_name(1, 2, level1=True), 2, None, 1).level0
    assert L.parse_local_file_name(L.local_file_name(delta, 2)) == (delta, 2)
    key = layer_key(normalize_prefix("pageserver"), TENANT, "0104", "b" * 32, delta, 2)
    assert key == f"pageserver/tenants/{TENANT}-0104/timelines/{'b' * 32}/{delta}-00000002"
    assert index_generation("x/index_part.json-0000000a") == 10 and index_generation("x/index_part.json") == -1
    assert index_generation("x/heatmap-v1.json") is None


def test_layer_content_newest_visible_record():
    records = [
        {"lsn": "0/10", "end_lsn": "0/60", "key": "k", "value": "one"},
        {"lsn": "0/60", "end_lsn": "0/A0", "key": "k", "value": "two"},
    ]
    content = L.parse_layer_bytes(L.serialize_layer("delta", records))
    assert content.newest_at("k", 0x9F) == (True, "one", 0x10)
    assert content.newest_at("k", 0xA0) == (True, "two", 0x60)
    assert content.newest_at("k", 0x50) == (False, None, 0)
    assert content.newest_at("other", 0xA0) == (False, None, 0)


@pytest.fixture
def node(tmp_path):
    fleet = {
        "dir": str(tmp_path),
        "auth": {"enabled": False},
        "s3": {"endpoint_url": "http://127.0.0.1:9", "bucket": "b", "region": "us-east-1"},
        "storage_controller": {"name": "storcon", "http_port": 9},
        "pageservers": [
            {
                "name": "ps1",
                "node_id": 1,
                "http_port": 9,
                "pg_port": 9,
                "az": "az-a",
                "prefix_in_bucket": "pageserver/",
                "disk_capacity_bytes": 10**9,
            }
        ],  # fmt: skip
        "safekeepers": [],
        "tenant_defaults": {"gc_horizon": 0},
    }
    return Pageserver(NodeContext(tmp_path, "ps1", fleet=fleet))


def test_slot_errors_before_reattach_and_while_in_progress(node):
    conf = parse_location_config({"mode": "AttachedSingle", "generation": 1, "tenant_conf": {}})
    shard = TenantShardId.parse(TENANT)
    with pytest.raises(ApiError) as exc:
        asyncio.run(node.upsert_location(shard, conf, None, False))
    assert exc.value.status == 503  # re-attach has not finished
    node.tenants_ready = True
    node.slots[TENANT] = IN_PROGRESS
    with pytest.raises(ApiError) as exc:
        asyncio.run(node.upsert_location(shard, conf, None, False))
    assert exc.value.status == 409
    with pytest.raises(ApiError) as exc:
        asyncio.run(node.attached_tenant(shard))
    assert (exc.value.status, exc.value.msg) == (503, "Tenant not yet active")
    with pytest.raises(ApiError) as exc:
        asyncio.run(node.attached_tenant(TenantShardId.parse("b" * 32)))
    assert (exc.value.status, exc.value.msg) == (404, f"NotFound: tenant {'b' * 32}")


class _FakeSlot:
    """Stands in for a TenantShard whose shutdown can fail."""

    def __init__(self, fail: bool):
        self.fail = fail
        self.stopped = False

    async def shutdown(self):
        if self.fail:
            raise RuntimeError("shutdown failed")
        self.stopped = True


def test_slot_change_restores_or_empties_the_slot(node):
    """One owner for slot changes: InProgress meanwhile; the old slot back when it was not shut down, else empty."""
    busy = ApiError(409, "busy")

    async def change(old, fail_after_shutdown=False, install=None):
        node.slots[TENANT] = old
        async with node._slot_change(TENANT, busy) as ch:
            assert isinstance(node.slots[TENANT], InProgress)
            with pytest.raises(ApiError):  # a second change of the same slot is refused meanwhile
                async with node._slot_change(TENANT, busy):
                    pass
            await ch.shut_down_old()
            if fail_after_shutdown:
                raise RuntimeError("later step failed")
            if install is not None:
                ch.install(install)

    failing = _FakeSlot(fail=True)
    with pytest.raises(RuntimeError, match="shutdown failed"):
        asyncio.run(change(failing))
    assert node.slots[TENANT] is failing  # not shut down: restored
    stopping = _FakeSlot(fail=False)
    with pytest.raises(RuntimeError, match="later step failed"):
        asyncio.run(change(stopping, fail_after_shutdown=True))
    assert stopping.stopped and TENANT not in node.slots  # shut down: the slot is left empty
    new = _FakeSlot(fail=False)
    asyncio.run(change(_FakeSlot(fail=False), install=new))
    assert node.slots[TENANT] is new


def test_reattach_response_rules(node):
    local = {"mode": "AttachedMulti", "generation": 5, "tenant_conf": {"gc_period": "0s"}}
    assert node._re_attach_location(local, {"gen": 6, "mode": "AttachedSingle"}) == {
        **local, "mode": "AttachedSingle", "generation": 6, "secondary_conf": None,
    }  # fmt: skip
    demoted = node._re_attach_location(local, {"gen": 4, "mode": "AttachedSingle"})
    assert demoted["mode"] == "Secondary" and demoted["generation"] is None
    secondary = node._re_attach_location(local, {"gen": None, "mode": "Secondary"})
    assert secondary["mode"] == "Secondary" and secondary["tenant_conf"] == {"gc_period": "0s"}


def test_gc_removes_only_layers_covered_by_a_newer_image(node):
    async def scenario():
        location = parse_location_config({"mode": "AttachedSingle", "generation": 1, "tenant_conf": {}})
        tenant = TenantShard(node, TenantShardId.parse(TENANT), location, node.deletion_queue, node.walreceivers)
        tl = Timeline(tenant, "c" * 32)
        tenant.timelines[tl.timeline_id] = tl
        names = [
            L.image_layer_name(0x100),
            L.delta_layer_name(0x100, 0x200),
            L.image_layer_name(0x200),
            L.delta_layer_name(0x200, 0x300),
            L.delta_layer_name(0x300, 0x400),
        ]
        for name in names:
            tl.layers[name] = L.LayerDesc(name, 1, None, 10)
        tl.last_record_lsn = tl.disk_consistent_lsn = 0x400
        removed = []
        tl.upload_index = _noop
        tl._remove_layers = lambda descs: _record(removed, descs)
        result = await tl.gc(horizon=0x150)  # cutoff 0x2B0: only the image at 0x200 covers anything
        return result, sorted(d.name for d in removed), sorted(tl.layers)

    result, removed, kept = asyncio.run(scenario())
    assert removed == sorted([L.image_layer_name(0x100), L.delta_layer_name(0x100, 0x200)])
    assert result["layers_removed"] == 2
    assert L.image_layer_name(0x200) in kept and L.delta_layer_name(0x200, 0x300) in kept


async def _noop(*_args):
    return None


async def _record(sink, descs):
    sink.extend(descs)
