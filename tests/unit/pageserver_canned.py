"""Canned pageserver responses in the upstream shapes (neon `pageserver/src/http/routes.rs`,
`libs/pageserver_api/src/models.rs`), for module tests."""

from __future__ import annotations

import copy

from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID, TIMELINE_ID, TIMELINE_ID_2


def location(mode="AttachedSingle", generation=3, tenant_conf=None, shard_number=0, shard_count=0, stripe=2048):
    return {
        "mode": mode,
        "generation": generation if mode.startswith("Attached") else None,
        "secondary_conf": {"warm": True} if mode == "Secondary" else None,
        "shard_number": shard_number,
        "shard_count": shard_count,
        "shard_stripe_size": stripe,
        "tenant_conf": copy.deepcopy(tenant_conf or {}),
    }


def tenant_details(tsid=TENANT_ID, slug="Active", generation=3, data=None):
    state = {"slug": slug}
    if data is not None:
        state["data"] = data
    return {
        "id": tsid,
        "state": state,
        "current_physical_size": 1234567,
        "attachment_status": {"slug": "attached"} if slug == "Active" else {"slug": "maybe"},
        "generation": generation,
        "walredo": None,
        "timelines": [TIMELINE_ID, TIMELINE_ID_2],
    }


def timeline_info(timeline_id=TIMELINE_ID, last_record_lsn="0/16960E8", tsid=TENANT_ID, ancestor=None):
    return {
        "tenant_id": tsid,
        "timeline_id": timeline_id,
        "ancestor_timeline_id": ancestor,
        "ancestor_lsn": "0/1000000" if ancestor else None,
        "last_record_lsn": last_record_lsn,
        "prev_record_lsn": "0/16960B0",
        "disk_consistent_lsn": "0/1500000",
        "remote_consistent_lsn": "0/1400000",
        "remote_consistent_lsn_visible": "0/1400000",
        "initdb_lsn": "0/14EE150",
        "applied_gc_cutoff_lsn": "0/0",
        "min_readable_lsn": "0/14EE150",
        "current_logical_size": 8192,
        "current_logical_size_is_accurate": True,
        "current_physical_size": 24576,
        "wal_source_connstr": "postgresql://no_user@127.0.0.1:5454/",
        "last_received_msg_lsn": "0/16960E8",
        "last_received_msg_ts": 1708509779000000,
        "pg_version": 16,
        "state": "Active",
        "walreceiver_status": "streaming",
    }


def tenant_config(overrides=None):
    overrides = copy.deepcopy(overrides or {})
    effective = {
        "checkpoint_distance": 268435456,
        "compaction_period": "20s",
        "gc_period": "1h",
        "gc_horizon": 67108864,
        "pitr_interval": "7days",
        "heatmap_period": "0s",
    }
    effective.update(overrides)
    return {"tenant_specific_overrides": overrides, "effective_config": effective}


UTILIZATION = {
    "disk_usage_bytes": 1048576,
    "free_space_bytes": 104857600,
    "disk_wanted_bytes": 24576,
    "disk_usable_pct": 100,
    "shard_count": 2,
    "max_shard_count": 2500,
    "utilization_score": 800,
    "captured_at": "2024-02-21T10:02:59.000Z",
}


def progress(downloaded, total, mtime="2024-02-21T10:02:59.000Z", layer_bytes=8192):
    return {
        "heatmap_mtime": mtime,
        "layers_downloaded": downloaded,
        "layers_total": total,
        "bytes_downloaded": downloaded * layer_bytes,
        "bytes_total": total * layer_bytes,
    }
