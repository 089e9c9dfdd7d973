# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""LSN filters: lsn_to_int, lsn_diff, lsn_max, lsn_format (documented in the sidecar .yml files)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn


def _parse(value, where):
    # Lsn.parse names the offending value; `where` tells the user which filter (and operand) failed.
    try:
        return Lsn.parse(value)
    except ValueError as exc:
        raise AnsibleFilterError(f"{where}: {exc}") from None


def lsn_to_int(value):
    """``"0/16960E8"`` → ``23689448``; integers pass through after range checking."""
    return int(_parse(value, "lsn_to_int"))


def lsn_diff(a, b):
    """``a - b`` in bytes, as a (possibly negative) integer."""
    return int(_parse(a, "lsn_diff: minuend")) - int(_parse(b, "lsn_diff: subtrahend"))


def lsn_max(values):
    """The highest LSN of a list, in the ``"X/Y"`` text form."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise AnsibleFilterError(f"lsn_max: expected a list of LSNs, got {type(values).__name__} {values!r}")
    parsed = [_parse(item, f"lsn_max: item {index}") for index, item in enumerate(values)]
    if not parsed:
        raise AnsibleFilterError("lsn_max: the list of LSNs is empty")
    return str(max(parsed))


def lsn_format(value):
    """An integer (or ``"x/y"`` text in any case) → upstream's ``"X/Y"`` form."""
    text = value.strip() if isinstance(value, str) else None
    if text and text.isascii() and text.isdigit():  # ASCII only: int() also takes other scripts' digits
        value = int(text)  # templating may hand integers over as text
    return str(_parse(value, "lsn_format"))


class FilterModule:
    def filters(self):
        return {
            "lsn_to_int": lsn_to_int,
            "lsn_diff": lsn_diff,
            "lsn_max": lsn_max,
            "lsn_format": lsn_format,
        }
