from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.neonops.storage.plugins.filter import lsn as lsn_plugin
from ansible_collections.neonops.storage.plugins.filter.lsn import FilterModule
from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn

FILTERS = FilterModule().filters()
lsn_to_int = FILTERS["lsn_to_int"]
lsn_diff = FILTERS["lsn_diff"]
lsn_max = FILTERS["lsn_max"]
lsn_format = FILTERS["lsn_format"]


def test_all_four_filters_are_exported():
    assert set(FILTERS) == {"lsn_to_int", "lsn_diff", "lsn_max", "lsn_format"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0/16960E8", 0x16960E8),
        ("0/16960e8", 0x16960E8),
        ("1/0", 1 << 32),
        ("FFFFFFFF/FFFFFFFF", (1 << 64) - 1),
        ("0/0", 0),
        (12345, 12345),
    ],
)
def test_lsn_to_int(text, expected):
    result = lsn_to_int(text)
    assert result == expected
    assert not isinstance(result, Lsn)  # a plain int, so it serializes and prints like any number in Jinja


@pytest.mark.parametrize("bad", ["16960E8", "0/XYZ", "", "1/2/3", "100000000/0", None, -1, 1 << 64, True, [1]])
def test_lsn_to_int_rejects_bad_input_naming_the_value(bad):
    with pytest.raises(AnsibleFilterError) as info:
        lsn_to_int(bad)
    assert "lsn_to_int" in str(info.value)
    assert repr(bad) in str(info.value)


def test_lsn_diff_is_a_minus_b_in_bytes():
    assert lsn_diff("0/2000", "0/1000") == 4096
    assert lsn_diff("0/1000", "0/2000") == -4096
    assert lsn_diff("1/0", "0/FFFFFFFF") == 1
    assert lsn_diff(8192, "0/1000") == 4096


def test_lsn_diff_names_the_bad_operand():
    with pytest.raises(AnsibleFilterError, match=r"lsn_diff: subtrahend: .*'nope'"):
        lsn_diff("0/1", "nope")
    with pytest.raises(AnsibleFilterError, match=r"lsn_diff: minuend: .*'0/'"):
        lsn_diff("0/", "0/1")


def test_lsn_max_compares_numerically_not_as_strings():
    # As strings "0/9" > "0/10"; as LSNs 0x10 > 0x9.
    assert lsn_max(["0/9", "0/10", "0/A"]) == "0/10"
    assert lsn_max(["1/0", "0/FFFFFFFF"]) == "1/0"
    assert lsn_max(["0/a", 5]) == "0/A"


def test_lsn_max_rejects_empty_and_non_lists_and_bad_items():
    with pytest.raises(AnsibleFilterError, match="empty"):
        lsn_max([])
    with pytest.raises(AnsibleFilterError, match="expected a list"):
        lsn_max("0/1")
    with pytest.raises(AnsibleFilterError, match="expected a list"):
        lsn_max({"a": "0/1"})
    with pytest.raises(AnsibleFilterError, match=r"item 1: .*'garbage'"):
        lsn_max(["0/1", "garbage"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0x16960E8, "0/16960E8"), (1 << 32, "1/0"), (0, "0/0"), ("0/16960e8", "0/16960E8"), ("23683304", "0/16960E8")],
)
def test_lsn_format(value, expected):
    assert lsn_format(value) == expected


@pytest.mark.parametrize("bad", [-5, 1 << 64, "abc", 1.5, None, "\u0661\u0662"])
def test_lsn_format_rejects_bad_input_naming_the_value(bad):
    with pytest.raises(AnsibleFilterError) as info:
        lsn_format(bad)
    assert "lsn_format" in str(info.value)
    assert repr(bad) in str(info.value)


def test_round_trip():
    for text in ("0/1", "0/16960E8", "2A/FF00", "FFFFFFFF/FFFFFFFF"):
        assert lsn_format(lsn_to_int(text)) == text


PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: "{{ ['0/9', '0/10'] | neonops.storage.lsn_max }} {{ '0/2000' | neonops.storage.lsn_diff('0/1000') }}"
    - ansible.builtin.debug:
        msg: "{{ 'zz' | neonops.storage.lsn_to_int }}"
"""


def test_filters_work_inside_a_playbook(tmp_path):
    # Proves the plugins load by their FQCN and that a bad value reaches the user with the filter name.
    collections_root = Path(lsn_plugin.__file__).absolute().parents[5]
    playbook = tmp_path / "lsn.yml"
    playbook.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_root), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    assert '"msg": "0/10 4096"' in output
    assert done.returncode != 0  # the second task fails...
    assert "lsn_to_int: invalid LSN 'zz'" in output  # ...naming the filter and the value
