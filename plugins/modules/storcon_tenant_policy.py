#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: storcon_tenant_policy
short_description: Set a tenant's shard scheduling policy on a Neon storage controller
version_added: 0.1.0
description:
  - Reads the tenant from C(GET /control/v1/tenant/{tenant_id}) and, when any shard's C(scheduling_policy)
    differs from O(scheduling), sends C(PUT /control/v1/tenant/{tenant_id}/policy) with only C(scheduling)
    (the placement policy is left as it is).
  - V(Stop) makes the controller issue no C(location_config) call for the tenant at all. Set it before a tool
    (such as the M(neonops.storage.tenant_location) module or the C(neonops.storage.tenant_migration) role)
    drives the pageservers directly, and set the previous policy back afterwards, or the controller's
    reconciler undoes the tool's work.
  - V(Pause) never reschedules but still reconciles the current location; V(Essential) allows only moves the
    placement policy or failures require; V(Active) allows everything, including optimisations.
  - A tenant the controller does not know fails, unless O(missing_ok=true).
  - The token needs the C(admin) scope when the storage controller checks tokens.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - Only reads the tenant; reports the policies that would result.
  diff_mode:
    support: full
    details:
      - Before and after map each shard to its scheduling policy.
  idempotent:
    support: full
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
      - The tenant id (32 hexadecimal characters), without a shard suffix. The policy applies to every shard.
    type: str
    required: true
  scheduling:
    description: The shard scheduling policy to set.
    type: str
    required: true
    choices: [Active, Essential, Pause, Stop]
  missing_ok:
    description:
      - When V(true), a tenant the controller does not know is not a failure; nothing is sent and
        RV(found=false).
    type: bool
    default: false
seealso:
  - module: neonops.storage.storcon_tenant_info
  - module: neonops.storage.tenant_location
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Keep the storage controller away from the tenant while the pageservers are driven by hand
  neonops.storage.storcon_tenant_policy:
    api_url: "{{ hostvars[groups['storage_controller'][0]].neon_api_url }}"
    api_token: "{{ neon_storcon_api_token | default(omit) }}"
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
    scheduling: Stop
  register: held

- name: Give the tenant back to the controller with the policy it had
  neonops.storage.storcon_tenant_policy:
    api_url: "{{ hostvars[groups['storage_controller'][0]].neon_api_url }}"
    api_token: "{{ neon_storcon_api_token | default(omit) }}"
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
    scheduling: "{{ held.previous_scheduling | dict2items | map(attribute='value') | first }}"
"""

RETURN = r"""
found:
  description: Whether the storage controller knows the tenant.
  returned: success
  type: bool
  sample: true
previous_scheduling:
  description: Each shard's scheduling policy before the module ran (V({}) when the tenant is unknown).
  returned: success
  type: dict
  sample: {"1f359dd625e519a1a4e8d7509690f6fc-0002": Active, "1f359dd625e519a1a4e8d7509690f6fc-0102": Active}
scheduling:
  description: Each shard's scheduling policy after the module ran (in check mode, what it would be).
  returned: success
  type: dict
  sample: {"1f359dd625e519a1a4e8d7509690f6fc-0002": Stop, "1f359dd625e519a1a4e8d7509690f6fc-0102": Stop}
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
    return neon_argument_spec(
        tenant_id={"type": "str", "required": True},
        scheduling={"type": "str", "required": True, "choices": list(_storcon.SHARD_SCHEDULING_POLICIES)},
        missing_ok={"type": "bool", "default": False},
    )


def main():
    module = neon_module(argument_spec=argument_spec(), supports_check_mode=True)
    tenant_id = validate_or_fail(module, validate_tenant_id, module.params["tenant_id"], "tenant_id")
    wanted = module.params["scheduling"]
    client = client_from_module(module)
    try:
        tenant = _storcon.tenant_or_none(client, tenant_id)
    except NeonAPIError as exc:
        fail_api(module, exc, f"read tenant {tenant_id} on the storage controller", reason=_storcon.failure_reason(exc))
    if tenant is None:
        if module.params["missing_ok"]:
            module.exit_json(changed=False, found=False, previous_scheduling={}, scheduling={})
        module.fail_json(msg=f"tenant_id: the storage controller does not know tenant {tenant_id}", found=False)

    before = _storcon.shard_scheduling(tenant)
    after = dict.fromkeys(before, wanted)
    changed = before != after
    if changed and not module.check_mode:
        try:
            _storcon.set_tenant_scheduling(client, tenant_id, wanted)
        except NeonAPIError as exc:
            fail_api(module, exc, f"set scheduling policy {wanted} for tenant {tenant_id}")
    module.exit_json(
        changed=changed,
        found=True,
        previous_scheduling=before,
        scheduling=after,
        diff={"before": before, "after": after},
    )


if __name__ == "__main__":
    main()
