# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""LSN type. Internal to neonops.storage; may change in any release."""

from __future__ import annotations

from ansible_collections.neonops.storage.plugins.module_utils._echo import echo

_U32 = 0xFFFFFFFF
_U64_MAX = (1 << 64) - 1

# Every LSN-valued field the pageserver (TimelineInfo) and safekeeper (TimelineStatus) APIs return.
LSN_FIELDS = (
    "ancestor_lsn",
    "last_record_lsn",
    "prev_record_lsn",
    "disk_consistent_lsn",
    "remote_consistent_lsn",
    "remote_consistent_lsn_visible",
    "initdb_lsn",
    "applied_gc_cutoff_lsn",
    "latest_gc_cutoff_lsn",
    "min_readable_lsn",
    "last_received_msg_lsn",
    "image_consistent_lsn",
    "flush_lsn",
    "commit_lsn",
    "timeline_start_lsn",
    "local_start_lsn",
    "backup_lsn",
    "peer_horizon_lsn",
    "last_received_lsn",
)


class Lsn(int):
    """A 64-bit log sequence number. Compares as an integer; prints as upstream does (``"0/16960E8"``)."""

    INVALID: Lsn

    def __new__(cls, value: int = 0) -> Lsn:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"invalid LSN {echo(value)}: expected an integer")
        if value < 0 or value > _U64_MAX:
            raise ValueError(f"invalid LSN {echo(value)}: out of the 64-bit range")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, value: str | int) -> Lsn:
        """Parse ``"X/Y"`` (either case) or an integer; raise ``ValueError`` naming the value."""
        if isinstance(value, Lsn):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if not isinstance(value, str):
            raise ValueError(f"invalid LSN {echo(value)}: expected 'X/Y' hex text or an integer")
        text = value.strip()
        hi_text, sep, lo_text = text.partition("/")
        if not sep or not _is_hex(hi_text) or not _is_hex(lo_text):
            raise ValueError(f"invalid LSN {echo(value)}: expected 'X/Y' with hexadecimal X and Y")
        hi, lo = int(hi_text, 16), int(lo_text, 16)
        if hi > _U32 or lo > _U32:
            raise ValueError(f"invalid LSN {echo(value)}: each half must fit in 32 bits")
        return cls((hi << 32) | lo)

    def __str__(self) -> str:
        return f"{int(self) >> 32:X}/{int(self) & _U32:X}"

    def __repr__(self) -> str:
        return f"Lsn('{self}')"

    @property
    def is_valid(self) -> bool:
        return int(self) != 0


Lsn.INVALID = Lsn(0)


def _is_hex(text: str) -> bool:
    return 0 < len(text) <= 8 and all(c in "0123456789abcdefABCDEF" for c in text)


def lsn_fields_as_int(data: dict, fields=LSN_FIELDS) -> dict:
    """Return a copy of ``data`` with ``<field>_int`` next to each LSN field present (None stays None)."""
    result = dict(data)
    for field in fields:
        if field in data:
            value = data[field]
            result[f"{field}_int"] = None if value is None else int(Lsn.parse(value))
    return result
