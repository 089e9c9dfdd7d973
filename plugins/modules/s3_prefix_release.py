#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_prefix_release
short_description: Release an old Neon remote storage prefix, or one tenant under it, once nothing can need it
version_added: 0.2.0
description:
  - Removes the tenant data under C({prefix_in_bucket}/tenants/) (every tenant shard directory), or only one
    tenant's shard directories (C(tenants/{tenant_id}/) and C(tenants/{tenant_id}-NNCC/)), after the tenants were
    consolidated into O(consolidated_prefix_in_bucket) (for example with M(neonops.storage.s3_tenant_copy) and a move
    to a pageserver that reads the consolidated prefix).
  - This is the only module of the collection that deletes customer data. It refuses, and changes nothing, unless
    every guard below holds. Check mode runs every guard too and lists exactly what would go.
  - Input. The prefixes must be normalized (see O(prefix_in_bucket)); O(tenant_id) is 32 hexadecimal characters.
  - C(live_prefix). The prefix to release must not be, be a parent of, or lie inside the tenant tree of the
    consolidated prefix or of any listed pageserver's prefix in the same bucket.
  - C(prefix_in_use). To release a whole prefix, no listed pageserver may still be configured with it. To release
    one tenant, pageservers may still use the prefix for other tenants (see C(still_located)).
  - C(consolidated_not_live). At least one listed pageserver must be configured with the consolidated prefix.
  - C(trash_overlap). The trash prefix must not be, contain or lie below any of those prefixes.
  - C(not_consolidated). Every tenant shard directory to release must exist in the consolidated prefix with an
    index_part, and every timeline with an index_part there must have one of an equal or newer generation there.
  - C(missing_layers). Every layer the newest consolidated index_part of those timelines references must be in the
    consolidated prefix, with the size the index_part records.
  - C(still_located). No listed pageserver configured with the prefix may hold a location of the tenant (attached,
    secondary or in progress, C(GET /v1/location_config)); every listed pageserver must answer
    (C(pageserver_unanswered) otherwise).
  - C(confirm). In O(mode=delete), O(confirm) must equal the release target.
  - Listing uses delimiter semantics, one tenant shard directory at a time, so C(tenants/abc) never matches
    C(tenants/abcd); objects below C(tenants/) outside a tenant shard directory are never released (RV(kept)).
    Every key is checked again against the validated shard directories right before its delete batch is sent.
  - O(mode=tombstone) moves the objects under O(trash_prefix) (server-side copies with object tags, verified, then
    the originals deleted). A lifecycle rule on the trash prefix and the C(neonops-tombstone) tag expires them;
    until then the data can be copied back (docs/runbooks/release-s3-prefix.md).
  - Resumable. A rerun after an interruption copies only the tombstones that are missing, and deletes what is left.
  - The pageservers' management API is reached with O(api_token), O(ca_path) and O(validate_certs).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - neonops.storage._attributes
  - neonops.storage._s3
  - neonops.storage._s3.pageserver_api
attributes:
  check_mode:
    support: full
    details:
      - Check mode lists, reads the consolidated index_parts and asks the pageservers (only C(GET) requests), runs
        every guard and reports what would go (RV(release)); it copies, tags and deletes nothing.
  diff_mode:
    support: full
    details:
      - The diff shows the objects and bytes under the release target before and after.
  idempotent:
    support: full
    details:
      - A rerun finds nothing left under the release target and reports no change.
options:
  bucket:
    description: The bucket of the prefix to release.
    type: str
    required: true
  prefix_in_bucket:
    description:
      - The prefix to release, as in a pageserver's C(remote_storage.prefix_in_bucket), for example V(pageserver-a/).
      - It is normalized by removing one trailing C(/); V(pageserver-a) and V(pageserver-a/) are the same prefix.
      - Refused before any request, naming this option, when empty, the bucket root (V(/)), starting with C(/),
        with empty, C(.) or C(..) segments (V(a//b), V(a/../b)), with whitespace or control characters anywhere
        (a trailing space included), with non-ASCII characters (fullwidth solidus, Cyrillic look-alikes) or with
        characters outside C([A-Za-z0-9_.=+-]) in a segment.
    type: str
    required: true
  tenant_id:
    description:
      - Release only this tenant (32 hexadecimal characters), with all its shards. Without it the whole prefix's
        tenant data is released.
    type: str
  consolidated_bucket:
    description: The bucket of the consolidated prefix. Defaults to O(bucket).
    type: str
  consolidated_prefix_in_bucket:
    description: The prefix the tenants were consolidated into, validated like O(prefix_in_bucket).
    type: str
    required: true
  pageservers:
    description:
      - Every pageserver that uses the bucket (the inventory's C(pageservers) group), with the prefix it is
        configured with. The module asks each one for its locations.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The pageserver's name (for messages).
        type: str
        required: true
      api_url:
        description: Its management API URL, for example V(http://ps-1:9898).
        type: str
        required: true
      prefix_in_bucket:
        description:
          - Its C(remote_storage.prefix_in_bucket), validated like O(prefix_in_bucket); V("") or V(/) for the
            bucket root.
        type: str
        required: true
      bucket:
        description: Its bucket. Defaults to O(bucket).
        type: str
  mode:
    description:
      - V(tombstone) moves the objects under O(trash_prefix) with the tombstone tags, then deletes the originals.
      - V(delete) deletes them permanently; it needs O(confirm).
    type: str
    choices: [tombstone, delete]
    default: tombstone
  confirm:
    description:
      - With O(mode=delete), the release target exactly (RV(target)), that is O(prefix_in_bucket) normalized,
        for example V(pageserver-a), or V(pageserver-a/tenants/<tenant_id>) with O(tenant_id). One trailing C(/) is
        accepted.
    type: str
  trash_prefix:
    description:
      - Where O(mode=tombstone) moves the objects, in the same bucket, keeping their keys (C({trash_prefix}/{key})).
        Validated like O(prefix_in_bucket); must not overlap the prefix to release, the consolidated prefix or a
        pageserver's prefix.
    type: str
    default: neonops-trash
  retention_days:
    description:
      - The tombstones' retention, in days (1 to 3650), recorded in the C(neonops-tombstone) tag and as a date in the
        C(neonops-expires) tag. A lifecycle rule with the filter C(neonops-tombstone=<days>) on the trash prefix and
        the same expiration in days removes them.
    type: int
    default: 30
  batch_size:
    description: Keys per C(DeleteObjects) request (1 to 1000).
    type: int
    default: 1000
  concurrency:
    description: How many tombstone copies run at once (1 to 64).
    type: int
    default: 16
  multipart_threshold:
    description: Objects of this size in bytes or larger are moved with a multipart copy (5 MiB to 5 GiB).
    type: int
    default: 67108864
seealso:
  - module: neonops.storage.s3_prefix_info
  - module: neonops.storage.s3_tenant_copy
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: What releasing the old prefix would remove (and whether every guard holds)
  neonops.storage.s3_prefix_release:
    bucket: "{{ neon_s3_bucket }}"
    prefix_in_bucket: pageserver-old/
    consolidated_prefix_in_bucket: pageserver/
    pageservers: >-
      {{ groups['pageservers'] | map('extract', hostvars)
         | json_query('[].{name: inventory_hostname, api_url: neon_api_url, prefix_in_bucket: neon_s3_prefix}') }}
    api_token: "{{ neon_pageserver_api_token | default(omit) }}"
    endpoint_url: "{{ neon_s3_endpoint_url | default(omit, true) }}"
    region: "{{ neon_s3_region }}"
  check_mode: true
  register: plan

- name: Move one tenant's old copy to the trash
  neonops.storage.s3_prefix_release:
    bucket: "{{ neon_s3_bucket }}"
    prefix_in_bucket: pageserver-old/
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
    consolidated_prefix_in_bucket: pageserver/
    pageservers:
      - {name: ps-1, api_url: "http://ps-1:9898", prefix_in_bucket: pageserver-old/}
      - {name: ps-2, api_url: "http://ps-2:9898", prefix_in_bucket: pageserver/}

- name: Delete the whole old prefix's tenant data permanently
  neonops.storage.s3_prefix_release:
    bucket: "{{ neon_s3_bucket }}"
    prefix_in_bucket: pageserver-old/
    consolidated_prefix_in_bucket: pageserver/
    pageservers: "{{ release_pageservers }}"
    mode: delete
    confirm: pageserver-old
"""

RETURN = r"""
target:
  description: What is released, the value O(confirm) must equal in O(mode=delete).
  returned: always
  type: str
  sample: pageserver-old/tenants/1f359dd625e519a1a4e8d7509690f6fc
mode:
  description: The mode.
  returned: always
  type: str
release:
  description:
    - What the release covers when the module started (all of it is removed unless the module fails), with a sorted
      sample of the keys.
  returned: always
  type: dict
  sample: {"objects": 51, "bytes": 12634112, "shards": 2, "sample": ["pageserver-old/tenants/..."]}
tenants:
  description: Per tenant shard directory released, the newest index_part generation in both prefixes.
  returned: always
  type: list
  elements: dict
  sample: [{"tenant_shard_id": "1f359dd625e519a1a4e8d7509690f6fc", "objects": 51, "bytes": 12634112,
            "released_generation": 3, "consolidated_generation": 4}]
kept:
  description: Objects below C(tenants/) outside any tenant shard directory; never released (count, bytes, sample).
  returned: always
  type: dict
pageservers:
  description: Each listed pageserver, what its prefix is to this release and the tenants' shards located there.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "ps-1", "prefix_in_bucket": "pageserver-old", "reads": "released", "located": []}]
checks:
  description: Index_parts read and layer references checked in the consolidated prefix.
  returned: always
  type: dict
  sample: {"index_parts": 2, "layers": 48}
refusals:
  description: Every guard that refused (C(code), C(field), C(msg)); the module fails when not empty.
  returned: always
  type: list
  elements: dict
trash:
  description: In tombstone mode, where the objects go and the tags they get.
  returned: when O(mode=tombstone)
  type: dict
  sample: {"key_prefix": "neonops-trash/pageserver-old/tenants/", "tags": {"neonops-tombstone": "30",
           "neonops-expires": "2026-01-01"}}
tombstoned:
  description: Tombstone copies made by this run, and originals already in the trash (identical) when it started.
  returned: when O(mode=tombstone)
  type: dict
  sample: {"copied": 51, "copied_bytes": 12634112, "already_in_trash": 0}
deleted:
  description: Originals deleted by this run (objects, bytes, DeleteObjects batches); all zero in check mode.
  returned: always
  type: dict
"""

import datetime

from ansible_collections.neonops.storage.plugins.module_utils import _pageserver, _s3
from ansible_collections.neonops.storage.plugins.module_utils import _s3_release as _rel
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._module import client_for_url

try:
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule (_s3.aws_module) reports the missing library
    BotoCoreError = ClientError = Exception

ARGUMENT_SPEC = _s3.argument_spec(
    {
        "bucket": {"type": "str", "required": True},
        "prefix_in_bucket": {"type": "str", "required": True},
        "tenant_id": {"type": "str"},
        "consolidated_bucket": {"type": "str"},
        "consolidated_prefix_in_bucket": {"type": "str", "required": True},
        "pageservers": {
            "type": "list",
            "elements": "dict",
            "required": True,
            "options": {
                "name": {"type": "str", "required": True},
                "api_url": {"type": "str", "required": True},
                "prefix_in_bucket": {"type": "str", "required": True},
                "bucket": {"type": "str"},
            },
        },
        "mode": {"type": "str", "choices": ["tombstone", "delete"], "default": "tombstone"},
        "confirm": {"type": "str"},
        "trash_prefix": {"type": "str", "default": _rel.DEFAULT_TRASH_PREFIX},
        "retention_days": {"type": "int", "default": 30},
        "batch_size": {"type": "int", "default": _rel.MAX_DELETE_BATCH},
        "concurrency": {"type": "int", "default": 16},
        "multipart_threshold": {"type": "int", "default": 64 * _s3.MIB},
    },
    pageserver_api=True,
)


def _range(params, name, low, high):
    value = params[name]
    if isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name}: {value!r} is outside {low}..{high}")


def validate(params) -> dict:
    """Every option checked before any request; ``ValueError`` names the option and the value."""
    out = {
        "bucket": _s3.validate_bucket(params["bucket"], "bucket"),
        "prefix": _s3.validate_prefix(params["prefix_in_bucket"], "prefix_in_bucket"),
        "consolidated": _s3.validate_prefix(params["consolidated_prefix_in_bucket"], "consolidated_prefix_in_bucket"),
        "trash": _s3.validate_prefix(params["trash_prefix"], "trash_prefix"),
        "tenant_id": None,
    }
    if params["tenant_id"] is not None:
        out["tenant_id"] = _s3.validate_copy_tenant_id(params["tenant_id"], "tenant_id")
    cbucket = params["consolidated_bucket"]
    if cbucket is None:
        out["consolidated_bucket"] = out["bucket"]
    else:
        out["consolidated_bucket"] = _s3.validate_bucket(cbucket, "consolidated_bucket")
    _range(params, "retention_days", 1, 3650)
    _range(params, "batch_size", 1, _rel.MAX_DELETE_BATCH)
    _range(params, "concurrency", 1, 64)
    _range(params, "multipart_threshold", _s3.MIN_PART_SIZE, _s3.MAX_PART_SIZE)
    _range(params, "retries", 0, 100)
    if not 0 < params["timeout"] <= 86400:
        raise ValueError(f"timeout: {params['timeout']!r} is outside (0, 86400] seconds")
    if params["mode"] != "delete" and params["confirm"] is not None:
        raise ValueError("confirm: only mode=delete takes a confirmation")
    pageservers, names = [], set()
    for index, entry in enumerate(params["pageservers"]):
        field = f"pageservers[{index}]"
        name = entry["name"]
        if not name or name != name.strip() or not name.isprintable() or len(name) > 255:
            raise ValueError(f"{field}.name: invalid name {name!r}")
        if name in names:
            raise ValueError(f"{field}.name: {name!r} is listed twice")
        names.add(name)
        bucket = entry["bucket"]
        pageservers.append(
            {
                "name": name,
                "api_url": entry["api_url"],
                "prefix": _rel.validate_live_prefix(entry["prefix_in_bucket"], f"{field}.prefix_in_bucket"),
                "bucket": out["bucket"] if bucket is None else _s3.validate_bucket(bucket, f"{field}.bucket"),
            }
        )
    out["pageservers"] = pageservers
    return out


def s3_client(module):
    """The S3 client, pooled for the tombstone copies in flight; a seam for tests."""
    return _s3.client(module, module.params["concurrency"])


def ask_pageservers(clients: dict) -> tuple[dict, list]:
    """``GET /v1/location_config`` on every pageserver (read-only): ``({name: {tsid: config}}, refusals)``."""
    locations, problems = {}, []
    for index, (name, client) in enumerate(clients.items()):
        try:
            locations[name] = _pageserver.location_configs(client)
        except NeonAPIError as exc:
            problems.append(
                _rel.refusal(
                    _rel.PAGESERVER_UNANSWERED,
                    f"pageservers[{index}].api_url",
                    f"pageserver {name!r} did not list its locations: {exc}",
                )
            )
    return locations, problems


def _fail_refused(module, refusals, result):
    result = dict(result, refusals=refusals)
    module.fail_json(msg=f"refusing to release: {'; '.join(r['msg'] for r in refusals)}", changed=False, **result)


def main():
    module = _s3.aws_module(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        opts = validate(params)
    except ValueError as exc:
        module.fail_json(msg=str(exc), changed=False)
    bucket, old, tenant_id = opts["bucket"], opts["prefix"], opts["tenant_id"]
    target = _rel.release_target(old, tenant_id)
    result = {"target": target, "mode": params["mode"], "refusals": [], "deleted": {"objects": 0, "bytes": 0}}
    try:
        readers = _rel.check_plan_inputs(
            bucket,
            old,
            tenant_id,
            opts["consolidated_bucket"],
            opts["consolidated"],
            opts["trash"],
            opts["pageservers"],
        )
        if params["mode"] == "delete":
            _rel.check_confirm(params["confirm"], target)
    except _rel.Refused as exc:
        _fail_refused(module, exc.refusals, result)
    # every URL is validated (client_for_url fails naming the field) before the first request
    clients = {
        ps["name"]: client_for_url(module, ps["api_url"], params["api_token"], f"pageservers[{i}].api_url")
        for i, ps in enumerate(opts["pageservers"])
    }
    client = s3_client(module)
    where = f"s3://{bucket}/{target}"
    try:
        listing = _rel.list_release(client, bucket, old, tenant_id)
        shards = listing["shards"]
        tenant_ids = {tsid[:32] for tsid in shards}
        if tenant_id is not None:
            tenant_ids.add(tenant_id)
        locations, refusals = ask_pageservers(clients)
        problems, checks, generations = _rel.consolidation_problems(
            client, shards, old, opts["consolidated_bucket"], opts["consolidated"]
        )
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=f"reading {where} and the consolidated prefix", changed=False)
    except _s3.S3LayoutError as exc:
        module.fail_json(msg=f"reading {where}: {exc}", changed=False)
    refusals += problems + _rel.location_problems(locations, readers["old"], tenant_ids)
    located = _rel.located_on(locations, tenant_ids)
    objects = {key: obj for shard in shards.values() for key, obj in shard.items()}
    sizes = {key: obj["size"] for key, obj in objects.items()}
    total_bytes = sum(sizes.values())
    result.update(
        release={
            "objects": len(objects),
            "bytes": total_bytes,
            "shards": len(shards),
            "sample": _rel.sample(objects),
        },
        tenants=[
            {
                "tenant_shard_id": tsid,
                "objects": len(shards[tsid]),
                "bytes": sum(o["size"] for o in shards[tsid].values()),
                "released_generation": _none_if_legacy(generations.get(tsid, {}).get("released")),
                "consolidated_generation": _none_if_legacy(generations.get(tsid, {}).get("consolidated")),
            }
            for tsid in sorted(shards)
        ],
        kept={
            "objects": len(listing["kept"]),
            "bytes": sum(o["size"] for o in listing["kept"].values()),
            "sample": _rel.sample(listing["kept"]),
        },
        pageservers=[
            {
                "name": ps["name"],
                "bucket": ps["bucket"],
                "prefix_in_bucket": ps["prefix"],
                "reads": "released"
                if ps["name"] in readers["old"]
                else "consolidated"
                if ps["name"] in readers["consolidated"]
                else "other",
                "located": located.get(ps["name"], []),
            }
            for ps in opts["pageservers"]
        ],
        checks=checks,
        refusals=refusals,
    )
    if params["mode"] == "tombstone":
        tags = _rel.tombstone_tagging(params["retention_days"], _today_utc())
        result["trash"] = {"prefix": opts["trash"], "key_prefix": f"{opts['trash']}/{_rel.tree(old)}", "tags": tags}
        result["tombstoned"] = {"copied": 0, "copied_bytes": 0, "already_in_trash": 0}
    if refusals:
        _fail_refused(module, refusals, result)
    if module._diff:
        result["diff"] = {
            "before": {"target": target, "objects": len(objects), "bytes": total_bytes},
            "after": {"target": target, "objects": 0, "bytes": 0},
        }
    if not objects:
        if not listing["kept"] and module.check_mode:
            module.warn(f"nothing to release under {where}")
        module.exit_json(changed=False, **result)
    if module.check_mode:
        module.exit_json(changed=True, **result)

    try:
        check = _rel.deletable_check(old, shards)
        if params["mode"] == "tombstone":
            missing, present = _rel.trash_state(client, bucket, opts["trash"], old, shards)
            result["tombstoned"]["already_in_trash"] = len(present)
            transfer = TransferConfig(multipart_threshold=params["multipart_threshold"], max_concurrency=4)
            copied = _rel.copy_to_trash(
                client,
                bucket,
                missing,
                opts["trash"],
                tags,
                params["concurrency"],
                transfer,
                params["multipart_threshold"],
            )
            result["tombstoned"].update(copied=copied["objects"], copied_bytes=copied["bytes"])
            # verified again after the copies: only originals with an identical tombstone are deleted
            unverified, _present = _rel.trash_state(client, bucket, opts["trash"], old, shards)
            if unverified:
                module.fail_json(
                    msg=f"{where}: {len(unverified)} tombstones missing or different after the copy, first "
                    f"{_rel.trash_key(opts['trash'], unverified[0][0])}; nothing deleted",
                    changed=copied["objects"] > 0,
                    **result,
                )
        result["deleted"] = _rel.delete_keys(
            client, bucket, _rel.ordered(objects, old), sizes, check, params["batch_size"]
        )
        after = _rel.list_release(client, bucket, old, tenant_id)["shards"]
    except _rel.KeyOutsideRelease as exc:
        module.fail_json(msg=str(exc), changed=bool(result["deleted"]["objects"]), **result)
    except (BotoCoreError, ClientError, RuntimeError) as exc:
        changed = bool(result["deleted"]["objects"] or result.get("tombstoned", {}).get("copied"))
        msg = f"releasing {where} (a rerun resumes)"
        if isinstance(exc, RuntimeError):
            module.fail_json(msg=f"{msg}: {exc}", changed=changed, **result)
        module.fail_json_aws(exc, msg=msg, changed=changed, **result)
    left = sum(len(v) for v in after.values())
    if left:
        module.fail_json(
            msg=f"{where}: {left} objects are there after the release (written meanwhile: is a pageserver still "
            "using this prefix?)",
            changed=True,
            **result,
        )
    module.exit_json(changed=True, **result)


def _today_utc() -> datetime.date:
    return datetime.datetime.now(datetime.timezone.utc).date()  # noqa: UP017 - modules also run on Python < 3.11


def _none_if_legacy(gen):
    return None if gen is None or gen < 0 else gen


if __name__ == "__main__":
    main()
