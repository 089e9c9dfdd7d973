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


@dataclass(frozen=True)
class TenantShardId:
    tenant_id: str
    shard_number: int = 0
    shard_count: int = 0

    @classmethod
    def parse(cls, text: str) -> TenantShardId:
        """32 hex -> unsharded; `{tenant}-{NN}{CC}` -> sharded (upstream `libs/utils/src/shard.rs`). ValueError
        otherwise."""
        if len(text) == 32 and _HEX32.match(text.lower()):
            return cls(text.lower())
        if len(text) == 37 and text[32] == "-" and _HEX32.match(text[:32].lower()):
            suffix = text[33:].lower()
            if _SHARD_SUFFIX.match(suffix):
                return cls(text[:32].lower(), int(suffix[:2], 16), int(suffix[2:], 16))
        raise ValueError(f"failed to parse tenant_shard_id: {text}")

    @property
    def is_unsharded(self) -> bool:
        return self.shard_count == 0

    @property
    def shard_index(self) -> str:
        return f"{self.shard_number:02x}{self.shard_count:02x}"

    def __str__(self) -> str:
        if self.shard_count == 0:
            return self.tenant_id
        return f"{self.tenant_id}-{self.shard_index}"


def shard_suffix(shard_index: str | None) -> str:
    """S3 path suffix for a layer's ShardIndex: "" for unsharded ("0000" or absent), else "-NNCC"."""
    if not shard_index or shard_index == "0000":
        return ""
    return f"-{shard_index}"
