"""Key-to-shard mapping and tenant shard id text forms shared by the simulated pageserver and computes.

Keys are strings; a key's crc32 is treated as a page number and pages are grouped into stripes of
`stripe_size`, stripes dealt round-robin to shards (the same shape as upstream's striping, not its hash).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_SHARD_SUFFIX = re.compile(r"^[0-9a-f]{4}$")


def key_to_shard(key: str, shard_count: int, stripe_size: int | None) -> int:
    """Shard number owning `key`. Unsharded (0) and single-shard (1) tenants always map to 0."""
    if shard_count in (0, 1):
        return 0
    page = zlib.crc32(key.encode())
    stripe = page // max(int(stripe_size or 1), 1)
    return stripe % shard_count


def key_in_shard(key: str, shard_number: int, shard_count: int, stripe_size: int | None) -> bool:
    return key_to_shard(key, shard_count, stripe_size) == shard_number


def shard_index(shard_number: int, shard_count: int) -> str:
    """ShardIndex text `NNCC`: lowercase hex, `0000` for unsharded (upstream `libs/utils/src/shard.rs`)."""
    return f"{shard_number:02x}{shard_count:02x}"


@dataclass(frozen=True, order=True)
class TenantShardId:
    """The one tenant shard id type of neonsim: every node, the workload, bootstrap and the checker parse and format
    `{tenant_shard_id}` through it (upstream `libs/utils/src/shard.rs`, `TenantShardId`)."""

    tenant_id: str
    shard_number: int = 0
    shard_count: int = 0

    @classmethod
    def parse(cls, text: str) -> TenantShardId:
        """Upstream's `FromStr`: 32 hex chars -> unsharded (count 0); `{tenant}-{NN}{CC}` (37 chars) -> that shard.
        Hex digits in either case (the canonical text is lowercase); `-0000` is the unsharded id. Stricter than
        upstream's parser in two ways it leaves to later checks (`ShardIdentity`): the separator must be `-` and the
        shard number must be below the count (or both zero). Anything else: ValueError
        (`failed to parse tenant_shard_id: ...`)."""
        text = text if isinstance(text, str) else ""
        lowered = text.lower()
        if len(text) == 32 and _HEX32.match(lowered):
            return cls(lowered)
        if len(text) == 37 and text[32] == "-" and _HEX32.match(lowered[:32]) and _SHARD_SUFFIX.match(lowered[33:]):
            number, count = int(lowered[33:35], 16), int(lowered[35:], 16)
            if number < count or number == count == 0:
                return cls(lowered[:32], number, count)
        raise ValueError(f"failed to parse tenant_shard_id: {text}")

    @classmethod
    def shards_of(cls, tenant_id: str, shard_count: int) -> list[TenantShardId]:
        """Every shard of a tenant in shard order: one (unsharded) for count 0."""
        return [cls(tenant_id, number, shard_count) for number in range(max(shard_count, 1))]

    @property
    def is_unsharded(self) -> bool:
        return self.shard_count == 0

    @property
    def shard_index(self) -> str:
        return shard_index(self.shard_number, self.shard_count)

    def __str__(self) -> str:
        if self.shard_count == 0:
            return self.tenant_id
        return f"{self.tenant_id}-{self.shard_index}"


def shard_suffix(shard_index: str | None) -> str:
    """S3 path suffix for a layer's ShardIndex: "" for unsharded ("0000" or absent), else "-NNCC"."""
    if not shard_index or shard_index == "0000":
        return ""
    return f"-{shard_index}"
