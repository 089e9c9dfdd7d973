# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Thin wrappers over the Neon safekeeper HTTP API.

Internal to neonops.storage; may change in any release. Safekeepers are not sharded: paths take the plain
tenant id, never a tenant shard id.
"""

from __future__ import annotations

from urllib.parse import quote

from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn

# LSN fields of a TimelineStatus (neon `libs/safekeeper_api/src/models.rs`).
TIMELINE_STATUS_LSN_FIELDS = (
    "flush_lsn",
    "commit_lsn",
    "backup_lsn",
    "peer_horizon_lsn",
    "remote_consistent_lsn",
    "timeline_start_lsn",
    "local_start_lsn",
)


def _timeline_status_problem(data):
    for field in TIMELINE_STATUS_LSN_FIELDS:
        if data.get(field) is not None:
            try:
                Lsn.parse(data[field])
            except ValueError as exc:
                return f"{field}: {exc}"
    return None


def status(client) -> dict:
    """``GET /v1/status`` → ``{"id": node_id}``."""
    return client.get("/v1/status", returns=dict).data


def timeline_status(client, tenant_id: str, timeline_id: str) -> dict:
    """``GET /v1/tenant/{tenant_id}/timeline/{timeline_id}`` → TimelineStatus (404 when unknown here)."""
    path = f"/v1/tenant/{quote(str(tenant_id), safe='')}/timeline/{quote(str(timeline_id), safe='')}"
    return client.get(path, returns=dict, check=_timeline_status_problem).data
