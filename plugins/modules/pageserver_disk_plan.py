#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: pageserver_disk_plan
short_description: Read the pageservers' disk use and plan which tenants to move off a full one
version_added: 0.3.0
description:
  - Reads C(GET /v1/utilization) on every pageserver of O(pageservers) and returns each one's disk use.
  - With O(destination), also plans a relief of O(source) (default the fullest pageserver) onto it. The tenant
    sizes are the C(current_physical_size) of each shard attached on the source (C(GET /v1/tenant) and
    C(GET /v1/tenant/{tenant_shard_id})), a tenant's shards summed.
  - With O(tenants), exactly those tenants move, in that order. Without, the largest tenants of the source move,
    largest first, until its projected use is at or under O(target_pct), at most O(max_tenants) of them.
  - Refuses before anything moves when the target cannot be reached with O(max_tenants) moves, when the destination
    would end above O(destination_max_pct), when source and destination are the same node or use different remote
    storage (bucket or C(prefix_in_bucket)), or when a listed tenant is not attached on the source.
  - The storage controller never moves tenants because a disk is full (its optimiser ignores utilization), so this
    plan is the decision; the C(neonops.storage.provision_pageserver) playbook then moves each tenant with the
    C(neonops.storage.tenant_migration) role.
  - Only reads; never changes anything.
extends_documentation_fragment:
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._attributes.action_group
options:
  pageservers:
    description:
      - The fleet's pageservers, for example C(groups['pageservers'] | neonops.storage.migration_nodes(hostvars)).
      - Each item has C(name) and C(api_url), and optionally C(node_id), C(s3_bucket) and C(s3_prefix).
    type: list
    elements: dict
    required: true
  api_token:
    description:
      - Bearer token for the pageservers' management API.
      - If not set, the value of the E(NEONOPS_API_TOKEN) environment variable is used.
    type: str
  source:
    description: The pageserver to relieve (name or node id); empty for the fullest one.
    type: str
    default: ""
  destination:
    description: The pageserver to move tenants onto (name or node id); empty to only read the disk use.
    type: str
    default: ""
  tenants:
    description: Move exactly these tenants (ids), in this order, instead of choosing the largest.
    type: list
    elements: str
    default: []
  target_pct:
    description:
      - Choose the largest tenants until the source's projected disk use is at or under this percentage.
      - More than 0 and less than 100; checked, like every option, before any request.
    type: float
    default: 50
  max_tenants:
    description: Move at most this many tenants when choosing the largest (1 to 10000).
    type: int
    default: 10
  destination_max_pct:
    description: Refuse a plan that would fill the destination above this percentage (more than 0, at most 100).
    type: float
    default: 80
  validate_certs:
    description:
      - Verify the servers' TLS certificates for C(https) URLs.
      - If not set, the value of the E(NEONOPS_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - PEM bundle of the CAs to trust for C(https) URLs.
      - If not set, the value of the E(NEONOPS_CA_PATH) environment variable is used.
    type: path
  timeout:
    description:
      - Seconds each request may take.
      - If not set, the value of the E(NEONOPS_TIMEOUT) environment variable is used.
    type: float
    default: 30
  retries:
    description: How often a failed read is retried.
    type: int
    default: 3
seealso:
  - module: neonops.storage.pageserver_info
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Plan the relief of the fullest pageserver onto ps4 down to 50 %
  neonops.storage.pageserver_disk_plan:
    pageservers: "{{ groups['pageservers'] | neonops.storage.migration_nodes(hostvars) }}"
    api_token: "{{ neon_pageserver_api_token | default(omit) }}"
    destination: ps4
    target_pct: 50
  register: relief

- name: Show it
  ansible.builtin.debug:
    msg: "{{ relief.lines }}"
"""

RETURN = r"""
disk:
  description: Each pageserver's disk use, by name (C(node_id), C(used_bytes), C(free_bytes), C(capacity_bytes),
    C(pct)).
  returned: success
  type: dict
  sample: {"ps3": {"node_id": 3, "used_bytes": 85, "free_bytes": 15, "capacity_bytes": 100, "pct": 85.0}}
plan:
  description:
    - The moves (C(tenant_id), C(size_bytes), C(source_pct_after), C(destination_pct_after)), the C(projected)
      source and destination percentages, C(source), C(destination), C(mode) (V(list) or V(largest)) and
      C(moved_bytes). V(null) without O(destination).
  returned: success
  type: dict
lines:
  description: The plan as readable lines.
  returned: success
  type: list
  elements: str
"""

from ansible_collections.neonops.storage.plugins.module_utils import _disk_plan, _pageserver
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._echo import echo
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_tenant_id
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    NEON_CONNECTION_SPEC,
    client_for_url,
    fail_api,
    neon_module,
    option_problem,
    validate_or_fail,
)


def argument_spec():
    connection = {k: v for k, v in NEON_CONNECTION_SPEC.items() if k != "api_url"}
    return {
        **connection,
        "pageservers": {"type": "list", "elements": "dict", "required": True},
        "source": {"type": "str", "default": ""},
        "destination": {"type": "str", "default": ""},
        "tenants": {"type": "list", "elements": "str", "default": []},
        "target_pct": {"type": "float", "default": 50.0},
        "max_tenants": {"type": "int", "default": 10},
        "destination_max_pct": {"type": "float", "default": 80.0},
    }


def resolve(nodes: list, wanted: str, field: str, module) -> dict:
    for node in nodes:
        if wanted in (node["name"], str(node.get("node_id"))):
            return node
    module.fail_json(msg=f"{field}: no pageserver named {echo(wanted)} (known: {echo([n['name'] for n in nodes])})")


def read_sizes(module, client, name: str) -> dict:
    try:
        shards = {t["id"]: None for t in _pageserver.tenants(client)}
        for tsid in shards:
            shards[tsid] = _pageserver.tenant(client, tsid).get("current_physical_size") or 0
    except NeonAPIError as exc:
        fail_api(module, exc, f"read the tenant sizes on {name}")
    return _disk_plan.tenant_sizes(shards)


def checked_nodes(module) -> list:
    """The pageserver entries, each with a name, an api_url and an optional integer node_id; names unique."""
    nodes = []
    for index, item in enumerate(module.params["pageservers"]):
        if not isinstance(item.get("name"), str) or not item["name"] or not isinstance(item.get("api_url"), str):
            module.fail_json(msg=f"pageservers[{index}]: needs a name and an api_url, got {echo(sorted(item))}")
        problem = option_problem(f"pageservers[{index}].node_id", item.get("node_id"), {"type": "int"})
        if problem:
            module.fail_json(msg=problem)
        if any(node["name"] == item["name"] for node in nodes):
            module.fail_json(msg=f"pageservers[{index}].name: {echo(item['name'])} is listed twice")
        nodes.append(item)
    return nodes


def check_choices(module, nodes: list) -> None:
    """Everything the plan refuses on its own that needs no server: checked before any request."""
    p = module.params
    for field in ("source", "destination"):
        if p[field]:
            resolve(nodes, p[field], field, module)
    if (
        p["source"]
        and p["destination"]
        and resolve(nodes, p["source"], "source", module) is resolve(nodes, p["destination"], "destination", module)
    ):
        module.fail_json(msg=f"destination: {echo(p['destination'])} is also the source; choose another pageserver")
    if p["target_pct"] >= 100:
        module.fail_json(msg=f"target_pct: must be less than 100, got {p['target_pct']:g}")
    for index, value in enumerate(p["tenants"]):
        validate_or_fail(module, validate_tenant_id, value, f"tenants[{index}]", f"tenants[{index}]")


def main():
    module = neon_module(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    nodes = checked_nodes(module)
    check_choices(module, nodes)
    clients = {n["name"]: client_for_url(module, n["api_url"], p["api_token"], f"{n['name']}.api_url") for n in nodes}
    disk = {}
    for node in nodes:
        try:
            usage = _disk_plan.disk_usage(_pageserver.utilization(clients[node["name"]]), node["name"])
        except NeonAPIError as exc:
            fail_api(module, exc, f"read the disk use of {node['name']}")
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        disk[node["name"]] = {"node_id": node.get("node_id"), **usage}
    if not p["destination"]:
        module.exit_json(changed=False, disk=disk, plan=None, lines=[])
    destination = resolve(nodes, p["destination"], "destination", module)
    try:
        source_name = resolve(nodes, p["source"], "source", module)["name"] if p["source"] else None
        source_name = source_name or _disk_plan.fullest({k: v for k, v in disk.items() if k != destination["name"]})
        source = next(n for n in nodes if n["name"] == source_name)
        sizes = read_sizes(module, clients[source_name], source_name)
        plan = _disk_plan.plan_moves(
            {**source, **disk[source_name]},
            {**destination, **disk[destination["name"]]},
            sizes,
            tenants=p["tenants"],
            target_pct=p["target_pct"],
            max_tenants=p["max_tenants"],
            destination_max_pct=p["destination_max_pct"],
        )
    except ValueError as exc:  # PlanRefused and a bad tenant id name their field
        module.fail_json(msg=str(exc), disk=disk)
    module.exit_json(changed=False, disk=disk, plan=plan, lines=_disk_plan.plan_lines(disk, plan))


if __name__ == "__main__":
    main()
