# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Thin wrappers over the Neon pageserver management API (neon `pageserver/src/http/routes.rs`).

Internal to neonops.storage; may change in any release. Every function takes a ``NeonClient``, validates the
ids it puts into the path before sending, and returns plain data; HTTP errors surface as ``NeonAPIError``.
"""

from __future__ import annotations

import re

from ansible_collections.neonops.storage.plugins.module_utils._echo import echo
from ansible_collections.neonops.storage.plugins.module_utils._humantime import DURATION_KEYS, parse_duration
from ansible_collections.neonops.storage.plugins.module_utils._ids import (
    TenantShardId,
    validate_tenant_id,
    validate_timeline_id,
)
from ansible_collections.neonops.storage.plugins.module_utils._lsn import LSN_FIELDS, Lsn, lsn_fields_as_int

LOCATION_MODES = ("AttachedSingle", "AttachedMulti", "AttachedStale", "Secondary", "Detached")
ATTACHED_MODES = ("AttachedSingle", "AttachedMulti", "AttachedStale")
# Keys of TenantLocationConfigRequest besides tenant_conf; the server rejects unknown top-level keys.
LOCATION_FIELDS = ("mode", "generation", "secondary_conf", "shard_number", "shard_count", "shard_stripe_size")


def _tsid(value) -> str:
    return str(TenantShardId.parse(value))


# ---- what the routes answer: a problem text when a body is not that (the client raises UnexpectedResponse) ----


def _lsn_problem(info: dict, fields=LSN_FIELDS):
    for field in fields:
        value = info.get(field)
        if value is not None:
            try:
                Lsn.parse(value)
            except ValueError as exc:
                return f"{field}: {exc}"
    return None


def _timeline_problem(info):
    if not isinstance(info, dict):
        return f"expected a TimelineInfo object, got {echo(info)}"
    try:
        validate_timeline_id(info.get("timeline_id"))
        if info.get("ancestor_timeline_id") is not None:
            validate_timeline_id(info["ancestor_timeline_id"], "ancestor_timeline_id")
    except ValueError as exc:
        return f"not a TimelineInfo: {exc}"
    if info.get("last_record_lsn") is None:
        return "not a TimelineInfo: no last_record_lsn"
    return _lsn_problem(info)


def _timelines_problem(data):
    for info in data:
        problem = _timeline_problem(info)
        if problem:
            return problem
    return None


def _location_problem(config):
    """A LocationConfig (pageserver/src/http/routes.rs answers with libs/pageserver_api/src/models.rs types)."""
    if config is None:
        return None
    if not isinstance(config, dict) or config.get("mode") not in LOCATION_MODES:
        return f"expected a LocationConfig with a mode of {', '.join(LOCATION_MODES)}, got {echo(config)}"
    if config.get("tenant_conf") is not None and not isinstance(config["tenant_conf"], dict):
        return f"tenant_conf: expected an object, got {echo(config['tenant_conf'])}"
    return None


def _location_list_problem(data):
    shards = data.get("tenant_shards")
    if not isinstance(shards, list):
        return f"tenant_shards: expected an array, got {echo(shards)}"
    for entry in shards:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            return f"tenant_shards: expected [tenant_shard_id, LocationConfig] pairs, got {echo(entry)}"
        problem = _location_problem(entry[1])
        if problem:
            return problem
    return None


def _tenant_problem(data):
    if not isinstance(data.get("state", {}), dict):
        return f"state: expected an object such as {{'slug': 'Active'}}, got {echo(data.get('state'))}"
    return None


def _tenants_problem(data):
    for item in data:
        if not isinstance(item, dict):
            return f"expected TenantInfo objects, got {echo(item)}"
    return None


def _config_problem(data):
    for key in ("tenant_specific_overrides", "effective_config"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            return f"{key}: expected an object, got {echo(data[key])}"
    return None


def _progress_problem(data):
    for key in ("layers_downloaded", "layers_total", "bytes_downloaded", "bytes_total"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{key}: expected an integer, got {echo(value)}"
    return None


# ---- the routes ----------------------------------------------------------------------------------------------


def status(client) -> dict:
    """``GET /v1/status`` → ``{"id": node_id}``."""
    return client.get("/v1/status", returns=dict).data


def utilization(client) -> dict:
    """``GET /v1/utilization`` → PageserverUtilization."""
    return client.get("/v1/utilization", returns=dict).data


def location_configs(client) -> dict:
    """``GET /v1/location_config`` → ``{tsid: LocationConfig | None}`` (None = slot in progress)."""
    data = client.get("/v1/location_config", returns=dict, check=_location_list_problem).data
    return dict(data["tenant_shards"])


def location_config(client, tenant_shard_id):
    """``GET /v1/location_config/{tsid}`` → LocationConfig, or None while the slot is in progress; 404 if absent."""
    path = f"/v1/location_config/{_tsid(tenant_shard_id)}"
    return client.get(path, returns=(dict, type(None)), check=_location_problem).data


def put_location_config(client, tenant_shard_id, config: dict, flush_ms=None, lazy=None, timeout=None):
    """``PUT /v1/tenant/{tsid}/location_config``; returns the response (None for Detached)."""
    body = {key: config[key] for key in LOCATION_FIELDS if key in config}
    body["tenant_conf"] = dict(config.get("tenant_conf") or {})
    params = {"flush_ms": flush_ms, "lazy": lazy}
    return client.put(
        f"/v1/tenant/{_tsid(tenant_shard_id)}/location_config",
        params=params,
        json=body,
        timeout=timeout,
        returns=(dict, type(None)),
    ).data


def tenants(client) -> list:
    """``GET /v1/tenant`` → attached shards (TenantInfo list)."""
    return client.get("/v1/tenant", returns=list, check=_tenants_problem).data


def tenant(client, tenant_shard_id) -> dict:
    """``GET /v1/tenant/{tsid}`` → TenantDetails (404 when absent or Secondary)."""
    return client.get(f"/v1/tenant/{_tsid(tenant_shard_id)}", returns=dict, check=_tenant_problem).data


def timelines(client, tenant_shard_id) -> list:
    """``GET /v1/tenant/{tsid}/timeline`` → TimelineInfo list."""
    path = f"/v1/tenant/{_tsid(tenant_shard_id)}/timeline"
    return client.get(path, returns=list, check=_timelines_problem).data


def timeline(client, tenant_shard_id, timeline_id) -> dict:
    """``GET /v1/tenant/{tsid}/timeline/{tl}`` → TimelineInfo; 404 when absent or the shard is not attached."""
    path = f"/v1/tenant/{_tsid(tenant_shard_id)}/timeline/{validate_timeline_id(timeline_id)}"
    return client.get(path, returns=dict, check=_timeline_problem).data


def create_timeline(
    client, tenant_shard_id, timeline_id, ancestor_timeline_id=None, ancestor_start_lsn=None, pg_version=None
) -> dict:
    """``POST /v1/tenant/{tsid}/timeline`` → TimelineInfo (201, also when an identical timeline exists).

    A branch when ``ancestor_timeline_id`` is given, else a bootstrap (root) timeline. Never retried by the
    client: 409 (exists with other parameters) and 429 (being created) surface as ``NeonAPIError``.
    """
    body: dict[str, object] = {"new_timeline_id": validate_timeline_id(timeline_id)}
    if ancestor_timeline_id is not None:
        body["ancestor_timeline_id"] = validate_timeline_id(ancestor_timeline_id, "ancestor_timeline_id")
        if ancestor_start_lsn is not None:
            body["ancestor_start_lsn"] = str(Lsn.parse(ancestor_start_lsn))
    elif ancestor_start_lsn is not None:
        raise ValueError("ancestor_start_lsn: only valid together with ancestor_timeline_id")
    if pg_version is not None:
        if isinstance(pg_version, bool) or not isinstance(pg_version, int):
            raise ValueError(f"pg_version: expected an integer, got {echo(pg_version)}")
        body["pg_version"] = pg_version
    path = f"/v1/tenant/{_tsid(tenant_shard_id)}/timeline"
    return client.post(path, json=body, expected=(200, 201), returns=dict, check=_timeline_problem).data


def delete_timeline(client, tenant_shard_id, timeline_id) -> int:
    """``DELETE /v1/tenant/{tsid}/timeline/{tl}`` → 202 (started); poll ``timeline()`` until 404 to see it done."""
    path = f"/v1/tenant/{_tsid(tenant_shard_id)}/timeline/{validate_timeline_id(timeline_id)}"
    return client.delete(path, expected=(200, 202)).status


def tenant_config(client, tenant_shard_id) -> dict:
    """``GET /v1/tenant/{tsid}/config`` → ``{"tenant_specific_overrides", "effective_config"}``."""
    return client.get(f"/v1/tenant/{_tsid(tenant_shard_id)}/config", returns=dict, check=_config_problem).data


def put_tenant_config(client, tenant_id, overrides: dict):
    """``PUT /v1/tenant/config``: replace the whole override set of an unsharded tenant."""
    body = {"tenant_id": validate_tenant_id(tenant_id), **overrides}
    return client.put("/v1/tenant/config", json=body).data


def patch_tenant_config(client, tenant_id, changes: dict):
    """``PATCH /v1/tenant/config``: upsert keys; a ``None`` value removes the override."""
    body = {"tenant_id": validate_tenant_id(tenant_id), **changes}
    return client.patch("/v1/tenant/config", json=body).data


def heatmap_upload(client, tenant_shard_id):
    """``POST /v1/tenant/{tsid}/heatmap_upload`` → null (404 when not attached here)."""
    return client.post(f"/v1/tenant/{_tsid(tenant_shard_id)}/heatmap_upload", returns=type(None)).data


def secondary_download(client, tenant_shard_id, wait_ms=None, timeout=None):
    """``POST …/secondary/download?wait_ms=`` → ``(status, SecondaryProgress)``; 200 done, 202 still running."""
    response = client.post(
        f"/v1/tenant/{_tsid(tenant_shard_id)}/secondary/download",
        params={"wait_ms": wait_ms},
        expected=(200, 202),
        timeout=timeout,
        returns=dict,
        check=_progress_problem,
    )
    return response.status, response.data


def secondary_status(client, tenant_shard_id) -> dict:
    """``GET …/secondary/status`` → SecondaryProgress (404 when no Secondary slot here)."""
    path = f"/v1/tenant/{_tsid(tenant_shard_id)}/secondary/status"
    return client.get(path, returns=dict, check=_progress_problem).data


def wait_lsn(client, tenant_shard_id, lsns: dict, timeout_s: float, http_timeout=None) -> int:
    """``POST …/wait_lsn``: 200 all reached, 202 timed out, 404 none of the timelines exist."""
    body: dict[str, object] = {validate_timeline_id(tl): str(Lsn.parse(lsn)) for tl, lsn in lsns.items()}
    whole = int(timeout_s)
    body["timeout"] = {"secs": whole, "nanos": int(round((timeout_s - whole) * 1e9))}
    response = client.post(
        f"/v1/tenant/{_tsid(tenant_shard_id)}/wait_lsn",
        json=body,
        expected=(200, 202, 404),
        timeout=http_timeout,
        mutating=False,
    )
    return response.status


# ---- helpers shared by the modules -------------------------------------------------------------------------


def timeline_with_ints(info: dict) -> dict:
    """A TimelineInfo with ``<field>_int`` next to every LSN field."""
    return lsn_fields_as_int(info)


def timeline_mismatches(info: dict, ancestor_timeline_id=None, ancestor_start_lsn=None, pg_version=None) -> list:
    """What differs between an existing TimelineInfo and the wanted creation parameters, one text per field.

    The ancestor is always compared (``None`` = a root timeline), the branch LSN only when given, the
    Postgres version only for a root timeline (the server ignores it for branches, which inherit it).
    """
    differences = []
    have_ancestor = info.get("ancestor_timeline_id")
    have_ancestor = have_ancestor.lower() if isinstance(have_ancestor, str) else None
    want_ancestor = validate_timeline_id(ancestor_timeline_id, "ancestor_timeline_id") if ancestor_timeline_id else None
    if have_ancestor != want_ancestor:
        differences.append(
            f"ancestor_timeline_id: wanted {want_ancestor or 'none (a root timeline)'}, "
            f"the timeline has {have_ancestor or 'none (a root timeline)'}"
        )
    elif want_ancestor is not None and ancestor_start_lsn is not None:
        wanted = Lsn.parse(ancestor_start_lsn)
        # The server reports a zero branch point as null.
        have = Lsn.parse(info["ancestor_lsn"]) if info.get("ancestor_lsn") else Lsn.INVALID
        if wanted != have:
            differences.append(f"ancestor_lsn: wanted {wanted}, the timeline branches at {have}")
    if want_ancestor is None and pg_version is not None and info.get("pg_version") != pg_version:
        differences.append(f"pg_version: wanted {pg_version}, the timeline has {info.get('pg_version')}")
    return differences


def overrides_equal(a: dict | None, b: dict | None) -> bool:
    """Compare tenant-config override sets; durations compare by value ("60m" == "1h", as the server renders)."""
    a, b = a or {}, b or {}
    if set(a) != set(b):
        return False
    for key, value in a.items():
        other = b[key]
        if key in DURATION_KEYS and isinstance(value, str) and isinstance(other, str):
            try:
                if parse_duration(value, key) == parse_duration(other, key):
                    continue
            except ValueError:
                pass
        if value != other:
            return False
    return True


# Tenant config keys are the snake_case field names of TenantConfig (libs/pageserver_api/src/models.rs).
_CONFIG_KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")


def validate_overrides(overrides: dict, field: str = "tenant_conf") -> None:
    """Raise ``ValueError`` naming ``field`` and the key when a key is not a config key name, or a known
    duration key carries a non-humantime value."""
    if not isinstance(overrides, dict):
        raise ValueError(f"{field}: expected a dict of tenant config keys and values, got {echo(overrides)}")
    for key, value in overrides.items():
        if not isinstance(key, str) or not _CONFIG_KEY.fullmatch(key):
            raise ValueError(f"{field}: {echo(key)} is not a tenant config key (lowercase letters, digits and '_')")
        if key in DURATION_KEYS and value is not None:
            parse_duration(value, f"{field}.{key}")
