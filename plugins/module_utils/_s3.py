# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Neon remote storage on S3: key layout, input validation, index_part parsing, listing and tenant copy.

Internal to neonops.storage; may change in any release.

Key layout below ``{prefix_in_bucket}/`` (upstream ``pageserver/src/tenant/remote_timeline_client.rs``,
``pageserver/src/tenant/upload_queue.rs`` and ``libs/utils/src/generation.rs``):

- ``tenants/{tenant_shard_id}/heatmap-v1.json``
- ``tenants/{tenant_shard_id}/tenant-manifest-{gen:08x}.json``
- ``tenants/{tenant_shard_id}/timelines/{timeline_id}/index_part.json-{gen:08x}`` (legacy: no suffix)
- ``tenants/{tenant_id}{-NNCC of the layer's own shard}/timelines/{timeline_id}/{layer_name}-{gen:08x}``
- ``tenants/{tenant_id}/timelines/{timeline_id}/initdb.tar.zst``

Every S3 call goes through a client wrapped by amazon.aws (``client()`` below, or a boto3 client in the same
wrapper) and passes ``aws_retry=True``. The S3 modules' shared options are documented by the doc fragment
``neonops.storage._s3`` (and ``neonops.storage._s3.pageserver_api`` with ``PAGESERVER_API_SPEC``).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from ansible.module_utils.basic import env_fallback
from ansible_collections.neonops.storage.plugins.module_utils._ids import TenantShardId, validate_tenant_id

MIB = 1024 * 1024
# S3 multipart limits (AWS docs, "Amazon S3 multipart upload limits"): parts of 5 MiB..5 GiB, except the last.
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * 1024 * MIB
# Stored on every object we copy, so a rerun recognises a copy whose ETag differs from the source's
# (a multipart copy gets an ETag of the form "<md5 of part md5s>-<parts>", AWS docs "Checking object integrity").
SOURCE_ETAG_META = "neonops-source-etag"

_SEGMENT = re.compile(r"^[A-Za-z0-9_.=+-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GEN_SUFFIX = r"(?:-([0-9a-f]{8}))?"
_INDEX = re.compile(r"^index_part\.json" + _GEN_SUFFIX + r"$")
_MANIFEST = re.compile(r"^tenant-manifest" + _GEN_SUFFIX + r"\.json$")
_LAYER_NAME = re.compile(r"^[0-9A-Fa-f]{36}-[0-9A-Fa-f]{36}__[0-9A-Fa-f]{16}(?:-[0-9A-Fa-f]{16})?$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_SHARD_INDEX = re.compile(r"^[0-9a-f]{4}$")


# The pageservers' management API, for the S3 modules that ask pageservers which tenants they hold (documented by
# the doc fragment neonops.storage._s3.pageserver_api; the values are checked by _module.client_for_url).
PAGESERVER_API_SPEC = {
    "api_token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["NEONOPS_API_TOKEN"])},
    "ca_path": {"type": "path", "fallback": (env_fallback, ["NEONOPS_CA_PATH"])},
    "timeout": {"type": "float", "default": 30.0},
    "retries": {"type": "int", "default": 3},
}


def argument_spec(options: dict, pageserver_api: bool = False) -> dict:
    """An S3 module's argument spec: its own options, plus the pageserver API ones when it asks pageservers.
    AnsibleAWSModule adds amazon.aws's connection options itself."""
    spec = copy.deepcopy(PAGESERVER_API_SPEC) if pageserver_api else {}
    spec.update(options)
    return spec


def aws_module(argument_spec: dict, **kwargs):
    """An S3 module's AnsibleAWSModule whose inner AnsibleModule carries the collection's rules for hostile input
    (``_module.NeonModuleMixin``): every option, amazon.aws's included, checked before any request (NUL
    characters named instead of "Failed to log to syslog", sizes capped, no boolean for an integer, numbers as
    ASCII digits and within bounds), and failure messages cut to a readable size."""
    from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
    from ansible_collections.neonops.storage.plugins.module_utils._module import neon_module

    # AnsibleAWSModule builds its inner module from the class-level setting, not from a keyword (amazon.aws
    # plugins/module_utils/modules.py, AnsibleAWSModule.__init__); it is put back at once.
    settings = AnsibleAWSModule.default_settings
    saved = settings["module_class"]
    settings["module_class"] = neon_module
    try:
        return AnsibleAWSModule(argument_spec=argument_spec, **kwargs)
    finally:
        settings["module_class"] = saved


def pool_size(concurrency: int) -> int:
    """Pooled connections for ``concurrency`` copies in flight: one per copy and one per part of the multipart
    copies among them (each runs up to 4 parts at once), plus the listings. botocore keeps 10 by default; more
    threads than connections would open and drop a connection per request ("Connection pool is full")."""
    return concurrency * 4 + 4


def client(module, concurrency: int | None = None):
    """The S3 client of an S3 module: amazon.aws's connection options (the user's O(aws_config) merged in) and its
    retrying wrapper (every call passes ``aws_retry=True``). With ``concurrency``, a connection pool that fits
    that many copies in flight (``pool_size``)."""
    from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

    extra = {}
    if concurrency is not None:
        from botocore.config import Config

        extra["config"] = Config(max_pool_connections=pool_size(concurrency))
    return module.client("s3", retry_decorator=AWSRetry.jittered_backoff(), **extra)


class S3LayoutError(Exception):
    """The bucket holds something that breaks Neon's key layout (an unreadable index_part, a missing layer)."""


class CopyInterrupted(Exception):
    """A copy failed part way: ``cause`` is the first failure, ``copied`` the figures of what was copied before."""

    def __init__(self, cause: BaseException, copied: dict):
        super().__init__(str(cause))
        self.cause = cause
        self.copied = copied


# ---------------------------------------------------------------------------------------------------------------
# Input validation: everything here runs before any request.


def validate_prefix(value, field: str = "prefix_in_bucket") -> str:
    """Return the normalized prefix (no leading or trailing ``/``); raise ``ValueError`` naming ``field``.

    Refused: anything but a non-empty ASCII string, the bucket root (``""``, ``"/"``), a leading ``/``,
    empty, ``.`` or ``..`` segments, whitespace and control characters anywhere, and characters outside
    ``[A-Za-z0-9_.=+-]`` in a segment (so no look-alikes, backslashes or wildcards). One trailing ``/``
    is accepted, as in a pageserver's ``remote_storage.prefix_in_bucket``.
    """
    if not isinstance(value, str):
        raise ValueError(f"{field}: invalid prefix {value!r}: expected a string")
    if not value.isascii():
        raise ValueError(f"{field}: invalid prefix {value!r}: only ASCII characters are allowed")
    if value != value.strip() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{field}: invalid prefix {value!r}: whitespace or control characters are not allowed")
    text = value[:-1] if value.endswith("/") else value
    if not text:
        raise ValueError(f"{field}: invalid prefix {value!r}: the bucket root is not accepted, give a prefix")
    if text.startswith("/"):
        raise ValueError(f"{field}: invalid prefix {value!r}: must not start with '/'")
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"{field}: invalid prefix {value!r}: empty, '.' and '..' segments are not allowed")
        if not _SEGMENT.match(segment):
            raise ValueError(
                f"{field}: invalid prefix {value!r}: segment {segment!r} has characters outside [A-Za-z0-9_.=+-]"
            )
    return text


def validate_bucket(value, field: str = "bucket") -> str:
    """S3 bucket naming rules (AWS docs, "General purpose bucket naming rules"), without dots next to each other."""
    if not isinstance(value, str) or not _BUCKET.match(value) or ".." in value:
        raise ValueError(f"{field}: invalid bucket name {value!r}: expected 3-63 characters of [a-z0-9.-]")
    return value


def validate_copy_tenant_id(value, field: str = "tenant_id") -> str:
    """A tenant id (32 hex), never a shard id or a path: ``copy`` always takes every shard."""
    if isinstance(value, str) and value != value.strip():
        raise ValueError(f"{field}: invalid tenant id {value!r}: surrounding whitespace is not allowed")
    return validate_tenant_id(value, field)


def check_distinct(src_bucket: str, src_prefix: str, dst_bucket: str, dst_prefix: str) -> None:
    """Refuse a destination that is the source, or that lies inside (or contains) the source's tenant tree."""
    if src_bucket != dst_bucket:
        return
    if src_prefix == dst_prefix:
        raise ValueError(f"dest_prefix_in_bucket: {dst_prefix!r} is the source prefix in the same bucket")
    for inner, outer, field in (
        (dst_prefix, src_prefix, "dest_prefix_in_bucket"),
        (src_prefix, dst_prefix, "prefix_in_bucket"),
    ):
        if (inner + "/").startswith(outer + "/tenants/"):
            raise ValueError(f"{field}: {inner!r} lies inside the tenant tree of {outer!r} in the same bucket")


# ---------------------------------------------------------------------------------------------------------------
# Key layout


def tenants_root(prefix: str) -> str:
    return f"{prefix}/tenants/"


def parse_key(key: str, prefix: str) -> dict | None:
    """Classify an object key under ``{prefix}/tenants/``; ``None`` when it is not in Neon's layout.

    Returns ``{"tenant_shard_id", "tenant_id", "kind", "timeline_id", "generation", "relative"}``; ``kind`` is
    ``index_part``, ``heatmap``, ``tenant_manifest``, ``layer``, ``initdb`` or ``other``; ``generation`` is the
    key's ``-{gen:08x}`` suffix as an int, ``None`` for legacy keys and kinds without one.
    """
    root = tenants_root(prefix)
    if not key.startswith(root):
        return None
    rest = key[len(root) :]
    parts = rest.split("/")
    try:
        tsid = TenantShardId.parse(parts[0])
    except ValueError:
        return None
    if str(tsid) != parts[0] or len(parts) < 2:
        return None
    out: dict[str, Any] = {
        "tenant_shard_id": parts[0],
        "tenant_id": tsid.tenant_id,
        "kind": "other",
        "timeline_id": None,
        "generation": None,
        "relative": rest,
    }
    if len(parts) == 2:
        name = parts[1]
        if name == "heatmap-v1.json":
            out["kind"] = "heatmap"
        elif manifest := _MANIFEST.match(name):
            out["kind"] = "tenant_manifest"
            gen = manifest.group(1)
            out["generation"] = int(gen, 16) if gen else None
        return out
    if len(parts) == 4 and parts[1] == "timelines" and _HEX32.match(parts[2]):
        out["timeline_id"] = parts[2]
        name = parts[3]
        m = _INDEX.match(name)
        if m:
            out["kind"] = "index_part"
            out["generation"] = int(m.group(1), 16) if m.group(1) else None
        elif name.startswith("initdb"):
            out["kind"] = "initdb"
        else:
            base, _dash, gen = name.rpartition("-")
            if _LAYER_NAME.match(base) and re.match(r"^[0-9a-f]{8}$", gen):
                out["kind"] = "layer"
                out["generation"] = int(gen, 16)
            elif _LAYER_NAME.match(name):
                out["kind"] = "layer"
    return out


def layer_key(prefix: str, tenant_id: str, timeline_id: str, layer_name: str, meta: dict) -> str:
    """The remote key of a layer from its index_part ``layer_metadata`` entry (upstream ``remote_layer_path``)."""
    if not _LAYER_NAME.match(layer_name):
        raise S3LayoutError(f"layer name {layer_name!r} is not a Neon layer file name")
    shard = meta.get("shard")
    if shard is not None and not (isinstance(shard, str) and _SHARD_INDEX.match(shard)):
        raise S3LayoutError(f"layer {layer_name}: invalid shard {shard!r}")
    suffix = f"-{shard}" if shard and shard != "0000" else ""
    gen = meta.get("generation")
    if gen is not None and (isinstance(gen, bool) or not isinstance(gen, int) or not 0 <= gen < 2**32):
        raise S3LayoutError(f"layer {layer_name}: invalid generation {gen!r}")
    # Generation::none() is an absent field, or 0xFFFFFFFF in some versions (upstream libs/utils/src/generation.rs).
    gen_suffix = f"-{gen:08x}" if gen is not None and gen != 0xFFFFFFFF else ""
    return f"{tenants_root(prefix)}{tenant_id}{suffix}/timelines/{timeline_id}/{layer_name}{gen_suffix}"


def referenced_layers(index_part, prefix: str, tenant_id: str, timeline_id: str) -> dict:
    """``{key: file_size}`` of every layer an index_part references (``layer_metadata``, upstream ``index.rs``)."""
    if not isinstance(index_part, dict) or not isinstance(index_part.get("layer_metadata"), dict):
        raise S3LayoutError("index_part has no layer_metadata object")
    out = {}
    for name, meta in index_part["layer_metadata"].items():
        if not isinstance(meta, dict) or not isinstance(meta.get("file_size"), int):
            raise S3LayoutError(f"layer {name}: metadata without file_size")
        out[layer_key(prefix, tenant_id, timeline_id, name, meta)] = meta["file_size"]
    return out


def newest_indexes(objects: dict, prefix: str) -> dict:
    """``{(tenant_shard_id, timeline_id): (key, generation)}``: each timeline's newest index_part (legacy = -1)."""
    best: dict[tuple[str, str], tuple[str, int]] = {}
    for key in objects:
        info = parse_key(key, prefix)
        if not info or info["kind"] != "index_part":
            continue
        gen = -1 if info["generation"] is None else info["generation"]
        slot = (info["tenant_shard_id"], info["timeline_id"])
        if slot not in best or gen > best[slot][1]:
            best[slot] = (key, gen)
    return best


def summarize(objects: dict, prefix: str) -> dict:
    """Group a listing ``{key: {"size", "etag"}}`` by tenant and shard (the s3_prefix_info result)."""
    tenants: dict[str, dict] = {}
    other = {"objects": 0, "bytes": 0}
    newest = newest_indexes(objects, prefix)
    for key, obj in objects.items():
        info = parse_key(key, prefix)
        if info is None:
            other["objects"] += 1
            other["bytes"] += obj["size"]
            continue
        tenant = tenants.setdefault(
            info["tenant_id"], {"tenant_id": info["tenant_id"], "objects": 0, "bytes": 0, "shards": {}}
        )
        tsid = TenantShardId.parse(info["tenant_shard_id"])
        shard = tenant["shards"].setdefault(
            info["tenant_shard_id"],
            {
                "tenant_shard_id": info["tenant_shard_id"],
                "shard_number": tsid.shard_number,
                "shard_count": tsid.shard_count,
                "objects": 0,
                "bytes": 0,
                "layers": 0,
                "heatmap": False,
                "newest_generation": None,
                "timelines": {},
            },
        )
        for counter in (tenant, shard):
            counter["objects"] += 1
            counter["bytes"] += obj["size"]
        if info["kind"] == "layer":
            shard["layers"] += 1
        elif info["kind"] == "heatmap":
            shard["heatmap"] = True
    for (tsid, timeline_id), (key, gen) in newest.items():
        shard = tenants[TenantShardId.parse(tsid).tenant_id]["shards"][tsid]
        generation = None if gen < 0 else gen
        shard["timelines"][timeline_id] = {
            "timeline_id": timeline_id,
            "newest_generation": generation,
            "index_part_key": key,
        }
        if generation is not None and (shard["newest_generation"] is None or generation > shard["newest_generation"]):
            shard["newest_generation"] = generation
    result = []
    for tenant_id in sorted(tenants):
        tenant = tenants[tenant_id]
        shards = []
        for tsid in sorted(tenant["shards"]):
            shard = tenant["shards"][tsid]
            shard["timelines"] = [shard["timelines"][t] for t in sorted(shard["timelines"])]
            shards.append(shard)
        tenant["shards"] = shards
        result.append(tenant)
    return {"tenants": result, "other": other}


# ---------------------------------------------------------------------------------------------------------------
# S3 requests


def list_objects(client, bucket: str, prefix: str) -> dict:
    """``{key: {"size": int, "etag": str}}`` for every object whose key starts with ``prefix``."""
    out = {}
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = client.list_objects_v2(aws_retry=True, **kwargs)
        for obj in page.get("Contents", []):
            out[obj["Key"]] = {"size": obj["Size"], "etag": obj.get("ETag", "")}
        if not page.get("IsTruncated"):
            return out
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def list_tenant(client, bucket: str, prefix: str, tenant_id: str | None = None) -> dict:
    """Objects under ``{prefix}/tenants/`` (or only one tenant's shards: ``tenants/{tenant_id}`` and ``-NNCC``)."""
    if tenant_id is None:
        return list_objects(client, bucket, tenants_root(prefix))
    objects = list_objects(client, bucket, tenants_root(prefix) + tenant_id)
    out = {}
    for key, obj in objects.items():
        info = parse_key(key, prefix)
        if info and info["tenant_id"] == tenant_id:
            out[key] = obj
    return out


def dest_key(key: str, src_prefix: str, dst_prefix: str) -> str:
    if not key.startswith(src_prefix + "/"):
        raise ValueError(f"key {key!r} is not under {src_prefix!r}")
    return dst_prefix + key[len(src_prefix) :]


def _same(client, bucket: str, key: str, src: dict, dst: dict | None) -> bool:
    """Whether the destination object is a copy of the source one (size, then ETag or our recorded source ETag)."""
    if dst is None or dst["size"] != src["size"]:
        return False
    if dst["etag"] == src["etag"]:
        return True
    head = client.head_object(aws_retry=True, Bucket=bucket, Key=key)
    return head.get("Metadata", {}).get(SOURCE_ETAG_META) == src["etag"]


def _copy_order(key: str, prefix: str) -> int:
    """Layers and other data first, index_part files after them, heatmaps last: the destination never holds an
    index_part whose layers are not there yet, even when a copy is interrupted (the order upstream's upload
    queue keeps, ``pageserver/src/tenant/remote_timeline_client.rs``)."""
    info = parse_key(key, prefix)
    kind = info["kind"] if info else "other"
    return {"index_part": 1, "tenant_manifest": 1, "heatmap": 2}.get(kind, 0)


def plan_copy(client, src_objects: dict, dst_objects: dict, dst_bucket: str, src_prefix: str, dst_prefix: str):
    """Split the source objects into ``(to_copy, skipped)``: lists of ``(src_key, dst_key, obj)`` in copy order."""
    to_copy: list[tuple[str, str, dict]] = []
    skipped: list[tuple[str, str, dict]] = []
    for key in sorted(src_objects, key=lambda k: (_copy_order(k, src_prefix), k)):
        obj = src_objects[key]
        dkey = dest_key(key, src_prefix, dst_prefix)
        (skipped if _same(client, dst_bucket, dkey, obj, dst_objects.get(dkey)) else to_copy).append((key, dkey, obj))
    return to_copy, skipped


def copy_objects(
    client,
    plan,
    src_bucket: str,
    src_prefix: str,
    dst_bucket: str,
    concurrency: int,
    transfer_config,
    multipart_threshold: int,
    progress=None,
) -> dict:
    """Server-side copy of every planned object, ``concurrency`` at a time, in the plan's phases.

    Objects below ``multipart_threshold`` take one CopyObject; larger ones go through boto3's managed copy
    (s3transfer: CreateMultipartUpload + UploadPartCopy). Each copy carries the source ETag in its metadata.
    On the first failure no new copy starts; the ones in flight finish, then ``CopyInterrupted`` is raised with
    that failure and the figures so far.
    """
    copied = {"objects": 0, "bytes": 0, "multipart": 0}
    lock = threading.Lock()

    def one(item):
        src_key, dst_key, obj = item
        meta = {
            "Metadata": {SOURCE_ETAG_META: obj["etag"]},
            "MetadataDirective": "REPLACE",
            "CopySourceIfMatch": obj["etag"],
        }
        source = {"Bucket": src_bucket, "Key": src_key}
        if obj["size"] >= multipart_threshold:
            client.copy(source, dst_bucket, dst_key, ExtraArgs=meta, Config=transfer_config)
        else:
            client.copy_object(aws_retry=True, CopySource=source, Bucket=dst_bucket, Key=dst_key, **meta)
        with lock:
            copied["objects"] += 1
            copied["bytes"] += obj["size"]
            if obj["size"] >= multipart_threshold:
                copied["multipart"] += 1
        if progress:
            progress(src_key, dst_key, obj)

    phases: dict[int, list] = {}
    for item in plan:
        phases.setdefault(_copy_order(item[0], src_prefix), []).append(item)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for phase in sorted(phases):
            items = iter(phases[phase])
            running = set()
            failure = None
            while failure is None:
                # Keep `concurrency` copies in flight: a new one starts as soon as any finishes (waiting for a
                # whole batch would leave threads idle behind its slowest copy).
                for item in items:
                    running.add(pool.submit(one, item))
                    if len(running) >= concurrency:
                        break
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                failure = next((f.exception() for f in done if f.exception() is not None), None)
            if failure is not None:
                wait(running)
                raise CopyInterrupted(failure, copied) from failure
    return copied


def verify_copy(
    client, src_objects: dict, dst_bucket: str, src_prefix: str, dst_prefix: str, dst_objects: dict | None = None
) -> dict:
    """Check every source object at the destination (size + ETag) and every layer referenced by the newest
    index_part of every shard's timelines (read from the destination). Returns figures and problems.

    ``dst_objects``: a listing of the destination taken after the last write to it (else it is listed here)."""
    if dst_objects is None:
        parsed = (parse_key(key, src_prefix) for key in src_objects)
        tenants = {info["tenant_id"] for info in parsed if info}
        dst_objects = {}
        for tenant_id in sorted(tenants):
            dst_objects.update(list_tenant(client, dst_bucket, dst_prefix, tenant_id))
    mismatched = []
    verified = {"objects": 0, "bytes": 0}
    for key, obj in sorted(src_objects.items()):
        dkey = dest_key(key, src_prefix, dst_prefix)
        if _same(client, dst_bucket, dkey, obj, dst_objects.get(dkey)):
            verified["objects"] += 1
            verified["bytes"] += obj["size"]
        else:
            mismatched.append(dkey)
    missing_layers = []
    layers_checked = 0
    indexes = 0
    for (tsid, timeline_id), (key, _gen) in sorted(newest_indexes(src_objects, src_prefix).items()):
        dkey = dest_key(key, src_prefix, dst_prefix)
        if dkey not in dst_objects:
            continue  # already reported in mismatched
        body = client.get_object(aws_retry=True, Bucket=dst_bucket, Key=dkey)["Body"].read()
        try:
            index_part = json.loads(body)
        except ValueError as exc:
            raise S3LayoutError(f"{dkey}: not JSON: {exc}") from None
        indexes += 1
        tenant_id = TenantShardId.parse(tsid).tenant_id
        try:
            layers = referenced_layers(index_part, dst_prefix, tenant_id, timeline_id)
        except S3LayoutError as exc:
            raise S3LayoutError(f"{dkey}: {exc}") from None
        for lkey, size in sorted(layers.items()):
            layers_checked += 1
            if dst_objects.get(lkey, {}).get("size") != size:
                missing_layers.append({"index_part_key": dkey, "layer_key": lkey, "file_size": size})
    return {
        "verified": verified,
        "mismatched": mismatched,
        "missing_layers": missing_layers,
        "layers_checked": layers_checked,
        "index_parts_checked": indexes,
    }


def source_changed(exc) -> bool:
    """A conditional copy refused because the source object changed since it was listed (an index_part that its
    pageserver rewrote): list again and copy the delta."""
    error = (getattr(exc, "response", None) or {}).get("Error") or {}
    return error.get("Code") in ("PreconditionFailed", "412")


def copy_tenant(
    client,
    src_bucket: str,
    src_prefix: str,
    dst_bucket: str,
    dst_prefix: str,
    tenant_id: str,
    check_mode: bool,
    concurrency: int,
    transfer_config,
    multipart_threshold: int,
    select=None,
) -> dict:
    """List, plan, copy (unless check mode) and verify one tenant; returns the module's result figures.

    ``select(keys) -> keys`` narrows the source objects (the migration engine leaves out heatmaps that are not the
    moving shards' own)."""
    started = time.monotonic()
    # Both listings at once; they are the copy's only full reads of either side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        src_listing = pool.submit(list_tenant, client, src_bucket, src_prefix, tenant_id)
        dst_listing = pool.submit(list_tenant, client, dst_bucket, dst_prefix, tenant_id)
        src_objects, dst_objects = src_listing.result(), dst_listing.result()
    if select is not None:
        src_objects = {k: src_objects[k] for k in select(list(src_objects))}
    to_copy, skipped = plan_copy(client, src_objects, dst_objects, dst_bucket, src_prefix, dst_prefix)
    parsed = (parse_key(key, src_prefix) for key in src_objects)
    shards = sorted({info["tenant_shard_id"] for info in parsed if info})
    result: dict[str, Any] = {
        "tenant_id": tenant_id,
        "shards": shards,
        "source": {"objects": len(src_objects), "bytes": sum(o["size"] for o in src_objects.values())},
        "to_copy": {"objects": len(to_copy), "bytes": sum(o["size"] for _s, _d, o in to_copy)},
        "identical": {"objects": len(skipped), "bytes": sum(o["size"] for _s, _d, o in skipped)},
        "copied": {"objects": 0, "bytes": 0, "multipart": 0},
        "would_copy": [d for _s, d, _o in to_copy] if check_mode else [],
    }
    if not check_mode and to_copy:
        result["copied"] = copy_objects(
            client, to_copy, src_bucket, src_prefix, dst_bucket, concurrency, transfer_config, multipart_threshold
        )
    if not check_mode:
        # Nothing copied: the listing just taken is the destination as it is; else list it again.
        unchanged = dst_objects if not to_copy else None
        result.update(verify_copy(client, src_objects, dst_bucket, src_prefix, dst_prefix, unchanged))
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
