#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: storcon_tenant_info
short_description: Read a tenant's shards and their placement from a Neon storage controller
version_added: 0.1.0
description:
  - Reads C(GET /control/v1/tenant/{tenant_id}) from the storage controller. It describes every shard with the node
    it is attached to, its secondaries, whether it is reconciling, and the tenant's stripe size, policy and config.
  - A tenant the controller does not know is not a failure. The module returns RV(tenant=null) and
    RV(found=false).
  - A 404 for the route itself (the router's C(page not found)) fails, because O(api_url) then does not point at a
    storage controller.
  - The token needs the C(admin) or C(scrubber) scope when the storage controller checks tokens (an C(infra)
    token is refused on this route).
  - Only reads; never changes anything.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._attributes.action_group
options:
  api_url:
    description:
      - Base URL of the storage controller's HTTP API, for example V(http://storcon.internal:1234).
      - Checked before any request like every O(api_url) (C(http) or C(https), no user information, query or
        fragment, no whitespace, an ASCII host name with parts of 1 to 63 characters).
      - If not set, the value of the E(NEONOPS_API_URL) environment variable is used.
    type: str
    required: true
  tenant_id:
    description:
      - The tenant id (32 hexadecimal characters), without a shard suffix.
    type: str
    required: true
seealso:
  - module: neonops.storage.storcon_node_info
  - module: neonops.storage.tenant_info
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Ask the storage controller where the tenant's shards are attached
  neonops.storage.storcon_tenant_info:
    api_url: "{{ hostvars[groups['storage_controller'][0]].neon_api_url }}"
    api_token: "{{ neon_storcon_api_token | default(omit) }}"
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
  register: described

- name: Show the shards attached to node 1
  ansible.builtin.debug:
    msg: "{{ described.tenant.shards | selectattr('node_attached', 'equalto', 1) | map(attribute='tenant_shard_id') }}"
  when: described.found
"""

RETURN = r"""
tenant:
  description:
    - The tenant description as the storage controller gives it (C(tenant_id), C(shards), C(stripe_size),
      C(policy), C(config)). Each shard carries C(tenant_shard_id), C(node_attached), C(node_secondary),
      C(last_error), C(is_reconciling), C(is_pending_compute_notification), C(is_splitting),
      C(scheduling_policy) and C(preferred_az_id).
    - V(null) when the controller does not know the tenant.
  returned: success
  type: dict
  sample:
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
    shards:
      - tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
        node_attached: 1
        node_secondary: []
        last_error: ""
        is_reconciling: false
        is_pending_compute_notification: false
        is_splitting: false
        scheduling_policy: Active
        preferred_az_id: az-a
    stripe_size: null
    policy: {"Attached": 0}
    config: {}
found:
  description: Whether the storage controller knows the tenant.
  returned: success
  type: bool
  sample: true
"""

from ansible_collections.neonops.storage.plugins.module_utils import _storcon
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_tenant_id
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)


def argument_spec():
    return neon_argument_spec(tenant_id={"type": "str", "required": True})


def main():
    module = neon_module(argument_spec=argument_spec(), supports_check_mode=True)
    tenant_id = validate_or_fail(module, validate_tenant_id, module.params["tenant_id"], "tenant_id")
    client = client_from_module(module)
    try:
        tenant = _storcon.tenant_or_none(client, tenant_id)
    except NeonAPIError as exc:
        fail_api(module, exc, f"read tenant {tenant_id} on the storage controller", reason=_storcon.failure_reason(exc))
    module.exit_json(changed=False, tenant=tenant, found=tenant is not None)


if __name__ == "__main__":
    main()
