#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: heatmap_upload
short_description: Force an attached tenant shard to upload its heatmap now
version_added: 0.1.0
description:
  - Calls C(POST /v1/tenant/{tenant_shard_id}/heatmap_upload) on the pageserver where the shard is attached.
    The pageserver uploads C(tenants/{tenant_shard_id}/heatmap-v1.json) even when nothing changed and even
    when C(heatmap_period) is V(0s).
  - Run it on the origin before warming a secondary with M(neonops.storage.secondary_download).
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - In check mode nothing is sent at all; the module reports RV(ignore:changed=true).
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run uploads a fresh heatmap and reports a change.
options:
  tenant_shard_id:
    description: The tenant shard id, V(<tenant_id>) or V(<tenant_id>-NNCC).
    type: str
    required: true
seealso:
  - module: neonops.storage.secondary_download
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Upload a fresh heatmap on the origin
  neonops.storage.heatmap_upload:
    api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
"""

RETURN = r"""
tenant_shard_id:
  description: The tenant shard whose heatmap was uploaded.
  returned: always
  type: str
  sample: 1f359dd625e519a1a4e8d7509690f6fc
"""

from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._ids import TenantShardId
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)


def main():
    module = neon_module(
        argument_spec=neon_argument_spec(tenant_shard_id={"type": "str", "required": True}),
        supports_check_mode=True,
    )
    tsid = validate_or_fail(module, TenantShardId.parse, module.params["tenant_shard_id"], "tenant_shard_id")
    client = client_from_module(module)
    if module.check_mode:
        module.exit_json(changed=True, tenant_shard_id=str(tsid))
    try:
        ps.heatmap_upload(client, tsid)
    except NeonAPIError as exc:
        reason = "not attached on this pageserver" if exc.not_found else None
        if exc.status == 503:
            reason = "attached here but not Active"
        fail_api(module, exc, f"upload heatmap of {tsid}", reason=reason)
    module.exit_json(changed=True, tenant_shard_id=str(tsid))


if __name__ == "__main__":
    main()
