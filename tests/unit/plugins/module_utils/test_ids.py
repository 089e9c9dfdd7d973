from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils._ids import (
    TenantShardId,
    validate_node_id,
    validate_tenant_id,
    validate_timeline_id,
)

TID = "1f359dd625e519a1a4e8d7509690f6fc"


def test_ids_are_lowercased():
    assert validate_tenant_id(TID.upper()) == TID
    assert validate_timeline_id(TID.upper()) == TID


@pytest.mark.parametrize(
    "bad", ["", TID[:-1], TID + "0", "g" * 32, None, 5, f"../{TID}", TID + "\n", TID[:-1] + "\n", "\uff11" * 32]
)
def test_bad_ids_name_field_and_value(bad):
    with pytest.raises(ValueError) as info:
        validate_tenant_id(bad, field="src.tenant")
    assert str(info.value).startswith("src.tenant: ") and repr(bad) in str(info.value)


@pytest.mark.parametrize(
    ("text", "number", "count", "index"),
    [
        (TID, 0, 0, "0000"),
        (f"{TID}-0104", 1, 4, "0104"),
        (f"{TID}-0001", 0, 1, "0001"),
        (f"{TID}-0a10", 10, 16, "0a10"),
    ],
)
def test_tenant_shard_id_round_trip(text, number, count, index):
    tsid = TenantShardId.parse(text)
    assert (tsid.tenant_id, tsid.shard_number, tsid.shard_count) == (TID, number, count)
    assert tsid.shard_index == index
    assert str(tsid) == text
    assert tsid.is_unsharded == (count == 0)
    assert TenantShardId.parse(str(tsid)) == tsid


def test_one_shard_tenant_is_not_unsharded():
    assert TenantShardId.parse(f"{TID}-0001") != TenantShardId.parse(TID)


@pytest.mark.parametrize(
    "bad",
    [
        f"{TID}-0401",  # shard 4 of a count of 1
        f"{TID}-0101",  # shard 1 of a count of 1
        f"{TID}-01",
        f"{TID}_0104",
        f"{TID}-zz04",
        f"{TID}-0100",  # shard 1 of an unsharded tenant
        f"{TID}-0104\n",
        f"{TID}-010\n",
        f"{TID}\n",
        "x" * 37,
        7,
    ],
)
def test_bad_tenant_shard_ids(bad):
    with pytest.raises(ValueError) as info:
        TenantShardId.parse(bad)
    assert str(info.value).startswith("tenant_shard_id: ") and repr(bad) in str(info.value)


def test_a_huge_id_is_not_echoed_whole():
    with pytest.raises(ValueError) as info:
        validate_tenant_id("a" * 10_000_000)
    assert len(str(info.value)) < 300 and "(10000000 characters)" in str(info.value)


@pytest.mark.parametrize("bad", [True, -1, 1 << 64, 1.0, "1"])
def test_node_ids_are_u64_integers(bad):
    with pytest.raises(ValueError, match="^node_id: "):
        validate_node_id(bad)
    assert validate_node_id((1 << 64) - 1) == (1 << 64) - 1
