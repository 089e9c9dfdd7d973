# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Tenant, timeline and tenant-shard id parsing. Internal to neonops.storage; may change in any release."""

from __future__ import annotations

import re

from ansible_collections.neonops.storage.plugins.module_utils._echo import echo

# Patterns are used with fullmatch(): "$" would also match before a trailing newline.
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_SHARD_SUFFIX = re.compile(r"([0-9a-fA-F]{2})([0-9a-fA-F]{2})")
NODE_ID_MAX = (1 << 64) - 1  # NodeId is a u64 (libs/utils/src/id.rs in neondatabase/neon)


def _validate_hex_id(value, field: str, kind: str) -> str:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise ValueError(f"{field}: invalid {kind} {echo(value)}: expected 32 hexadecimal characters")
    return value.lower()


def validate_tenant_id(value, field: str = "tenant_id") -> str:
    """Return the tenant id in lowercase; raise ``ValueError`` naming ``field`` and the value."""
    return _validate_hex_id(value, field, "tenant id")


def validate_timeline_id(value, field: str = "timeline_id") -> str:
    """Return the timeline id in lowercase; raise ``ValueError`` naming ``field`` and the value."""
    return _validate_hex_id(value, field, "timeline id")


def validate_node_id(value, field: str = "node_id") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= NODE_ID_MAX:
        raise ValueError(f"{field}: invalid node id {echo(value)}: expected an integer from 0 to {NODE_ID_MAX}")
    return value


class TenantShardId:
    """``{tenant_id}`` (unsharded, count 0) or ``{tenant_id}-{NN}{CC}`` (shard NN of CC, lowercase hex)."""

    __slots__ = ("tenant_id", "shard_number", "shard_count")

    def __init__(self, tenant_id: str, shard_number: int = 0, shard_count: int = 0):
        self.tenant_id = validate_tenant_id(tenant_id)
        for name, value in (("shard_number", shard_number), ("shard_count", shard_count)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                raise ValueError(f"{name}: invalid value {echo(value)}: expected an integer 0..255")
        if shard_count == 0 and shard_number != 0:
            raise ValueError(f"shard_number: {shard_number} is invalid for an unsharded tenant (shard_count 0)")
        if shard_count > 0 and shard_number >= shard_count:
            raise ValueError(f"shard_number: {shard_number} must be lower than shard_count {shard_count}")
        self.shard_number = shard_number
        self.shard_count = shard_count

    @classmethod
    def parse(cls, text, field: str = "tenant_shard_id") -> TenantShardId:
        """Parse the path form; raise ``ValueError`` naming ``field`` and the value."""
        if isinstance(text, TenantShardId):
            return text
        if not isinstance(text, str):
            raise ValueError(f"{field}: invalid tenant shard id {echo(text)}: expected a string")
        if len(text) == 32 and _HEX32.fullmatch(text):
            return cls(text)
        if len(text) == 37 and text[32] == "-" and _HEX32.fullmatch(text[:32]):
            suffix = _SHARD_SUFFIX.fullmatch(text[33:])
            if suffix:
                # Shard NN of CC (ShardIndex in libs/utils/src/shard.rs): NN < CC, or 0000 for unsharded.
                try:
                    return cls(text[:32], int(suffix.group(1), 16), int(suffix.group(2), 16))
                except ValueError as exc:
                    raise ValueError(f"{field}: invalid tenant shard id {echo(text)}: {exc}") from None
        raise ValueError(
            f"{field}: invalid tenant shard id {echo(text)}: expected 32 hex characters or '<tenant_id>-NNCC'"
        )

    @property
    def is_unsharded(self) -> bool:
        return self.shard_count == 0

    @property
    def shard_index(self) -> str:
        return f"{self.shard_number:02x}{self.shard_count:02x}"

    def __str__(self) -> str:
        if self.is_unsharded:
            return self.tenant_id
        return f"{self.tenant_id}-{self.shard_index}"

    def __repr__(self) -> str:
        return f"TenantShardId('{self}')"

    def __eq__(self, other) -> bool:
        if not isinstance(other, TenantShardId):
            return NotImplemented
        return (self.tenant_id, self.shard_number, self.shard_count) == (
            other.tenant_id,
            other.shard_number,
            other.shard_count,
        )

    def __hash__(self) -> int:
        return hash((self.tenant_id, self.shard_number, self.shard_count))


def validate_tenant_shard_id(value, field: str = "tenant_shard_id") -> TenantShardId:
    return TenantShardId.parse(value, field)
