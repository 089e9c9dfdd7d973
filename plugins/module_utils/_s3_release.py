# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Releasing an old remote storage prefix (or one tenant under it): the guards, the plan, tombstone and delete.

Internal to neonops.storage; may change in any release. This is the only code in the collection that deletes
customer data, so every decision is a small pure function with its own unit test, and the deleting code
re-checks each key against the validated path right before a batch is sent.

Terms: O is the prefix to release, C the consolidated prefix that holds the tenants now, T the trash prefix.
All three are normalized by ``_s3.validate_prefix`` (no leading or trailing ``/``). A pageserver's prefix may be
the bucket root (``""``).
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from urllib.parse import urlencode

from ansible_collections.neonops.storage.plugins.module_utils import _s3
from ansible_collections.neonops.storage.plugins.module_utils._ids import TenantShardId

DEFAULT_TRASH_PREFIX = "neonops-trash"
# Object tags on every tombstone (S3 object tagging). A lifecycle rule filters on TAG_TOMBSTONE (its value is the
# retention in days) under the trash prefix and expires the objects; TAG_EXPIRES is the date, for people.
TAG_TOMBSTONE = "neonops-tombstone"
TAG_EXPIRES = "neonops-expires"
MAX_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys (AWS S3 API reference, DeleteObjects)
SAMPLE_SIZE = 20

# Refusal codes (docs/runbooks/release-s3-prefix.md explains each).
LIVE_PREFIX = "live_prefix"
PREFIX_IN_USE = "prefix_in_use"
CONSOLIDATED_NOT_LIVE = "consolidated_not_live"
TRASH_OVERLAP = "trash_overlap"
CONFIRM = "confirm"
NOT_CONSOLIDATED = "not_consolidated"
MISSING_LAYERS = "missing_layers"
STILL_LOCATED = "still_located"
PAGESERVER_UNANSWERED = "pageserver_unanswered"


class Refused(Exception):
    """The release must not happen; ``refusals`` lists every reason (``{"code", "field", "msg"}``)."""

    def __init__(self, refusals: list):
        self.refusals = refusals
        super().__init__("; ".join(r["msg"] for r in refusals))


class KeyOutsideRelease(Exception):
    """A key about to be deleted is not under the validated path: nothing of that batch was sent."""


def refusal(code: str, field: str, msg: str) -> dict:
    return {"code": code, "field": field, "msg": f"{field}: {msg} (refusal {code})"}


# ---------------------------------------------------------------------------------------------------------------
# Prefix relations (pure)


def validate_live_prefix(value, field: str) -> str:
    """A pageserver's configured prefix: like ``validate_prefix``, but the bucket root (``""`` or ``"/"``) is ``""``."""
    if value in ("", "/"):
        return ""
    return _s3.validate_prefix(value, field)


def tree(prefix: str) -> str:
    """Where a prefix's tenants live: ``{prefix}/tenants/`` (``tenants/`` for the bucket root)."""
    return f"{prefix}/tenants/" if prefix else "tenants/"


def is_below(child: str, parent: str) -> bool:
    """Whether ``child`` lies strictly below ``parent``, segment-wise (``a/bc`` is not below ``a/b``)."""
    return child != parent and (parent == "" or child.startswith(parent + "/"))


def inside_tree(prefix: str, live: str) -> bool:
    """Whether a prefix lies inside a live prefix's tenant tree (so its objects are that prefix's tenant data)."""
    return (prefix + "/").startswith(tree(live))


def live_problem(old: str, live: str) -> str | None:
    """Why releasing ``old`` could touch the live prefix ``live`` (same bucket), or None."""
    if old == live:
        return "equal"
    if is_below(live, old):
        return "parent"
    if inside_tree(old, live):
        return "inside"
    return None


def check_plan_inputs(
    bucket: str,
    old: str,
    tenant_id: str | None,
    consolidated_bucket: str,
    consolidated: str,
    trash: str,
    pageservers: list,
) -> dict:
    """Every refusal that needs no request; raises ``Refused``. Returns which pageservers read O and C.

    ``pageservers``: validated ``{"name", "bucket", "prefix"}`` entries. A whole prefix may be released only when
    no pageserver is configured with it; one tenant also while other tenants still live there (their
    pageservers are then asked where the tenant is, see ``location_problems``).
    """
    found = []
    shown = f"{old!r} in bucket {bucket}"
    if consolidated_bucket == bucket:
        how = live_problem(old, consolidated)
        if how == "equal":
            found.append(refusal(LIVE_PREFIX, "consolidated_prefix_in_bucket", f"{consolidated!r} is {shown} itself"))
        elif how == "parent":
            found.append(
                refusal(
                    LIVE_PREFIX, "prefix_in_bucket", f"{old!r} is a parent of the consolidated prefix {consolidated!r}"
                )
            )
        elif how == "inside":
            found.append(
                refusal(
                    LIVE_PREFIX,
                    "prefix_in_bucket",
                    f"{old!r} lies inside the tenant tree of the consolidated prefix {consolidated!r}",
                )
            )
    readers_old, readers_consolidated = [], []
    for index, ps in enumerate(pageservers):
        field = f"pageservers[{index}].prefix_in_bucket"
        if ps["bucket"] == consolidated_bucket and ps["prefix"] == consolidated:
            readers_consolidated.append(ps["name"])
        if ps["bucket"] != bucket:
            continue
        how = live_problem(old, ps["prefix"])
        if how == "equal":
            readers_old.append(ps["name"])
            if tenant_id is None:
                found.append(
                    refusal(
                        PREFIX_IN_USE,
                        field,
                        f"pageserver {ps['name']!r} is still configured with {old!r}, the prefix to release",
                    )
                )
        elif how == "parent":
            found.append(
                refusal(
                    LIVE_PREFIX,
                    field,
                    f"the prefix to release {old!r} is a parent of {ps['prefix']!r}, live on pageserver {ps['name']!r}",
                )
            )
        elif how == "inside":
            found.append(
                refusal(
                    LIVE_PREFIX,
                    field,
                    f"the prefix to release {old!r} lies inside the tenant tree of {ps['prefix']!r}, "
                    f"live on pageserver {ps['name']!r}",
                )
            )
    if not readers_consolidated:
        found.append(
            refusal(
                CONSOLIDATED_NOT_LIVE,
                "consolidated_prefix_in_bucket",
                f"no listed pageserver is configured with {consolidated!r} in bucket {consolidated_bucket}: "
                "the consolidated prefix must be live (list every pageserver of the bucket)",
            )
        )
    others = [("prefix_in_bucket", old), ("consolidated_prefix_in_bucket", consolidated)]
    others += [(f"pageservers[{i}].prefix_in_bucket", ps["prefix"]) for i, ps in enumerate(pageservers)]
    for field, other in others:
        if trash == other or is_below(trash, other) or is_below(other, trash):
            found.append(
                refusal(
                    TRASH_OVERLAP, "trash_prefix", f"{trash!r} overlaps {other!r} ({field}); choose a separate prefix"
                )
            )
    if found:
        raise Refused(found)
    return {"old": readers_old, "consolidated": readers_consolidated}


def release_target(old: str, tenant_id: str | None) -> str:
    """What ``confirm`` must equal in delete mode: the prefix, or ``{prefix}/tenants/{tenant_id}``."""
    return old if tenant_id is None else f"{old}/tenants/{tenant_id}"


def check_confirm(confirm, target: str) -> None:
    if confirm is None or confirm not in (target, target + "/"):
        raise Refused(
            [refusal(CONFIRM, "confirm", f"{confirm!r} does not match {target!r}: mode=delete needs confirm={target}")]
        )


# ---------------------------------------------------------------------------------------------------------------
# Listing with delimiter semantics: one tenant shard directory at a time


def shard_dirs(client, bucket: str, prefix: str) -> tuple[list, list, dict]:
    """``(tenant shard ids, unrecognized directory names, loose objects)`` directly below ``{prefix}/tenants/``.

    A directory counts only when its name is exactly a tenant shard id as the pageserver writes it.
    """
    root = tree(prefix)
    tsids: list[str] = []
    odd: list[str] = []
    loose: dict = {}
    kwargs = {"Bucket": bucket, "Prefix": root, "Delimiter": "/"}
    while True:
        page = client.list_objects_v2(aws_retry=True, **kwargs)
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(root) : -1]
            try:
                parsed = str(TenantShardId.parse(name))
            except ValueError:
                parsed = None
            (tsids if parsed == name else odd).append(name)
        for obj in page.get("Contents", []):
            loose[obj["Key"]] = {"size": obj["Size"], "etag": obj.get("ETag", "")}
        if not page.get("IsTruncated"):
            return sorted(tsids), sorted(odd), loose
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def list_release(client, bucket: str, prefix: str, tenant_id: str | None) -> dict:
    """What a release covers: ``{"shards": {tsid: {key: obj}}, "kept": {key: obj}}``.

    ``kept``: objects below ``{prefix}/tenants/`` outside any tenant shard directory (never released).
    """
    tsids, odd, loose = shard_dirs(client, bucket, prefix)
    root = tree(prefix)
    shards = {}
    for tsid in tsids:
        if tenant_id is None or tsid[:32] == tenant_id:
            shards[tsid] = _s3.list_objects(client, bucket, f"{root}{tsid}/")
    kept = dict(loose) if tenant_id is None else {}
    if tenant_id is None:
        for name in odd:
            kept.update(_s3.list_objects(client, bucket, f"{root}{name}/"))
    return {"shards": shards, "kept": kept}


# ---------------------------------------------------------------------------------------------------------------
# Guard: every tenant is in the consolidated prefix, as new or newer, with its layers


def _index_gens(objects: dict, prefix: str) -> dict:
    """``{timeline_id: (key, generation)}`` of a shard's newest index_parts (legacy suffix-less = -1)."""
    return {timeline: value for (_tsid, timeline), value in _s3.newest_indexes(objects, prefix).items()}


def consolidation_problems(client, old_shards: dict, old: str, consolidated_bucket: str, consolidated: str) -> tuple:
    """Refusals for the tenants of ``old_shards`` (``{tsid: {key: obj}}``) and figures of what was checked.

    For every shard directory in O: the same directory in C holds at least one index_part; every timeline with an
    index_part in O has one in C of an equal or newer generation; every layer the newest C index_part of those
    timelines references is in C with the size the index_part records (upstream
    ``pageserver/src/tenant/remote_timeline_client/index.rs``). Only reads.
    """
    problems = []
    checked = {"index_parts": 0, "layers": 0}
    generations = {}
    by_tenant: dict[str, list] = {}
    for tsid in old_shards:
        by_tenant.setdefault(tsid[:32], []).append(tsid)
    for tenant_id, tsids in sorted(by_tenant.items()):
        cons_objects = _s3.list_tenant(client, consolidated_bucket, consolidated, tenant_id)
        cons_by_shard: dict[str, dict] = {}
        for key, obj in cons_objects.items():
            info = _s3.parse_key(key, consolidated) or {}  # list_tenant keeps only keys in the layout
            cons_by_shard.setdefault(info["tenant_shard_id"], {})[key] = obj
        for tsid in sorted(tsids):
            field = f"tenant {tsid}"
            old_idx = _index_gens(old_shards[tsid], old)
            cons_idx = _index_gens(cons_by_shard.get(tsid, {}), consolidated)
            generations[tsid] = {
                "released": max((g for _k, g in old_idx.values()), default=None),
                "consolidated": max((g for _k, g in cons_idx.values()), default=None),
            }
            if not cons_idx:
                problems.append(
                    refusal(
                        NOT_CONSOLIDATED,
                        "consolidated_prefix_in_bucket",
                        f"{field} has no index_part under {tree(consolidated)}{tsid}/ in bucket {consolidated_bucket}",
                    )
                )
                continue
            for timeline_id, (_key, gen) in sorted(old_idx.items()):
                if timeline_id not in cons_idx:
                    problems.append(
                        refusal(
                            NOT_CONSOLIDATED,
                            "consolidated_prefix_in_bucket",
                            f"{field} timeline {timeline_id} has an index_part only in the prefix to release",
                        )
                    )
                    continue
                cons_key, cons_gen = cons_idx[timeline_id]
                if cons_gen < gen:
                    problems.append(
                        refusal(
                            NOT_CONSOLIDATED,
                            "consolidated_prefix_in_bucket",
                            f"{field} timeline {timeline_id}: newest index_part generation {_gen(cons_gen)} in "
                            f"{consolidated!r} is older than {_gen(gen)} in {old!r}",
                        )
                    )
                    continue
                body = client.get_object(aws_retry=True, Bucket=consolidated_bucket, Key=cons_key)["Body"].read()
                checked["index_parts"] += 1
                try:
                    layers = _s3.referenced_layers(json.loads(body), consolidated, tenant_id, timeline_id)
                except (ValueError, _s3.S3LayoutError) as exc:
                    problems.append(
                        refusal(MISSING_LAYERS, "consolidated_prefix_in_bucket", f"{cons_key} is unreadable: {exc}")
                    )
                    continue
                missing = []
                for lkey, size in sorted(layers.items()):
                    checked["layers"] += 1
                    if cons_objects.get(lkey, {}).get("size") != size:
                        missing.append(lkey)
                if missing:
                    problems.append(
                        refusal(
                            MISSING_LAYERS,
                            "consolidated_prefix_in_bucket",
                            f"{len(missing)} layers referenced by {cons_key} are missing or of another size in "
                            f"bucket {consolidated_bucket}, first {missing[0]}",
                        )
                    )
    return problems, checked, generations


def _gen(gen: int) -> str:
    return "legacy (none)" if gen < 0 else f"{gen:08x}"


# ---------------------------------------------------------------------------------------------------------------
# Guard: the tenant is located nowhere that reads the prefix


def location_problems(locations: dict, readers_old: list, tenant_ids: set) -> list:
    """Refusals for tenant shards (attached, secondary or in progress) on a pageserver configured with O.

    ``locations``: ``{pageserver name: {tsid: LocationConfig or None}}`` from ``GET /v1/location_config`` (secondary
    locations read the prefix too: they download its heatmap and layers).
    """
    problems = []
    for index_name in readers_old:
        for tsid, config in sorted(locations.get(index_name, {}).items()):
            mode = (config or {}).get("mode", "in progress")
            if tsid[:32] in tenant_ids and mode != "Detached":
                problems.append(
                    refusal(
                        STILL_LOCATED,
                        "tenant_id",
                        f"tenant shard {tsid} is {mode} on pageserver {index_name!r}, "
                        "which reads the prefix to release",
                    )
                )
    return problems


def located_on(locations: dict, tenant_ids: set) -> dict:
    """``{pageserver name: [tsid, ...]}`` of the tenants' shards on each pageserver (for the report)."""
    out = {}
    for name, shards in locations.items():
        found = sorted(
            tsid
            for tsid, config in shards.items()
            if tsid[:32] in tenant_ids and (config or {}).get("mode") != "Detached"
        )
        if found:
            out[name] = found
    return out


# ---------------------------------------------------------------------------------------------------------------
# The deleting side


def deletable_check(old: str, tsids) -> Callable[[str], None]:
    """A function that raises ``KeyOutsideRelease`` for a key outside the validated shard directories."""
    root = tree(old)
    allowed = tuple(f"{root}{tsid}/" for tsid in tsids)
    for prefix in allowed:
        if not prefix.startswith(root) or "//" in prefix or "/../" in prefix or "/./" in prefix:
            raise KeyOutsideRelease(f"refusing the release: {prefix!r} is not a clean shard directory of {old!r}")

    def check(key: str) -> None:
        if not isinstance(key, str) or not key.startswith(allowed) or "/../" in key or "/./" in key:
            raise KeyOutsideRelease(f"refusing to delete {key!r}: not under the validated release path {old!r}")

    return check


def ordered(objects: dict, prefix: str) -> list:
    """Keys in release order: layers and other data, then index_parts and manifests, heatmaps last (the upload
    order, ``_s3._copy_order``): an interrupted release leaves index_parts in place, so a rerun still sees
    each shard and checks it against the consolidated prefix again."""
    return sorted(objects, key=lambda k: (_s3._copy_order(k, prefix), k))


def after_batch(done: int, total: int) -> None:
    """Called after each delete batch; a seam for tests that interrupt a release between batches."""


def delete_keys(client, bucket: str, keys: list, sizes: dict, check, batch_size: int) -> dict:
    """DeleteObjects in batches of ``batch_size`` (<= 1000); every key is checked before its batch is sent."""
    if not 1 <= batch_size <= MAX_DELETE_BATCH:
        raise ValueError(f"batch_size: {batch_size} is outside 1..{MAX_DELETE_BATCH}")
    deleted = {"objects": 0, "bytes": 0, "batches": 0}
    for start in range(0, len(keys), batch_size):
        batch = keys[start : start + batch_size]
        for key in batch:
            check(key)
        answer = client.delete_objects(
            aws_retry=True, Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise RuntimeError(
                f"DeleteObjects refused {len(errors)} of {len(batch)} keys, first {first.get('Key')!r}: "
                f"{first.get('Code')} {first.get('Message')}"
            )
        deleted["objects"] += len(batch)
        deleted["bytes"] += sum(sizes[k] for k in batch)
        deleted["batches"] += 1
        after_batch(deleted["objects"], len(keys))
    return deleted


def trash_key(trash: str, key: str) -> str:
    return f"{trash}/{key}"


def tombstone_tagging(retention_days: int, today: datetime.date) -> dict:
    expires = today + datetime.timedelta(days=retention_days)
    return {TAG_TOMBSTONE: str(retention_days), TAG_EXPIRES: expires.isoformat()}


def copy_to_trash(
    client, bucket: str, items: list, trash: str, tags: dict, concurrency: int, transfer_config, threshold: int
) -> dict:
    """Server-side copies of ``items`` (``[(key, obj)]``) to ``{trash}/{key}`` with the tombstone tags and the source
    ETag in the metadata (``_s3.SOURCE_ETAG_META``: a multipart copy has another ETag), ``concurrency`` at a time."""
    copied = {"objects": 0, "bytes": 0}
    lock = threading.Lock()
    tagging = urlencode(tags)

    def one(item):
        key, obj = item
        extra = {
            "Metadata": {_s3.SOURCE_ETAG_META: obj["etag"]},
            "MetadataDirective": "REPLACE",
            "Tagging": tagging,
            "TaggingDirective": "REPLACE",
            "CopySourceIfMatch": obj["etag"],
        }
        source = {"Bucket": bucket, "Key": key}
        if obj["size"] >= threshold:
            client.copy(source, bucket, trash_key(trash, key), ExtraArgs=extra, Config=transfer_config)
        else:
            client.copy_object(aws_retry=True, CopySource=source, Bucket=bucket, Key=trash_key(trash, key), **extra)
        with lock:
            copied["objects"] += 1
            copied["bytes"] += obj["size"]

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        pending = iter(items)
        running = set()
        while True:
            for item in pending:
                running.add(pool.submit(one, item))
                if len(running) >= concurrency:
                    break
            if not running:
                break
            done, running = wait(running, return_when=FIRST_EXCEPTION)
            failure = next((f.exception() for f in done if f.exception() is not None), None)
            if failure is not None:
                wait(running)
                raise failure
    return copied


def trash_state(client, bucket: str, trash: str, old: str, shards: dict) -> tuple[list, list]:
    """``(missing, present)`` lists of ``(key, obj)``: originals without an identical tombstone, and with one."""
    missing: list = []
    present: list = []
    for tsid, objects in sorted(shards.items()):
        listed = _s3.list_objects(client, bucket, trash_key(trash, f"{tree(old)}{tsid}/"))
        for key in ordered(objects, old):
            obj = objects[key]
            same = _s3._same(client, bucket, trash_key(trash, key), obj, listed.get(trash_key(trash, key)))
            (present if same else missing).append((key, obj))
    return missing, present


def sample(keys, size: int = SAMPLE_SIZE) -> list:
    return sorted(keys)[:size]
