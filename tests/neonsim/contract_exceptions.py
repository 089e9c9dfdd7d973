"""Every place where upstream's code differs from its OpenAPI files, each with its reason. Contract tests patch
the spec with these before validating the simulator's responses; nothing else may relax a contract.

The specs are neon's `pageserver/src/http/openapi_spec.yml`, `safekeeper/src/http/openapi_spec.yaml` and
`compute_tools/src/http/openapi_spec.yaml` (the tests read copies from `../shared/reference/neon/`). Each reason
starts with the neon source file that shows what the code does.

Shapes:
- schema exceptions: (spec file, schema name, property or None, JSON-schema override or None, reason).
  property None = the whole named schema is replaced; override None = documentation only (nothing to patch,
  the spec already accepts the code's output, e.g. extra fields).
- response exceptions: (spec file, METHOD, spec path, status, JSON-schema of the real body, reason).
- undocumented routes: (METHOD, path, reason): served as upstream's router does, absent from the spec.
"""

from __future__ import annotations

PAGESERVER_SPEC = "pageserver-openapi.yml"
SAFEKEEPER_SPEC = "safekeeper-openapi.yaml"
COMPUTE_SPEC = "compute-ctl-openapi.yaml"

NULLABLE_STRING = {"type": ["string", "null"]}

PAGESERVER_SCHEMA_EXCEPTIONS = [
    (
        PAGESERVER_SPEC,
        "TenantInfo",
        "attachment_status",
        {
            "type": "object",
            "required": ["slug"],
            "properties": {
                "slug": {"type": "string", "enum": ["maybe", "attached", "failed"]},
                "data": {"type": "object", "properties": {"reason": {"type": "string"}}},
            },
        },
        "libs/pageserver_api/src/models.rs: `data` is omitted for the unit variants maybe/attached (serde "
        "adjacently tagged); the spec marks it required",
    ),
    (
        PAGESERVER_SPEC,
        "TenantInfo",
        "current_physical_size",
        {"type": ["integer", "null"]},
        "pageserver/src/http/routes.rs: the list form (GET /v1/tenant) reports current_physical_size as null",
    ),
    (
        PAGESERVER_SPEC,
        "TenantInfo",
        None,
        None,
        "libs/pageserver_api/src/models.rs: TenantInfo also carries `state` (adjacently tagged TenantState) and "
        "`generation`; extra fields, so the spec schema accepts them unpatched",
    ),
    *[
        (
            PAGESERVER_SPEC,
            "TimelineInfo",
            prop,
            NULLABLE_STRING,
            f"libs/pageserver_api/src/models.rs: `{prop}` is an Option in TimelineInfo and serialises as null "
            "when unset (ancestor_lsn is null when 0); the spec declares a plain string",
        )
        for prop in (
            "ancestor_timeline_id",
            "ancestor_lsn",
            "prev_record_lsn",
            "wal_source_connstr",
            "last_received_msg_lsn",
        )  # fmt: skip
    ],
    (
        PAGESERVER_SPEC,
        "TimelineInfo",
        "last_received_msg_ts",
        {"type": ["integer", "null"]},
        "libs/pageserver_api/src/models.rs: last_received_msg_ts is null until the walreceiver got a message",
    ),
    (
        PAGESERVER_SPEC,
        "TimelineInfo",
        "state",
        {"type": ["string", "object"]},
        "libs/pageserver_api/src/models.rs: TimelineState is externally tagged: unit variants are strings, Broken is "
        '{"Broken": {"reason", "backtrace"}}',
    ),
    (
        PAGESERVER_SPEC,
        "SecondaryProgress",
        "heatmap_mtime",
        NULLABLE_STRING,
        "libs/pageserver_api/src/models.rs: SecondaryProgress.heatmap_mtime is an Option: null (with 200 and 0/0 "
        "counts) when no heatmap exists yet",
    ),
    (
        PAGESERVER_SPEC,
        "TenantConfig",
        "compaction_threshold",
        {"type": "integer"},
        "libs/pageserver_api/src/models.rs: compaction_threshold is a number (usize) in TenantConfig; the spec "
        "says string",
    ),
    (
        PAGESERVER_SPEC,
        "TenantConfig",
        "compaction_upper_limit",
        {"type": "integer"},
        "libs/pageserver_api/src/models.rs: compaction_upper_limit is a number (usize) in TenantConfig; the spec "
        "says string",
    ),
    (
        PAGESERVER_SPEC,
        "TenantLocationConfigRequest",
        None,
        None,
        "libs/pageserver_api/src/models.rs: the request also has shard_number, shard_count, shard_stripe_size; "
        "tenant_conf is required and unknown top-level keys are rejected (request side only, not validated here)",
    ),
    (
        PAGESERVER_SPEC,
        "PageserverUtilization",
        None,
        None,
        "pageserver/src/http/routes.rs (/v1/utilization): the response has 8 fields (disk_wanted_bytes, "
        "disk_usable_pct, shard_count, max_shard_count, captured_at besides the spec's 3); extra fields pass "
        "unpatched",
    ),
]

PAGESERVER_RESPONSE_EXCEPTIONS = [
    (
        PAGESERVER_SPEC,
        "PUT",
        "/v1/tenant/{tenant_shard_id}/location_config",
        200,
        {"anyOf": [{"$ref": "#/components/schemas/TenantLocationConfigResponse"}, {"type": "null"}]},
        "pageserver/src/http/routes.rs: mode Detached answers 200 with JSON null, not a TenantLocationConfigResponse",
    ),
    (
        PAGESERVER_SPEC,
        "PUT",
        "/v1/tenant/config",
        200,
        {"type": "null"},
        "pageserver/src/http/routes.rs: PUT /v1/tenant/config returns null, not a TenantInfo array",
    ),
    (
        PAGESERVER_SPEC,
        "PATCH",
        "/v1/tenant/config",
        200,
        {"type": "null"},
        "pageserver/src/http/routes.rs: PATCH /v1/tenant/config returns null, not a TenantInfo array",
    ),
    (
        PAGESERVER_SPEC,
        "DELETE",
        "/v1/tenant/{tenant_id}/timeline/{timeline_id}",
        202,
        {"type": "null"},
        "pageserver/src/http/routes.rs: deletion answers 202 null while in progress; the spec only lists 404/409/412",
    ),
    (
        PAGESERVER_SPEC,
        "PUT",
        "/v1/tenant/{tenant_id}/timeline/{timeline_id}/do_gc",
        200,
        {"type": "object", "required": ["layers_total", "layers_removed"]},
        "pageserver/src/http/routes.rs: the handler returns a GcResult object (the test fixture "
        "test_runner/fixtures/pageserver/http.py reads it as a dict); the spec says string",
    ),
]

# The reasons below cite upstream's router, `make_router` in pageserver/src/http/routes.rs.
PAGESERVER_UNDOCUMENTED_ROUTES = [
    ("POST", "/v1/tenant", "routes.rs: listed in the spec but removed upstream; the router answers 404"),
    ("POST", "/v1/tenant/{tenant_shard_id}/wait_lsn", "routes.rs: served, not in the spec"),
    ("GET", "/v1/tenant/{tenant_shard_id}/secondary/status", "routes.rs: served, not in the spec"),
    ("POST", "/v1/tenant/{tenant_shard_id}/reset", "routes.rs: served, not in the spec"),
    ("GET", "/v1/tenant/{tenant_id}/scan_remote_storage", "routes.rs: served, not in the spec"),
    ("PUT", "/v1/deletion_queue/flush", "routes.rs: served, not in the spec"),
    ("GET", "/v1/location_config", "routes.rs: served, not in the spec"),
    ("GET", "/v1/location_config/{tenant_shard_id}", "routes.rs: served, not in the spec"),
]

SAFEKEEPER_COMPUTE_EXCEPTIONS = [
    (
        COMPUTE_SPEC,
        "ComputeState",
        prop,
        NULLABLE_STRING,
        f"libs/compute_api/src/responses.rs: compute_ctl serialises `{prop}` as null when unset (Option<…> in "
        "ComputeStatusResponse); the OpenAPI file declares a plain string",
    )
    for prop in ("tenant", "timeline", "last_active", "error")
]

# --- safekeeper / compute_ctl (neonsim part 3; appended, owned by the safekeeper/compute engineer) ---

SAFEKEEPER_COMPUTE_EXCEPTIONS += [
    (
        SAFEKEEPER_SPEC,
        "TimelineStatus",
        None,
        None,
        "libs/safekeeper_api/src/models.rs: TimelineStatus also carries mconf, pg_info, peers, walsenders "
        '(externally tagged, feedback {"Pageserver": {...}}) and walreceivers; extra fields, so the spec schema '
        "accepts them unpatched",
    ),
    (
        COMPUTE_SPEC,
        "ComputeSchema",
        None,
        None,
        "libs/compute_api/src/requests.rs: the /configure body (ConfigurationRequest) also needs "
        "compute_ctl_config ({jwks, tls}); serde rejects a request without it with 400 (request side only, not "
        "validated here)",
    ),
]

SAFEKEEPER_COMPUTE_RESPONSE_EXCEPTIONS = [
    (
        SAFEKEEPER_SPEC,
        "POST",
        "/v1/tenant/timeline",
        200,
        {"type": "null"},
        "safekeeper/src/http/routes.rs: timeline creation is POST /v1/tenant/timeline with tenant_id, "
        "timeline_id, mconf, pg_version, start_lsn in the body and answers 200 null (idempotent); the spec's "
        "POST /v1/tenant/{tenant_id}/timeline with 201 and peer_ids is stale",
    ),
]

# The reasons below cite upstream's safekeeper router in safekeeper/src/http/routes.rs.
SAFEKEEPER_COMPUTE_UNDOCUMENTED_ROUTES = [
    ("POST", "/v1/tenant/timeline", "routes.rs: the create route of current code; not in the spec"),
    ("GET", "/v1/tenant/timeline", "routes.rs: lists {tenant_id, timeline_id} pairs; not in the spec"),
    ("GET", "/v1/utilization", "routes.rs: {timeline_count}; not in the spec"),
]
