#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_tenant_copy
short_description: Copy one Neon tenant's remote storage to another bucket or prefix, then verify it
version_added: 0.2.0
description:
  - Copies every object of every shard of a tenant (everything under
    C({prefix_in_bucket}/tenants/{tenant_id}/) and C({prefix_in_bucket}/tenants/{tenant_id}-NNCC/), that is index_part
    generations, layer files, heatmaps, tenant manifests and initdb archives) to the same relative keys under
    O(dest_prefix_in_bucket) in O(dest_bucket), with server-side copies. Nothing passes through the controller.
  - Objects smaller than O(multipart_threshold) take one C(CopyObject); larger ones use boto3's managed copy
    (C(UploadPartCopy) in O(multipart_chunksize) parts). Every copy is conditional on the listed source ETag
    (C(CopySourceIfMatch)) and records that ETag in the object's metadata (C(x-amz-meta-neonops-source-etag)).
  - Layer files and other data are copied first, index_part files and tenant manifests after them, heatmaps
    last, so an interrupted copy never leaves an index_part whose layers are missing.
  - Objects already at the destination with the same size and ETag (or the recorded source ETag, for
    multipart copies) are skipped, so a rerun after an interruption copies only what is missing.
  - Afterwards it lists the destination and checks every source object there (size and ETag), reads the newest
    index_part of every timeline of every shard from the destination and checks that every layer it references
    exists there with the size the index_part records (upstream
    C(pageserver/src/tenant/remote_timeline_client/index.rs)).
    It fails when anything is missing or different.
  - All input is validated before any request; the error names the option.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - neonops.storage._attributes
  - neonops.storage._s3
attributes:
  check_mode:
    support: full
    details:
      - In check mode the module lists the source and the destination and reports what would be copied
        (RV(to_copy), RV(would_copy)); it copies and verifies nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A rerun finds every object at the destination and reports no change (it still verifies).
options:
  bucket:
    description: The source bucket.
    type: str
    required: true
  prefix_in_bucket:
    description:
      - The source C(prefix_in_bucket), for example V(pageserver-a/). One trailing C(/) is accepted.
      - The bucket root, leading C(/), C(.) and C(..) segments, whitespace and characters outside
        C([A-Za-z0-9_.=+-]) are refused before any request.
    type: str
    required: true
  tenant_id:
    description: The tenant to copy (32 hexadecimal characters); all its shards are copied.
    type: str
    required: true
  dest_bucket:
    description: The destination bucket. Defaults to O(bucket).
    type: str
  dest_prefix_in_bucket:
    description:
      - The destination C(prefix_in_bucket), validated like O(prefix_in_bucket).
      - In the same bucket it must differ from O(prefix_in_bucket), and neither may lie inside the other's
        C(tenants/) tree.
    type: str
    required: true
  concurrency:
    description: How many copies run at once (1 to 64).
    type: int
    default: 16
  multipart_threshold:
    description:
      - Objects of this size in bytes or larger are copied with a multipart copy. At least 5 MiB (the S3
        minimum part size) and at most 5 GiB (the C(CopyObject) limit).
    type: int
    default: 67108864
  multipart_chunksize:
    description: The part size of a multipart copy in bytes, 5 MiB to 5 GiB.
    type: int
    default: 67108864
seealso:
  - module: neonops.storage.s3_prefix_info
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: What would be copied
  neonops.storage.s3_tenant_copy:
    bucket: "{{ neon_s3_bucket }}"
    prefix_in_bucket: pageserver-old/
    dest_prefix_in_bucket: pageserver/
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
    endpoint_url: "{{ neon_s3_endpoint_url | default(omit, true) }}"
    region: "{{ neon_s3_region }}"
  check_mode: true
  register: plan

- name: Copy and verify
  neonops.storage.s3_tenant_copy:
    bucket: "{{ neon_s3_bucket }}"
    prefix_in_bucket: pageserver-old/
    dest_prefix_in_bucket: pageserver/
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
    concurrency: 32
"""

RETURN = r"""
tenant_id:
  description: The tenant copied.
  returned: always
  type: str
shards:
  description: The tenant shard directories found at the source.
  returned: always
  type: list
  elements: str
source:
  description: Objects and bytes at the source.
  returned: always
  type: dict
  sample: {"objects": 51, "bytes": 12634112}
to_copy:
  description: Objects and bytes missing or different at the destination when the module started.
  returned: always
  type: dict
  sample: {"objects": 51, "bytes": 12634112}
identical:
  description:
    - Objects and bytes already at the destination (same size and ETag), left alone.
    - Not named C(skipped), which Ansible reserves for a boolean.
  returned: always
  type: dict
copied:
  description: Objects and bytes copied by this run, and how many took a multipart copy (all zero in check mode).
  returned: always
  type: dict
  sample: {"objects": 51, "bytes": 12634112, "multipart": 1}
would_copy:
  description: In check mode, the destination keys that would be copied; empty otherwise.
  returned: always
  type: list
  elements: str
verified:
  description: Source objects found identical at the destination after the copy.
  returned: when not in check mode
  type: dict
mismatched:
  description: Destination keys missing or different after the copy (the module fails when not empty).
  returned: when not in check mode
  type: list
  elements: str
missing_layers:
  description: Layers referenced by a newest index_part but missing (or of another size) at the destination
    (the module fails when not empty).
  returned: when not in check mode
  type: list
  elements: dict
layers_checked:
  description: Layer references checked.
  returned: when not in check mode
  type: int
index_parts_checked:
  description: Newest index_part files read from the destination.
  returned: when not in check mode
  type: int
seconds:
  description: Wall time of listing, copy and verification.
  returned: always
  type: float
"""

from ansible_collections.neonops.storage.plugins.module_utils import _s3

try:
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule (_s3.aws_module) reports the missing library
    BotoCoreError = ClientError = Exception


def _validate(params) -> dict:
    """Every option checked before any request; ValueError names the option."""
    out = {
        "bucket": _s3.validate_bucket(params["bucket"], "bucket"),
        "prefix": _s3.validate_prefix(params["prefix_in_bucket"], "prefix_in_bucket"),
        "tenant_id": _s3.validate_copy_tenant_id(params["tenant_id"], "tenant_id"),
        "dest_prefix": _s3.validate_prefix(params["dest_prefix_in_bucket"], "dest_prefix_in_bucket"),
    }
    dest_bucket = params["dest_bucket"]
    out["dest_bucket"] = out["bucket"] if dest_bucket is None else _s3.validate_bucket(dest_bucket, "dest_bucket")
    _s3.check_distinct(out["bucket"], out["prefix"], out["dest_bucket"], out["dest_prefix"])
    if not 1 <= params["concurrency"] <= 64:
        raise ValueError(f"concurrency: {params['concurrency']} is outside 1..64")
    for name in ("multipart_threshold", "multipart_chunksize"):
        if not _s3.MIN_PART_SIZE <= params[name] <= _s3.MAX_PART_SIZE:
            raise ValueError(f"{name}: {params[name]} is outside {_s3.MIN_PART_SIZE}..{_s3.MAX_PART_SIZE} bytes")
    return out


def s3_client(module):
    """The S3 client, pooled for the copies in flight; a seam for tests."""
    return _s3.client(module, module.params["concurrency"])


def main():
    module = _s3.aws_module(
        argument_spec=_s3.argument_spec(
            {
                "bucket": {"type": "str", "required": True},
                "prefix_in_bucket": {"type": "str", "required": True},
                "tenant_id": {"type": "str", "required": True},
                "dest_bucket": {"type": "str"},
                "dest_prefix_in_bucket": {"type": "str", "required": True},
                "concurrency": {"type": "int", "default": 16},
                "multipart_threshold": {"type": "int", "default": 64 * _s3.MIB},
                "multipart_chunksize": {"type": "int", "default": 64 * _s3.MIB},
            }
        ),
        supports_check_mode=True,
    )
    try:
        opts = _validate(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    concurrency = module.params["concurrency"]
    transfer_config = TransferConfig(
        multipart_threshold=module.params["multipart_threshold"],
        multipart_chunksize=module.params["multipart_chunksize"],
        # parts of one multipart copy run in parallel inside each of the `concurrency` copies: keep the product small
        max_concurrency=min(concurrency, 4),
        use_threads=True,
    )
    client = s3_client(module)
    what = (
        f"copy tenant {opts['tenant_id']} from s3://{opts['bucket']}/{opts['prefix']}/ "
        f"to s3://{opts['dest_bucket']}/{opts['dest_prefix']}/"
    )
    try:
        result = _s3.copy_tenant(
            client,
            opts["bucket"],
            opts["prefix"],
            opts["dest_bucket"],
            opts["dest_prefix"],
            opts["tenant_id"],
            module.check_mode,
            concurrency,
            transfer_config,
            module.params["multipart_threshold"],
        )
    except _s3.CopyInterrupted as exc:
        if not isinstance(exc.cause, (BotoCoreError, ClientError)):
            raise exc.cause from None
        module.fail_json_aws(exc.cause, msg=what, copied=exc.copied)
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=what, copied=None)
    except _s3.S3LayoutError as exc:
        module.fail_json(msg=f"{what}: {exc}")
    if module.check_mode:
        module.exit_json(changed=result["to_copy"]["objects"] > 0, **result)
    changed = result["copied"]["objects"] > 0
    if result["mismatched"] or result["missing_layers"]:
        module.fail_json(
            msg=f"{what}: verification failed: {len(result['mismatched'])} objects missing or different, "
            f"{len(result['missing_layers'])} referenced layers missing at the destination",
            changed=changed,
            **result,
        )
    if not result["source"]["objects"]:
        module.warn(f"tenant {opts['tenant_id']} has no objects under s3://{opts['bucket']}/{opts['prefix']}/tenants/")
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
