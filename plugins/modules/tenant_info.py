#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_info
short_description: Read one tenant shard on one Neon pageserver
version_added: 0.1.0
description:
  - Reads the shard's location config (C(GET /v1/location_config/{tenant_shard_id})) and, when it is attached,
    the tenant state (C(GET /v1/tenant/{tenant_shard_id})), every timeline with every LSN field
    (C(GET /v1/tenant/{tenant_shard_id}/timeline)) and its config overrides and effective config
    (C(GET /v1/tenant/{tenant_shard_id}/config)).
  - A Secondary location returns RV(location) with empty RV(tenant) and RV(timelines).
  - A shard that has no slot on the pageserver returns RV(exists=false); this is not an error. Only the
    pageserver's own 404 for the shard counts; a URL that answers 404 for the route itself fails the module.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._attributes.action_group
options:
  tenant_shard_id:
    description:
      - The tenant shard id, V(<tenant_id>) (32 hex characters) for an unsharded tenant or
        V(<tenant_id>-NNCC) for shard NN of CC (two lowercase hex digits each).
    type: str
    required: true
seealso:
  - module: neonops.storage.pageserver_info
  - module: neonops.storage.tenant_location
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Read the tenant on the destination pageserver
  neonops.storage.tenant_info:
    api_url: "{{ hostvars['ps-2'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
  register: dest

- name: Compare the last ingested LSN as integers
  ansible.builtin.assert:
    that: dest.timelines | map(attribute='last_record_lsn_int') | min >= 23689448
"""

RETURN = r"""
exists:
  description: Whether the pageserver has a slot (attached or secondary) for the shard.
  returned: always
  type: bool
attached:
  description: Whether the slot is in one of the C(Attached*) modes. V(false) for Secondary or absent.
  returned: always
  type: bool
in_progress:
  description: V(true) when the slot is being reconfigured right now (the location config reads as V(null)).
  returned: always
  type: bool
location:
  description:
    - The LocationConfig as the pageserver reports it; V(null) when absent or in progress.
  returned: always
  type: dict
  sample:
    mode: AttachedSingle
    generation: 3
    secondary_conf: null
    shard_number: 0
    shard_count: 0
    shard_stripe_size: 2048
    tenant_conf: {"gc_period": "0s"}
tenant:
  description:
    - TenantDetails (C(id), C(state) with C(state.slug), C(generation), C(attachment_status),
      C(current_physical_size), C(timelines), ...). Empty for a Secondary or absent shard.
  returned: always
  type: dict
  sample: {"id": "1f359dd625e519a1a4e8d7509690f6fc", "state": {"slug": "Active"}, "generation": 3}
timelines:
  description:
    - Every timeline's TimelineInfo. Each LSN field (C(last_record_lsn), C(disk_consistent_lsn),
      C(remote_consistent_lsn), C(remote_consistent_lsn_visible), C(ancestor_lsn), ...) is kept as the
      upstream V(X/Y) string and repeated as an integer in C(<field>_int) (V(null) stays V(null)).
    - Empty for a Secondary or absent shard.
  returned: always
  type: list
  elements: dict
  sample:
    - timeline_id: de200bd42b49cc1814412c7e592dd6e9
      last_record_lsn: "0/16960E8"
      last_record_lsn_int: 23689448
config:
  description:
    - C(tenant_specific_overrides) (only the keys set) and C(effective_config) (all keys with defaults).
    - For a Secondary shard, C(tenant_specific_overrides) comes from the location config and
      C(effective_config) is V(null) (the pageserver serves it for attached shards only).
  returned: always
  type: dict
  sample: {"tenant_specific_overrides": {"gc_period": "0s"}, "effective_config": {"gc_period": "0s"}}
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
    result = {
        "changed": False,
        "exists": False,
        "attached": False,
        "in_progress": False,
        "location": None,
        "tenant": {},
        "timelines": [],
        "config": {},
    }
    try:
        location = ps.location_config(client, tsid)
    except NeonAPIError as exc:
        if exc.not_found:  # the pageserver's own 404 for the shard, not a URL that serves something else
            module.exit_json(**result)
        fail_api(module, exc, f"read location config of {tsid}")
    result["exists"] = True
    result["location"] = location
    if location is None:
        result["in_progress"] = True
        module.exit_json(**result)
    if location.get("mode") not in ps.ATTACHED_MODES:
        result["config"] = {"tenant_specific_overrides": location.get("tenant_conf") or {}, "effective_config": None}
        module.exit_json(**result)

    result["attached"] = True
    try:
        result["tenant"] = ps.tenant(client, tsid)
        result["timelines"] = [ps.timeline_with_ints(t) for t in ps.timelines(client, tsid)]
        result["config"] = ps.tenant_config(client, tsid)
    except NeonAPIError as exc:
        fail_api(module, exc, f"read attached tenant shard {tsid}", location=location)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
