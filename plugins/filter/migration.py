# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Filters for the tenant_migration role: inventory facts in, the runbook's compute decisions out.

The decisions themselves live in module_utils/_migration.py (unit-tested); these filters only adapt Ansible data
(hostvars, registered results) to them. Documented in the sidecar .yml files.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.neonops.storage.plugins.module_utils import _migration as decide
from ansible_collections.neonops.storage.plugins.module_utils import _migration_args as role_args

# inventory variable -> the engine's field (docs/contracts.md section 4)
_PAGESERVER_VARS = {
    "neon_node_id": "node_id",
    "neon_api_url": "api_url",
    "neon_pg_addr": "pg_addr",
    "neon_s3_bucket": "s3_bucket",
    "neon_s3_prefix": "s3_prefix",
    "neon_availability_zone": "availability_zone",
}
_COMPUTE_VARS = {
    "neon_api_url": "api_url",
    "neon_tenant_id": "tenant_id",
    "neon_compute_id": "compute_id",
    "neon_pgdata": "pgdata",
    "neon_spec_path": "spec_path",
}


def _hosts(hosts, hostvars, fields, where):
    if isinstance(hosts, str) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"{where}: expected a list of inventory hostnames, got {type(hosts).__name__}")
    out = []
    for name in hosts:
        hv = hostvars[name]
        item = {"name": name}
        for var, key in fields.items():
            value = hv.get(var)
            if value is not None and value != "":
                item[key] = value
        out.append(item)
    return out


def migration_nodes(hosts, hostvars):
    """The pageservers of the inventory as the migration engine reads them."""
    nodes = _hosts(hosts, hostvars, _PAGESERVER_VARS, "migration_nodes")
    for node in nodes:
        if "node_id" in node:
            try:
                node["node_id"] = int(node["node_id"])
            except (TypeError, ValueError):
                raise AnsibleFilterError(
                    f"migration_nodes: {node['name']}: neon_node_id {node['node_id']!r} is not an integer"
                ) from None
    return nodes


def migration_computes(hosts, hostvars):
    """The computes of the inventory (name, api_url, tenant_id, compute_id, pgdata, spec_path)."""
    return _hosts(hosts, hostvars, _COMPUTE_VARS, "migration_computes")


def migration_compute_plan(compute_info_results, targets):
    """Per compute, the pageservers it must use after the move and whether it needs a switch.

    ``compute_info_results`` are the registered results of ``compute_info`` looped over the computes (the loop item
    is the compute's name); ``targets`` is the engine's ``compute_targets``.
    """
    plans = []
    for result in compute_info_results:
        item = result.get("item")
        name = item.get("name") if isinstance(item, dict) else item
        if result.get("skipped"):
            # Not read: every shard moves, so the plan does not depend on what the compute uses now.
            if not targets.get("full_move"):
                raise AnsibleFilterError(f"migration_compute_plan: {name} was not read, but only some shards move")
            plans.append({"compute": name, "pageservers": targets["pageservers"], "previous": "", "needs_switch": True})
            continue
        pageservers, needs_switch = decide.compute_pageservers(
            result.get("pageserver_connstring"),
            targets["shard_count"],
            targets["moved"],
            targets["destination"],
            targets.get("addr_to_id") or {},
        )
        plans.append(
            {
                "compute": name,
                "pageservers": pageservers,
                "previous": result.get("pageserver_connstring") or "",
                "needs_switch": needs_switch,
            }
        )
    return plans


def migration_compute_switches(plan, reconfigure_results, method):
    """The computes that really switched: for ``reconfigure`` those compute_pageserver changed, for ``restart``
    every compute the plan restarted."""
    if method != "reconfigure":
        return [
            {"compute": p["compute"], "previous": p["previous"], "pageservers": p["pageservers"], "method": method}
            for p in plan
            if p["needs_switch"]
        ]
    switched = []
    for result in reconfigure_results:
        if result.get("skipped") or not result.get("changed"):
            continue
        item = result.get("item") or {}
        switched.append(
            {
                "compute": item.get("compute"),
                "previous": result.get("previous_connstring") or item.get("previous") or "",
                "pageservers": item.get("pageservers"),
                "method": method,
            }
        )
    return switched


def migration_compute_on_destination(compute_info_result, targets):
    """Whether a compute runs and its postgresql.conf names the destination for every moved shard."""
    return compute_info_result.get("status") == "running" and decide.compute_on_destination(
        compute_info_result.get("pageserver_connstring"), targets["moved"], targets["destination"]["libpq_url"]
    )


@functools.cache
def _role_options() -> dict:
    """The tenant_migration role's options, from its meta/argument_specs.yml (one home for types and choices)."""
    path = Path(__file__).resolve().parents[2] / "roles" / "tenant_migration" / "meta" / "argument_specs.yml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["argument_specs"]["main"]["options"]


def migration_args_problem(values, groups, hostvars):
    """The first problem of a tenant_migration run's variables and inventory, or ``""`` when there is none."""
    if not isinstance(values, dict):
        raise AnsibleFilterError(f"migration_args_problem: expected a dict of variables, got {type(values).__name__}")
    hosts = {group: list(groups.get(group) or []) for group in role_args.URL_GROUPS}
    problem = role_args.role_vars_problem(values, _role_options()) or role_args.inventory_problem(hosts, hostvars)
    if not problem:
        pageservers = [{"name": host, "node_id": hostvars[host].get("neon_node_id")} for host in hosts["pageservers"]]
        problem = role_args.node_problem(values, pageservers)
    return problem or ""


class FilterModule:
    def filters(self):
        return {
            "migration_args_problem": migration_args_problem,
            "migration_nodes": migration_nodes,
            "migration_computes": migration_computes,
            "migration_compute_plan": migration_compute_plan,
            "migration_compute_on_destination": migration_compute_on_destination,
            "migration_compute_switches": migration_compute_switches,
        }
