from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn, lsn_fields_as_int


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/16960E8", 0x16960E8),
        ("0/16960e8", 0x16960E8),
        ("1/0", 1 << 32),
        ("FFFFFFFF/FFFFFFFF", (1 << 64) - 1),
        (" 0/10 ", 0x10),
        (0x10, 0x10),
    ],
)
def test_parse(text, value):
    assert Lsn.parse(text) == value


@pytest.mark.parametrize(
    "bad",
    ["", "0", "0/", "/1", "0/G", "1/2/3", "100000000/0", "0/100000000", -1, 1 << 64, True, None, 1.5, "\u0660/\u0661"],
)
def test_parse_rejects_and_names_the_value(bad):
    with pytest.raises(ValueError) as info:
        Lsn.parse(bad)
    assert repr(bad) in str(info.value)


def test_format_is_upstream():
    assert str(Lsn(0x16960E8)) == "0/16960E8"
    assert str(Lsn(1 << 32)) == "1/0"
    assert str(Lsn.parse("a/b")) == "A/B"
    assert str(Lsn.INVALID) == "0/0" and not Lsn.INVALID.is_valid


def test_compares_as_integer_not_string():
    assert Lsn.parse("0/9") < Lsn.parse("0/10")
    assert max(Lsn.parse("0/9"), Lsn.parse("0/10")) == 0x10
    assert Lsn.parse("0/FF") == Lsn.parse("0/ff")


def test_lsn_fields_as_int_adds_int_and_keeps_nulls():
    info = {"timeline_id": "x", "last_record_lsn": "0/10", "ancestor_lsn": None, "pg_version": 16}
    result = lsn_fields_as_int(info)
    assert result == {**info, "last_record_lsn_int": 16, "ancestor_lsn_int": None}
    assert "last_record_lsn_int" not in info  # input not modified
