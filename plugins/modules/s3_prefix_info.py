#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_prefix_info
short_description: List the Neon tenants stored under a remote storage prefix
version_added: 0.2.0
description:
  - Lists the objects under C({prefix_in_bucket}/tenants/) in an S3 bucket and groups them by tenant and
    tenant shard, following the pageserver's remote key layout (upstream
    C(pageserver/src/tenant/remote_timeline_client.rs)).
  - For each shard it reports the object count and bytes, whether a heatmap (C(heatmap-v1.json)) is there,
    and the newest C(index_part.json-{generation}) of each timeline and of the shard.
  - Only lists objects (C(ListObjectsV2)); it reads no object content.
  - Given the fleet's O(pageservers), it reports which of them are configured with this prefix (prefixes compared
    normalized, in the same bucket) and, with O(locations=true), which of the listed tenants' shards each pageserver
    holds (C(GET /v1/location_config), attached or secondary).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._s3
  - neonops.storage._s3.pageserver_api
options:
  bucket:
    description: The bucket (the pageservers' C(remote_storage.bucket_name)).
    type: str
    required: true
  prefix_in_bucket:
    description:
      - The pageservers' C(remote_storage.prefix_in_bucket), for example V(pageserver/). One trailing C(/) is
        accepted.
      - The bucket root, leading C(/), C(.) and C(..) segments, whitespace and characters outside
        C([A-Za-z0-9_.=+-]) are refused before any request.
    type: str
    required: true
  tenant_id:
    description: Only this tenant (32 hexadecimal characters), with all its shards.
    type: str
  pageservers:
    description:
      - The pageservers that use the bucket (the inventory's C(pageservers) group) and the prefix each is configured
        with; see RV(pageservers).
    type: list
    elements: dict
    suboptions:
      name:
        description: The pageserver's name.
        type: str
        required: true
      api_url:
        description: Its management API URL; needed with O(locations=true).
        type: str
      prefix_in_bucket:
        description: Its C(remote_storage.prefix_in_bucket); V("") or V(/) for the bucket root.
        type: str
        required: true
      bucket:
        description: Its bucket. Defaults to O(bucket).
        type: str
  locations:
    description: Ask every listed pageserver which of the listed tenants' shards it holds (read-only requests).
    type: bool
    default: false
seealso:
  - module: neonops.storage.s3_tenant_copy
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: What is stored under the old prefix
  neonops.storage.s3_prefix_info:
    bucket: "{{ neon_s3_bucket }}"
    prefix_in_bucket: pageserver-old/
    endpoint_url: "{{ neon_s3_endpoint_url | default(omit, true) }}"
    region: "{{ neon_s3_region }}"
  register: old_prefix

- name: Which pageservers use the old prefix, and where its tenants are
  neonops.storage.s3_prefix_info:
    bucket: "{{ neon_s3_bucket }}"
    prefix_in_bucket: pageserver-old/
    pageservers:
      - {name: ps-1, api_url: "http://ps-1:9898", prefix_in_bucket: pageserver-old/}
      - {name: ps-2, api_url: "http://ps-2:9898", prefix_in_bucket: pageserver/}
    locations: true
  register: old_prefix_users

- name: One tenant only
  neonops.storage.s3_prefix_info:
    bucket: "{{ neon_s3_bucket }}"
    prefix_in_bucket: pageserver/
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
"""

RETURN = r"""
bucket:
  description: The bucket listed.
  returned: always
  type: str
prefix_in_bucket:
  description: The normalized prefix (no trailing C(/)).
  returned: always
  type: str
  sample: pageserver
objects:
  description: Objects under C({prefix_in_bucket}/tenants/) (or the one tenant's), recognized or not.
  returned: always
  type: int
bytes:
  description: Their total size.
  returned: always
  type: int
unrecognized:
  description: Objects under C(tenants/) that are not in Neon's key layout (count and bytes).
  returned: always
  type: dict
  sample: {"objects": 0, "bytes": 0}
tenants:
  description: One entry per tenant, sorted by tenant id.
  returned: always
  type: list
  elements: dict
  contains:
    tenant_id:
      description: The tenant id.
      type: str
    objects:
      description: Objects of all its shards.
      type: int
    bytes:
      description: Their total size.
      type: int
    shards:
      description: One entry per tenant shard directory (C(tenants/{tenant_shard_id}/)), sorted.
      type: list
      elements: dict
      contains:
        tenant_shard_id:
          description: V(<tenant_id>) for an unsharded tenant, else V(<tenant_id>-NNCC).
          type: str
        shard_number:
          description: The shard number.
          type: int
        shard_count:
          description: The shard count (V(0) when unsharded).
          type: int
        objects:
          description: Objects under the shard directory.
          type: int
        bytes:
          description: Their total size.
          type: int
        layers:
          description: Layer files under the shard directory.
          type: int
        heatmap:
          description: Whether C(heatmap-v1.json) exists.
          type: bool
        newest_generation:
          description: The highest generation of any of the shard's index_part files; null when there are
            only legacy (suffix-less) index_part files or none.
          type: int
        timelines:
          description: Each timeline's newest index_part.
          type: list
          elements: dict
          contains:
            timeline_id:
              description: The timeline id.
              type: str
            newest_generation:
              description: The generation of its newest index_part (null for a legacy one).
              type: int
            index_part_key:
              description: The full key of that index_part.
              type: str
pageservers:
  description: Each listed pageserver, whether it is configured with this prefix, and (with O(locations=true)) the
    listed tenants' shards it holds.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "ps-1", "prefix_in_bucket": "pageserver-old", "uses_prefix": true,
            "located": ["1f359dd625e519a1a4e8d7509690f6fc"]}]
used_by:
  description: The names of the listed pageservers configured with this prefix.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.neonops.storage.plugins.module_utils import _pageserver, _s3
from ansible_collections.neonops.storage.plugins.module_utils import _s3_release as _rel
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._module import client_for_url

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule (_s3.aws_module) reports the missing library
    BotoCoreError = ClientError = Exception


def main():
    module = _s3.aws_module(
        argument_spec=_s3.argument_spec(
            {
                "bucket": {"type": "str", "required": True},
                "prefix_in_bucket": {"type": "str", "required": True},
                "tenant_id": {"type": "str"},
                "pageservers": {
                    "type": "list",
                    "elements": "dict",
                    "options": {
                        "name": {"type": "str", "required": True},
                        "api_url": {"type": "str"},
                        "prefix_in_bucket": {"type": "str", "required": True},
                        "bucket": {"type": "str"},
                    },
                },
                "locations": {"type": "bool", "default": False},
            },
            pageserver_api=True,
        ),
        supports_check_mode=True,
    )
    try:
        bucket = _s3.validate_bucket(module.params["bucket"], "bucket")
        prefix = _s3.validate_prefix(module.params["prefix_in_bucket"], "prefix_in_bucket")
        tenant_id = module.params["tenant_id"]
        if tenant_id is not None:
            tenant_id = _s3.validate_copy_tenant_id(tenant_id, "tenant_id")
        pageservers = _pageservers(module.params, bucket)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    clients = {}
    if module.params["locations"]:
        clients = {
            ps["name"]: client_for_url(module, ps["api_url"], module.params["api_token"], f"pageservers[{i}].api_url")
            for i, ps in enumerate(pageservers)
        }
    client = _s3.client(module)
    try:
        objects = _s3.list_tenant(client, bucket, prefix, tenant_id)
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=f"list s3://{bucket}/{_s3.tenants_root(prefix)}")
    summary = _s3.summarize(objects, prefix)
    tenant_ids = {t["tenant_id"] for t in summary["tenants"]}
    report = []
    for index, ps in enumerate(pageservers):
        entry = {
            "name": ps["name"],
            "bucket": ps["bucket"],
            "prefix_in_bucket": ps["prefix"],
            "uses_prefix": ps["bucket"] == bucket and ps["prefix"] == prefix,
        }
        if ps["name"] in clients:
            try:
                locations = _pageserver.location_configs(clients[ps["name"]])
            except NeonAPIError as exc:
                module.fail_json(msg=f"pageservers[{index}].api_url: listing the locations of {ps['name']!r}: {exc}")
            entry["located"] = _rel.located_on({ps["name"]: locations}, tenant_ids).get(ps["name"], [])
        report.append(entry)
    module.exit_json(
        changed=False,
        bucket=bucket,
        prefix_in_bucket=prefix,
        objects=len(objects),
        bytes=sum(o["size"] for o in objects.values()),
        unrecognized=summary["other"],
        tenants=summary["tenants"],
        pageservers=report,
        used_by=[p["name"] for p in report if p["uses_prefix"]],
    )


def _pageservers(params, bucket: str) -> list:
    """The validated ``pageservers`` option (prefixes normalized; ``ValueError`` names the entry and field)."""
    out, names = [], set()
    for index, entry in enumerate(params["pageservers"] or []):
        field = f"pageservers[{index}]"
        if entry["name"] in names or not entry["name"]:
            raise ValueError(f"{field}.name: {entry['name']!r} is empty or listed twice")
        names.add(entry["name"])
        if params["locations"] and not entry["api_url"]:
            raise ValueError(f"{field}.api_url: needed with locations=true")
        out.append(
            {
                "name": entry["name"],
                "api_url": entry["api_url"],
                "prefix": _rel.validate_live_prefix(entry["prefix_in_bucket"], f"{field}.prefix_in_bucket"),
                "bucket": _s3.validate_bucket(entry["bucket"], f"{field}.bucket") if entry["bucket"] else bucket,
            }
        )
    return out


if __name__ == "__main__":
    main()
