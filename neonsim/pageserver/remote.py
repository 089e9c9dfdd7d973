"""Remote storage (S3 via boto3) for one pageserver: key layout, index_part, heatmaps (upstream
`pageserver/src/tenant/remote_timeline_client.rs`).

boto3 is synchronous; every call runs in a worker thread so the node's event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import re

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from neonsim.lsn import format_lsn
from neonsim.sharding import shard_suffix

INDEX_PART_VERSION = 15
_INDEX_RE = re.compile(r"index_part\.json(?:-([0-9a-f]{8}))?$")


class RemoteNotFound(Exception):
    """The object does not exist in remote storage."""


def make_s3_client(s3_conf: dict):
    return boto3.client(
        "s3",
        endpoint_url=s3_conf.get("endpoint_url") or None,
        region_name=s3_conf.get("region", "us-east-1"),
        aws_access_key_id=s3_conf.get("access_key", "testing"),
        aws_secret_access_key=s3_conf.get("secret_key", "testing"),
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )


def normalize_prefix(prefix: str | None) -> str:
    prefix = (prefix or "").strip("/")
    return f"{prefix}/" if prefix else ""


def tenant_prefix(prefix: str, tsid: str) -> str:
    return f"{prefix}tenants/{tsid}/"


def timeline_prefix(prefix: str, tsid: str, timeline_id: str) -> str:
    return f"{prefix}tenants/{tsid}/timelines/{timeline_id}/"


def index_key(prefix: str, tsid: str, timeline_id: str, generation: int) -> str:
    return f"{timeline_prefix(prefix, tsid, timeline_id)}index_part.json-{generation:08x}"


def layer_key(prefix: str, tenant_id: str, shard: str | None, timeline_id: str, name: str, generation: int) -> str:
    return f"{prefix}tenants/{tenant_id}{shard_suffix(shard)}/timelines/{timeline_id}/{name}-{generation:08x}"


def heatmap_key(prefix: str, tsid: str) -> str:
    return f"{prefix}tenants/{tsid}/heatmap-v1.json"


def index_generation(key: str) -> int | None:
    """Generation suffix of an index_part key; -1 for the legacy suffix-less key; None if not an index."""
    m = _INDEX_RE.search(key)
    if not m:
        return None
    return int(m.group(1), 16) if m.group(1) else -1


def build_index_part(
    layers: dict,
    disk_consistent_lsn: int,
    prev_record_lsn: int,
    ancestor_timeline_id: str | None,
    ancestor_lsn: int,
    gc_cutoff_lsn: int,
    initdb_lsn: int,
    pg_version: int,
    gc_blocking: dict | None,
    synthetic: bool = False,
) -> dict:
    index = {
        "version": INDEX_PART_VERSION,
        "layer_metadata": {name: desc.metadata() for name, desc in sorted(layers.items())},
        "disk_consistent_lsn": format_lsn(disk_consistent_lsn),
        "metadata_bytes": {
            "disk_consistent_lsn": format_lsn(disk_consistent_lsn),
            "prev_record_lsn": format_lsn(prev_record_lsn) if prev_record_lsn else None,
            "ancestor_timeline": ancestor_timeline_id,
            "ancestor_lsn": format_lsn(ancestor_lsn),
            "latest_gc_cutoff_lsn": format_lsn(gc_cutoff_lsn),
            "initdb_lsn": format_lsn(initdb_lsn),
            "pg_version": pg_version,
        },
        "lineage": {},
        "gc_blocking": gc_blocking,
        "deleted_at": None,
        "archived_at": None,
        "import_pgdata": None,
        "last_aux_file_policy": None,
        "rel_size_migration": None,
        "l2_lsn": None,
        "gc_compaction": None,
        "marked_invisible_at": None,
        "rel_size_migrated_at": None,
    }
    if synthetic:
        # sim-only marker: the layers are declared metadata without objects; the checker skips them
        index["neonsim_synthetic"] = True
    return index


class RemoteStorage:
    """Async facade over one bucket + prefix."""

    def __init__(self, s3_conf: dict, prefix_in_bucket: str | None):
        self.bucket = s3_conf["bucket"]
        self.prefix = normalize_prefix(prefix_in_bucket)
        self._client = make_s3_client(s3_conf)
        self.puts = 0
        self.deletes = 0

    async def put_bytes(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._client.put_object, Bucket=self.bucket, Key=key, Body=data)
        self.puts += 1

    async def put_json(self, key: str, obj) -> None:
        await self.put_bytes(key, json.dumps(obj, separators=(",", ":")).encode())

    async def get_bytes(self, key: str) -> tuple[bytes, object]:
        """(body, last_modified); RemoteNotFound when absent."""

        def _get():
            try:
                resp = self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    raise RemoteNotFound(key) from None
                raise
            return resp["Body"].read(), resp.get("LastModified")

        return await asyncio.to_thread(_get)

    async def get_json(self, key: str):
        data, _ = await self.get_bytes(key)
        return json.loads(data)

    async def list_keys(self, prefix: str) -> list[str]:
        def _list() -> list[str]:
            keys: list[str] = []
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
            return keys

        return await asyncio.to_thread(_list)

    async def list_dirs(self, prefix: str) -> list[str]:
        """Immediate "subdirectory" names below prefix (prefix ends with '/')."""

        def _list():
            names = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for cp in page.get("CommonPrefixes", []):
                    names.append(cp["Prefix"][len(prefix) :].rstrip("/"))
            return names

        return await asyncio.to_thread(_list)

    async def delete_keys(self, keys: list[str]) -> None:
        def _delete(batch):
            self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch]})

        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            await asyncio.to_thread(_delete, batch)
            self.deletes += len(batch)

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list_keys(prefix)
        if keys:
            await self.delete_keys(keys)
        return len(keys)

    async def download_index(self, tsid: str, timeline_id: str, generation: int) -> tuple[dict, int] | None:
        """Newest index_part <= own generation (own -> gen-1 -> listing -> legacy); (index, its generation)."""
        for gen in (generation, generation - 1):
            if gen < 0:
                continue
            try:
                return await self.get_json(index_key(self.prefix, tsid, timeline_id, gen)), gen
            except RemoteNotFound:
                pass
        best: tuple[str, int] | None = None
        for key in await self.list_keys(timeline_prefix(self.prefix, tsid, timeline_id) + "index_part.json"):
            found = index_generation(key)
            if found is not None and found <= generation and (best is None or found > best[1]):
                best = (key, found)
        if best is None:
            return None
        try:
            return await self.get_json(best[0]), best[1]
        except RemoteNotFound:
            return None
