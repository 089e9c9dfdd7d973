#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_generation
short_description: Issue the next generation for a tenant shard on a pageserver
version_added: 0.1.0
author: neonops.storage maintainers (@neonops)
description:
  - Asks the generation authority (the storage controller) for a new, strictly higher generation for
    O(tenant_shard_id) on the pageserver O(node_id), through C(POST /debug/v1/attach-hook).
  - The storage controller records O(node_id) as the shard's generation holder, so a restart of that
    pageserver (re-attach) hands the shard back to it, and validation by any older generation fails from now on.
  - Use the returned RV(generation) in M(neonops.storage.tenant_location) to attach the shard on that node.
  - B(Every run issues a new generation.) A generation is a fencing token, not a setting. Asking again is
    how a new attachment proves it is newer than every earlier one, so there is no "already in the desired
    state" to detect. Running this task twice attaches with the second number and fences out the first.
  - Guards such as "only if the shard is not already attached to this node" or "only if the current
    generation is below N" are the caller's job. Read the current state first by running the task in check mode
    (it reports the generation without changing it) and decide in the playbook. The storage controller has
    no compare-and-set for this call, so the module does not offer such a guard itself, as it could not make it
    race-free.
  - The module first checks that O(node_id) is registered with the storage controller
    (C(GET /control/v1/node/{node_id})), since a generation issued for a mistyped node would still fence
    out the real holder.
  - The previous generation is read with C(POST /debug/v1/inspect), a read-only call, before the new one is
    issued. The module fails if the new generation is not higher than the previous one.
  - C(attach-hook) needs a token with the C(admin) scope when the storage controller checks tokens.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
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
  tenant_shard_id:
    description:
      - The tenant shard, as the plain tenant id (unsharded) or C(<tenant_id>-NNCC) (shard NN of CC, hex).
    type: str
    required: true
  node_id:
    description:
      - The pageserver node id the new generation is issued for.
      - From 0 to 18446744073709551615 (a u64); a boolean is refused.
    type: int
    required: true
attributes:
  check_mode:
    support: full
    details:
      - Check mode only reads (the node, and the current generation with C(POST /debug/v1/inspect)) and reports it as
        RV(generation); nothing is incremented. It always reports C(changed), since a real run would issue one.
  diff_mode:
    support: full
    details:
      - The diff shows the generation and its node before and after.
  idempotent:
    support: none
    details:
      - Each run issues a new generation by design (see the description).
seealso:
  - module: neonops.storage.tenant_location
  - name: Neon RFC 025, generation numbers
    description: Why every new attachment needs a higher generation.
    link: https://github.com/neondatabase/neon/blob/main/docs/rfcs/025-generation-numbers.md
"""

EXAMPLES = r"""
- name: Issue a generation for shard 0 of 4 on pageserver 2
  neonops.storage.tenant_generation:
    api_url: "{{ hostvars[groups['storage_controller'][0]].neon_api_url }}"
    api_token: "{{ neon_storcon_api_token | default(omit) }}"
    tenant_shard_id: "1f359dd625e519a1a4e8d7509690f6fc-0004"
    node_id: 2
  register: gen

- name: Attach there with the new generation
  neonops.storage.tenant_location:
    api_url: "{{ hostvars['ps2'].neon_api_url }}"
    tenant_shard_id: "1f359dd625e519a1a4e8d7509690f6fc-0004"
    mode: AttachedMulti
    generation: "{{ gen.generation }}"

- name: Caller-side guard - read first, issue only when the shard is held elsewhere
  neonops.storage.tenant_generation:
    api_url: "{{ storcon_url }}"
    tenant_shard_id: "{{ tsid }}"
    node_id: 2
  check_mode: true
  register: current

- name: Issue a generation only when node 2 does not already hold it
  neonops.storage.tenant_generation:
    api_url: "{{ storcon_url }}"
    tenant_shard_id: "{{ tsid }}"
    node_id: 2
  when: current.previous_node_id != 2
"""

RETURN = r"""
generation:
  description:
    - The newly issued generation.
    - In check mode, the current generation (not incremented), or V(null) when the shard has none.
  returned: success
  type: int
  sample: 5
previous_generation:
  description: The generation before this run, or V(null) when the shard was unknown or detached.
  returned: success
  type: int
  sample: 4
previous_node_id:
  description: The node that held RV(previous_generation), or V(null).
  returned: success
  type: int
  sample: 1
node_id:
  description: The node the generation is issued for (O(node_id)).
  returned: success
  type: int
  sample: 2
tenant_shard_id:
  description: The tenant shard id, normalized to lowercase.
  returned: success
  type: str
  sample: 1f359dd625e519a1a4e8d7509690f6fc-0004
"""

from ansible_collections.neonops.storage.plugins.module_utils import _storcon
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_node_id, validate_tenant_shard_id
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)


def argument_spec():
    return neon_argument_spec(
        tenant_shard_id={"type": "str", "required": True},
        node_id={"type": "int", "required": True},
    )


def main():
    module = neon_module(argument_spec=argument_spec(), supports_check_mode=True)
    tsid = str(validate_or_fail(module, validate_tenant_shard_id, module.params["tenant_shard_id"], "tenant_shard_id"))
    node_id = validate_or_fail(module, validate_node_id, module.params["node_id"], "node_id")
    client = client_from_module(module)

    # A mistyped node id would still get a generation, and fence out the real holder: refuse unknown nodes.
    try:
        _storcon.node_describe(client, node_id)
    except NeonAPIError as exc:
        if exc.not_found:
            module.fail_json(
                msg=f"node_id: node {node_id} is not registered with the storage controller at {client.base_url}; "
                "no generation issued",
                status=exc.status,
                error=exc.message,
            )
        fail_api(module, exc, f"Checking that node {node_id} is registered with the storage controller")

    try:
        current = _storcon.inspect(client, tsid)
    except NeonAPIError as exc:
        fail_api(module, exc, f"Reading the current generation of tenant shard {tsid}")

    result = {
        "changed": True,
        "tenant_shard_id": tsid,
        "node_id": node_id,
        "previous_generation": current["generation"],
        "previous_node_id": current["node_id"],
    }
    before = {"generation": current["generation"], "node_id": current["node_id"]}

    if module.check_mode:
        result["generation"] = current["generation"]
        if module._diff:
            planned = "a new generation" if current["generation"] is None else f"above {current['generation']}"
            result["diff"] = {"before": before, "after": {"generation": planned, "node_id": node_id}}
        module.exit_json(**result)

    attempted = f"Issuing a new generation for tenant shard {tsid} on node {node_id}"
    try:
        generation = _storcon.attach_hook(client, tsid, node_id)
    except NeonAPIError as exc:
        fail_api(module, exc, attempted, previous_generation=current["generation"])
    if not isinstance(generation, int) or isinstance(generation, bool):
        module.fail_json(msg=f"{attempted}: the storage controller returned no generation ({generation!r})", **result)
    if current["generation"] is not None and generation <= current["generation"]:
        # A generation that does not grow would let two attachments validate the same deletions.
        module.fail_json(
            msg=f"{attempted}: the storage controller returned generation {generation}, not higher than the "
            f"previous {current['generation']}",
            generation=generation,
            **result,
        )

    result["generation"] = generation
    if module._diff:
        result["diff"] = {"before": before, "after": {"generation": generation, "node_id": node_id}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
