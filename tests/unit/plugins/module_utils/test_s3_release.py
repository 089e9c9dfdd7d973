"""The release's pure decisions: prefix relations, the confirmation, tags and the delete order."""

from __future__ import annotations

import datetime

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _s3_release as rel

TENANT = "1f359dd625e519a1a4e8d7509690f6fc"


@pytest.mark.parametrize(
    ("old", "live", "expected"),
    [
        ("a", "a", "equal"),
        ("a", "a/b", "parent"),
        ("a", "ab", None),  # a string prefix, not a parent segment-wise
        ("a/b", "a", None),  # a child outside a's tenant tree
        ("a/tenants/x", "a", "inside"),
        ("tenants/x", "", "inside"),  # the bucket root's tenant tree
        ("x", "", None),
        ("a/tenantsx", "a", None),
    ],
)
def test_live_problem(old, live, expected):
    assert rel.live_problem(old, live) == expected


def test_pageserver_prefix_may_be_the_bucket_root_only_explicitly():
    assert rel.validate_live_prefix("", "f") == rel.validate_live_prefix("/", "f") == ""
    assert rel.validate_live_prefix("ps/", "f") == "ps"
    with pytest.raises(ValueError, match=r"^pageservers\[0\]\.prefix_in_bucket: "):
        rel.validate_live_prefix("ps//", "pageservers[0].prefix_in_bucket")


def test_confirm_is_the_exact_target():
    assert rel.release_target("ps-a", None) == "ps-a"
    assert rel.release_target("ps-a", TENANT) == f"ps-a/tenants/{TENANT}"
    rel.check_confirm("ps-a", "ps-a")
    rel.check_confirm("ps-a/", "ps-a")
    for wrong in (None, "", "ps-a//", "PS-A", "ps-a ", "ps", "ps-a/tenants"):
        with pytest.raises(rel.Refused) as info:
            rel.check_confirm(wrong, "ps-a")
        assert info.value.refusals[0]["field"] == "confirm" and repr(wrong) in str(info.value)


def test_tombstone_tags_carry_the_retention_and_the_date():
    tags = rel.tombstone_tagging(30, datetime.date(2026, 12, 2))
    assert tags == {"neonops-tombstone": "30", "neonops-expires": "2027-01-01"}


def test_index_parts_and_heatmaps_go_after_the_layers():
    root = f"a/tenants/{TENANT}"
    layer = f"{root}/timelines/{'0' * 32}/{'0' * 36}-{'F' * 36}__{'0' * 15}1-{'0' * 15}2-00000001"
    index = f"{root}/timelines/{'0' * 32}/index_part.json-00000001"
    heatmap = f"{root}/heatmap-v1.json"
    objects = {heatmap: {}, index: {}, layer: {}}
    assert rel.ordered(objects, "a") == [layer, index, heatmap]
