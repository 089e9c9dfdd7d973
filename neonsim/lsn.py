"""LSN helpers for the simulator (upstream `X/Y` text form, `libs/utils/src/lsn.rs`). Independent of the collection."""

from __future__ import annotations

INVALID_LSN = 0


def parse_lsn(value: str | int | None) -> int:
    """`"0/16960E8"` (either case) or an int -> int. None -> 0. ValueError names the bad value."""
    if value is None:
        return 0
    if isinstance(value, int):
        if value < 0 or value >= 1 << 64:
            raise ValueError(f"LSN out of range: {value!r}")
        return value
    text = str(value)
    hi, sep, lo = text.partition("/")
    try:
        if not sep or not hi or not lo:
            raise ValueError
        high, low = int(hi, 16), int(lo, 16)
    except ValueError:
        raise ValueError(f"invalid LSN: {value!r}") from None
    if high >= 1 << 32 or low >= 1 << 32:
        raise ValueError(f"invalid LSN: {value!r}")
    return (high << 32) | low


def format_lsn(value: int) -> str:
    """Upstream text: uppercase hex halves without padding, e.g. `0/16960E8`."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def lsn_hex16(value: int) -> str:
    """Layer-file-name form: 16 uppercase hex digits, no slash."""
    return f"{value:016X}"


def record_size(key: str, value: str | None) -> int:
    """WAL record length in LSN bytes (contracts §5.3)."""
    return 64 + len(key) + len(value or "")
