#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: storcon_node_info
short_description: Read the pageserver nodes a Neon storage controller knows
version_added: 0.1.0
description:
  - Reads C(GET /control/v1/node/{node_id}) when O(node_id) is given, otherwise the whole list with
    C(GET /control/v1/node), from the storage controller.
  - A O(node_id) the controller does not know is not a failure. The module returns an empty RV(nodes) and
    RV(found=false), so a playbook can decide what an unknown node means.
  - A 404 for the route itself (the router's C(page not found)) fails, because O(api_url) then does not point at a
    storage controller. An unknown node must not be confused with a wrong URL.
  - The token needs the C(infra) or C(admin) scope when the storage controller checks tokens.
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
  node_id:
    description:
      - The pageserver node id to describe. Without it, every registered node is returned, sorted by id.
      - From 0 to 18446744073709551615 (a u64).
    type: int
seealso:
  - module: neonops.storage.storcon_tenant_info
  - module: neonops.storage.tenant_generation
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Read node 2 on the storage controller
  neonops.storage.storcon_node_info:
    api_url: "{{ hostvars[groups['storage_controller'][0]].neon_api_url }}"
    api_token: "{{ neon_storcon_api_token | default(omit) }}"
    node_id: 2
  register: node

- name: Refuse a node that is draining
  ansible.builtin.assert:
    that: not node.found or node.nodes[0].scheduling not in ['Draining', 'PauseForRestart', 'Deleting']

- name: List the nodes that may receive new shards
  neonops.storage.storcon_node_info:
    api_url: "{{ hostvars[groups['storage_controller'][0]].neon_api_url }}"
  register: all_nodes

- name: Show them
  ansible.builtin.debug:
    msg: >-
      {{ all_nodes.nodes | selectattr('availability', 'equalto', 'Active')
         | selectattr('scheduling', 'in', ['Active', 'Filling']) | map(attribute='id') }}
"""

RETURN = r"""
nodes:
  description:
    - The node descriptions as the storage controller gives them (C(id), C(availability), C(scheduling),
      C(availability_zone_id) and the listen addresses and ports).
    - With O(node_id), one element, or none when the controller does not know the node.
  returned: success
  type: list
  elements: dict
  sample:
    - id: 2
      availability: Active
      scheduling: Active
      availability_zone_id: az-a
      listen_http_addr: ps-2.internal
      listen_http_port: 9898
      listen_pg_addr: ps-2.internal
      listen_pg_port: 64000
found:
  description: Whether RV(nodes) is not empty (with O(node_id), whether the controller knows that node).
  returned: success
  type: bool
  sample: true
"""

from ansible_collections.neonops.storage.plugins.module_utils import _storcon
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_node_id
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)


def argument_spec():
    return neon_argument_spec(node_id={"type": "int"})


def main():
    module = neon_module(argument_spec=argument_spec(), supports_check_mode=True)
    node_id = module.params["node_id"]
    if node_id is not None:
        node_id = validate_or_fail(module, validate_node_id, node_id, "node_id")
    client = client_from_module(module)
    attempted = "list storage controller nodes"
    if node_id is not None:
        attempted = f"read node {node_id} on the storage controller"
    try:
        nodes = _storcon.nodes(client, node_id)
    except NeonAPIError as exc:
        fail_api(module, exc, attempted, reason=_storcon.failure_reason(exc))
    module.exit_json(changed=False, nodes=nodes, found=bool(nodes))


if __name__ == "__main__":
    main()
