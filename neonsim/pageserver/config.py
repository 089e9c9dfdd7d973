"""LocationConfig request validation and tenant config (overrides + effective): upstream
`libs/pageserver_api/src/models.rs` (TenantLocationConfigRequest, TenantConfig)."""

from __future__ import annotations

import re

MODES = ("AttachedSingle", "AttachedMulti", "AttachedStale", "Secondary", "Detached")
ATTACHED_MODES = ("AttachedSingle", "AttachedMulti", "AttachedStale")
LOCATION_FIELDS = {
    "mode",
    "generation",
    "secondary_conf",
    "shard_number",
    "shard_count",
    "shard_stripe_size",
    "tenant_conf",
}

# Upstream pageserver defaults for keys the fleet's tenant_defaults does not set (`libs/pageserver_api/src/config.rs`).
UPSTREAM_DEFAULTS = {
    "checkpoint_distance": 268435456,
    "checkpoint_timeout": "10m",
    "compaction_target_size": 134217728,
    "compaction_period": "20s",
    "compaction_threshold": 10,
    "compaction_upper_limit": 20,
    "compaction_algorithm": {"kind": "legacy"},
    "l0_flush_delay_threshold": None,
    "l0_flush_stall_threshold": None,
    "gc_horizon": 67108864,
    "gc_period": "1h",
    "image_creation_threshold": 3,
    "pitr_interval": "7days",
    "walreceiver_connect_timeout": "10s",
    "lagging_wal_timeout": "10s",
    "max_lsn_wal_lag": 1073741824,
    "eviction_policy": {"kind": "NoEviction"},
    "min_resident_size_override": None,
    "evictions_low_residence_duration_metric_threshold": "24h",
    "heatmap_period": "0s",
    "lazy_slru_download": False,
    "lsn_lease_length": "10m",
    "lsn_lease_length_for_ts": "1m",
    "timeline_offloading": True,
    "gc_compaction_enabled": True,
}

_HUMANTIME_UNITS = {
    "ns": 1e-9, "nsec": 1e-9, "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_HUMANTIME_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")


class BadRequest(ValueError):
    """400 with this message."""


def parse_duration(text) -> float:
    """humantime string -> seconds ("0s", "20 s", "1 hr", "7days", "1h 30m")."""
    if isinstance(text, int | float):
        return float(text)
    s = str(text).strip().lower()
    pos, total = 0, 0.0
    for m in _HUMANTIME_PART.finditer(s):
        if s[pos : m.start()].strip():
            raise ValueError(f"invalid duration: {text!r}")
        unit = _HUMANTIME_UNITS.get(m.group(2))
        if unit is None:
            raise ValueError(f"invalid duration unit in {text!r}")
        total += float(m.group(1)) * unit
        pos = m.end()
    if pos == 0 or s[pos:].strip():
        raise ValueError(f"invalid duration: {text!r}")
    return total


def effective_config(defaults: dict, overrides: dict) -> dict:
    eff = dict(UPSTREAM_DEFAULTS)
    eff.update(defaults or {})
    eff.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return eff


def validate_tenant_conf(conf) -> dict:
    if not isinstance(conf, dict):
        raise BadRequest("Failed to parse json request: tenant_conf: invalid type, expected a map")
    for key in ("checkpoint_timeout", "compaction_period", "gc_period", "pitr_interval", "heatmap_period",
                "lsn_lease_length", "walreceiver_connect_timeout", "lagging_wal_timeout"):  # fmt: skip
        if conf.get(key) is not None:
            try:
                parse_duration(conf[key])
            except ValueError as exc:
                raise BadRequest(f"Failed to parse json request: {key}: {exc}") from None
    for key in ("checkpoint_distance", "gc_horizon", "compaction_threshold", "image_creation_threshold"):
        value = conf.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise BadRequest(f"Failed to parse json request: {key}: invalid value {value!r}, expected u64")
    # Unknown keys inside tenant_conf are kept (upstream ignores them rather than rejecting: TenantConfig in
    # `libs/pageserver_api/src/models.rs` does not deny unknown fields).
    return {k: v for k, v in conf.items() if v is not None}


def _u(body: dict, key: str, bits: int) -> int:
    value = body.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 1 << bits:
        raise BadRequest(f"Failed to parse json request: {key}: invalid value {value!r}, expected u{bits}")
    return value


def parse_location_config(body) -> dict:
    """Validate a TenantLocationConfigRequest body; returns the normalized LocationConfig dict."""
    if body is None:
        raise BadRequest("missing request body")
    if not isinstance(body, dict):
        raise BadRequest("Failed to parse json request: invalid type, expected struct TenantLocationConfigRequest")
    unknown = sorted(set(body) - LOCATION_FIELDS)
    if unknown:
        raise BadRequest(f"Failed to parse json request: unknown field `{unknown[0]}`")
    mode = body.get("mode")
    if mode is None:
        raise BadRequest("Failed to parse json request: missing field `mode`")
    if mode not in MODES:
        raise BadRequest(f"Failed to parse json request: unknown variant `{mode}`, expected one of {', '.join(MODES)}")
    if "tenant_conf" not in body:
        raise BadRequest("Failed to parse json request: missing field `tenant_conf`")
    tenant_conf = validate_tenant_conf(body["tenant_conf"])
    generation = body.get("generation")
    if generation is not None and (
        not isinstance(generation, int) or isinstance(generation, bool) or not 0 <= generation < 1 << 32
    ):
        raise BadRequest(f"Failed to parse json request: generation: invalid value {generation!r}, expected u32")
    secondary_conf = body.get("secondary_conf")
    if secondary_conf is not None:
        if not isinstance(secondary_conf, dict) or not isinstance(secondary_conf.get("warm", False), bool):
            raise BadRequest("Failed to parse json request: secondary_conf: invalid type")
        secondary_conf = {"warm": bool(secondary_conf.get("warm", False))}
    shard_number = _u(body, "shard_number", 8)
    shard_count = _u(body, "shard_count", 8)
    stripe = _u(body, "shard_stripe_size", 32)
    if shard_count and (shard_number >= shard_count or stripe == 0):
        raise BadRequest(f"Invalid shard identity: number {shard_number} count {shard_count} stripe {stripe}")
    if mode in ATTACHED_MODES and generation is None:
        raise BadRequest("Generation must be set when attaching")
    if mode == "Secondary" and generation is not None:
        raise BadRequest("Condition failed: `req.config.generation.is_none()`")
    return {
        "mode": mode,
        "generation": generation if mode in ATTACHED_MODES else None,
        "secondary_conf": (secondary_conf or {"warm": False}) if mode == "Secondary" else None,
        "shard_number": shard_number,
        "shard_count": shard_count,
        "shard_stripe_size": stripe,
        "tenant_conf": tenant_conf,
    }
