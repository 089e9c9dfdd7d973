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
  - Uses the AWS connection options of amazon.aws (region, endpoint, credentials, profiles). It is not in
    the C(neonops.storage.neon) action group.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._attributes.s3_action_group
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
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.neonops.storage.plugins.module_utils import _s3

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule reports the missing library
    BotoCoreError = ClientError = Exception


def main():
    module = AnsibleAWSModule(
        argument_spec={
            "bucket": {"type": "str", "required": True},
            "prefix_in_bucket": {"type": "str", "required": True},
            "tenant_id": {"type": "str"},
        },
        supports_check_mode=True,
    )
    try:
        bucket = _s3.validate_bucket(module.params["bucket"], "bucket")
        prefix = _s3.validate_prefix(module.params["prefix_in_bucket"], "prefix_in_bucket")
        tenant_id = module.params["tenant_id"]
        if tenant_id is not None:
            tenant_id = _s3.validate_copy_tenant_id(tenant_id, "tenant_id")
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    client = module.client("s3", retry_decorator=AWSRetry.jittered_backoff())
    try:
        objects = _s3.list_tenant(client, bucket, prefix, tenant_id)
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=f"list s3://{bucket}/{_s3.tenants_root(prefix)}")
    summary = _s3.summarize(objects, prefix)
    module.exit_json(
        changed=False,
        bucket=bucket,
        prefix_in_bucket=prefix,
        objects=len(objects),
        bytes=sum(o["size"] for o in objects.values()),
        unrecognized=summary["other"],
        tenants=summary["tenants"],
    )


if __name__ == "__main__":
    main()
