#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: pageserver_info
short_description: Read a Neon pageserver's status, utilization and tenant shard locations
version_added: 0.1.0
description:
  - Reads C(GET /v1/status), C(GET /v1/utilization), C(GET /v1/location_config) and C(GET /v1/tenant)
    from one pageserver and returns them as plain data.
  - Only reads; never changes anything.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._attributes.action_group
seealso:
  - module: neonops.storage.tenant_info
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Read every shard location on a pageserver
  neonops.storage.pageserver_info:
    api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    api_token: "{{ neon_pageserver_api_token | default(omit) }}"
  register: ps

- name: Show the attached shards
  ansible.builtin.debug:
    msg: "{{ ps.locations | dict2items | selectattr('value.mode', 'match', 'Attached') | map(attribute='key') }}"
"""

RETURN = r"""
node_id:
  description: The pageserver's node id (from C(GET /v1/status)).
  returned: success
  type: int
  sample: 1
status:
  description: The C(GET /v1/status) body.
  returned: success
  type: dict
  sample: {"id": 1}
utilization:
  description:
    - The C(GET /v1/utilization) body (PageserverUtilization). A C(utilization_score) of
      2000000 or more means overloaded.
  returned: success
  type: dict
  sample:
    disk_usage_bytes: 1024
    free_space_bytes: 100000
    disk_wanted_bytes: 512
    disk_usable_pct: 100
    shard_count: 2
    max_shard_count: 2500
    utilization_score: 800
    captured_at: "2024-02-21T10:02:59.000Z"
locations:
  description:
    - Every tenant shard slot on the node, attached and secondary, keyed by tenant shard id.
    - The value is the LocationConfig (C(mode), C(generation), C(secondary_conf), C(shard_number),
      C(shard_count), C(shard_stripe_size), C(tenant_conf)), or V(null) while the slot is being reconfigured.
  returned: success
  type: dict
  sample:
    1f359dd625e519a1a4e8d7509690f6fc:
      mode: AttachedSingle
      generation: 3
      secondary_conf: null
      shard_number: 0
      shard_count: 0
      shard_stripe_size: 2048
      tenant_conf: {}
tenants:
  description: The C(GET /v1/tenant) list (attached shards only, with their C(state) and C(generation)).
  returned: success
  type: list
  elements: dict
  sample: [{"id": "1f359dd625e519a1a4e8d7509690f6fc", "state": {"slug": "Active"}, "generation": 3}]
"""

from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
)


def main():
    module = neon_module(argument_spec=neon_argument_spec(), supports_check_mode=True)
    client = client_from_module(module)
    result = {"changed": False}
    steps = (
        ("status", "read pageserver status", ps.status),
        ("utilization", "read pageserver utilization", ps.utilization),
        ("locations", "list location configs", ps.location_configs),
        ("tenants", "list attached tenants", ps.tenants),
    )
    for key, attempted, read in steps:
        try:
            result[key] = read(client)
        except NeonAPIError as exc:
            fail_api(module, exc, attempted)
    result["node_id"] = (result["status"] or {}).get("id")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
