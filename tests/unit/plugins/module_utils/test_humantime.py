from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils._humantime import is_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("20 s", 20),
        ("1h", 3600),
        ("1 hr", 3600),
        ("10 m", 600),
        ("7days", 7 * 86400),
        ("10 seconds", 10),
        ("1h 30m", 5400),
        ("1m30s", 90),
        ("500ms", 0.5),
        ("10min", 600),
    ],
)
def test_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "5",
        "h",
        "1 parsec",
        "-1s",
        "1.5h",
        None,
        10,
        "\u0661h",  # an Arabic-Indic digit: Python's \d takes it, humantime does not
        "\uff11h",  # a fullwidth digit
        "1\uff48",  # a fullwidth unit letter
        "1h\n",
        " 1h",
        "1h ",
        "1\th",
        "1" * 300 + "h",
    ],
)
def test_rejects_with_field_and_value(bad):
    with pytest.raises(ValueError) as info:
        parse_duration(bad, "gc_period")
    assert str(info.value).startswith("gc_period: invalid duration ") and repr(bad)[:50] in str(info.value)
    assert len(str(info.value)) < 300
    assert not is_duration(bad)
