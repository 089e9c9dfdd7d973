# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""humantime durations as the pageserver's tenant config uses them. Internal; may change in any release."""

from __future__ import annotations

import re

from ansible_collections.neonops.storage.plugins.module_utils._echo import echo

# Unit spellings accepted by the Rust humantime crate, in seconds.
_UNITS = {
    "nsec": 1e-9, "ns": 1e-9, "nanos": 1e-9,
    "usec": 1e-6, "us": 1e-6, "micros": 1e-6,
    "msec": 1e-3, "ms": 1e-3, "millis": 1e-3,
    "seconds": 1, "second": 1, "secs": 1, "sec": 1, "s": 1,
    "minutes": 60, "minute": 60, "mins": 60, "min": 60, "m": 60,
    "hours": 3600, "hour": 3600, "hrs": 3600, "hr": 3600, "h": 3600,
    "days": 86400, "day": 86400, "d": 86400,
    "weeks": 604800, "week": 604800, "w": 604800,
    "months": 2630016, "month": 2630016, "M": 2630016,
    "years": 31557600, "year": 31557600, "y": 31557600,
}  # fmt: skip

# ASCII digits and letters only: humantime parses '0'..='9', and Python's \d would also take other scripts' digits.
_PART = re.compile(r"[ ]*([0-9]+)[ ]*([A-Za-z]+)")
# Longest duration text accepted; the longest real one ("1year 11months 4weeks 6days ...") is far shorter.
MAX_DURATION_TEXT = 200

# Tenant-config keys whose values are humantime durations (TenantConfig in neon's `libs/pageserver_api/src/models.rs`).
DURATION_KEYS = frozenset(
    {
        "checkpoint_timeout",
        "compaction_period",
        "gc_period",
        "image_layer_force_creation_period",
        "pitr_interval",
        "walreceiver_connect_timeout",
        "lagging_wal_timeout",
        "evictions_low_residence_duration_metric_threshold",
        "heatmap_period",
        "lsn_lease_length",
        "lsn_lease_length_for_ts",
    }
)


def parse_duration(text, field: str = "duration") -> float:
    """Return the duration in seconds; raise ``ValueError`` naming ``field`` and the value."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{field}: invalid duration {echo(text)}: expected humantime text such as '0s', '1h', '7days'")
    if len(text) > MAX_DURATION_TEXT:
        raise ValueError(f"{field}: invalid duration {echo(text)}: longer than {MAX_DURATION_TEXT} characters")
    # The text is sent as given, so it must be clean: no surrounding spaces, no tabs or newlines.
    if text != text.strip(" "):
        raise ValueError(f"{field}: invalid duration {echo(text)}: remove the spaces around it")
    total = 0.0
    position = 0
    while position < len(text):
        match = _PART.match(text, position)
        if not match or match.group(2) not in _UNITS:
            raise ValueError(
                f"{field}: invalid duration {echo(text)}: expected humantime text such as '0s', '20 s', '1 hr', "
                "'7days' (ASCII digits and units)"
            )
        total += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total


def is_duration(text) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True
