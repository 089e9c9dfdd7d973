#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_config
short_description: Set or remove tenant-config overrides of a tenant shard on a Neon pageserver
version_added: 0.1.0
description:
  - Reads the shard's current overrides from C(GET /v1/location_config/{tenant_shard_id}), computes the new
    override set and sends it only when it differs.
  - For an unsharded tenant attached on the pageserver it uses C(PATCH /v1/tenant/config) (or
    C(PUT /v1/tenant/config) with O(exclusive=true)).
  - For a sharded tenant, or a Secondary location, those routes do not apply; it re-sends the shard's
    location config (C(PUT /v1/tenant/{tenant_shard_id}/location_config)) with the current mode, generation,
    secondary settings and shard fields and the new C(tenant_conf). Because that call replaces the whole
    override set, every override that is not changed is sent again.
  - Under a storage controller, direct pageserver edits are reconciled away; change config through the
    controller on such fleets.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - Only reads the location config; reports the overrides that would result.
  diff_mode:
    support: full
    details:
      - Before and after are the override sets.
  idempotent:
    support: full
options:
  tenant_shard_id:
    description: The tenant shard id, V(<tenant_id>) or V(<tenant_id>-NNCC).
    type: str
    required: true
  overrides:
    description:
      - Overrides to set, as key and value, for example C(heatmap_period) V(60s). A key with value V(null)
        is removed.
      - Values of duration keys (C(gc_period), C(compaction_period), C(checkpoint_timeout), C(pitr_interval),
        C(heatmap_period), C(lsn_lease_length), ...) must be humantime strings (V(0s), V(20 s), V(1h),
        V(1 hr), V(10 m), V(7days); ASCII digits, no surrounding spaces); they are checked before anything is sent
        and compared by value.
      - Keys are tenant config key names (lowercase letters, digits and C(_)). At most 64 KiB as JSON.
    type: dict
    default: {}
  remove:
    description: Override keys to remove (back to the pageserver default). At most 1024.
    type: list
    elements: str
    default: []
  exclusive:
    description:
      - When V(true), O(overrides) becomes the whole override set and every other override is removed.
        Use it with a RV(previous_overrides) value to restore a set exactly.
    type: bool
    default: false
  background_ops:
    description:
      - V(suspended) sets C(gc_period) and C(compaction_period) to V(0s), which stops automatic GC and
        compaction on the shard.
      - V(resumed) removes C(gc_period) and C(compaction_period) when they are zero durations (other values
        are kept).
      - Applied after O(overrides) and O(remove). Keep RV(previous_overrides) to restore the exact earlier set
        with O(exclusive=true).
    type: str
    choices: [suspended, resumed]
seealso:
  - module: neonops.storage.tenant_location
  - module: neonops.storage.tenant_info
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Suspend GC and compaction before a migration
  neonops.storage.tenant_config:
    api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    background_ops: suspended
  register: suspend

- name: Restore the exact overrides afterwards
  neonops.storage.tenant_config:
    api_url: "{{ hostvars['ps-2'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    overrides: "{{ suspend.previous_overrides }}"
    exclusive: true

- name: Enable heatmap uploads every minute
  neonops.storage.tenant_config:
    api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    overrides:
      heatmap_period: 60s
"""

RETURN = r"""
previous_overrides:
  description: The override set before the module ran.
  returned: always
  type: dict
  sample: {"heatmap_period": "60s"}
overrides:
  description:
    - The override set after the change, as the pageserver reports it (in check mode, the set that would be sent).
  returned: always
  type: dict
  sample: {"heatmap_period": "60s", "gc_period": "0s", "compaction_period": "0s"}
method:
  description:
    - The request used to apply the change, or V(null) when nothing was sent.
  returned: always
  type: str
  sample: PATCH /v1/tenant/config
diff:
  description: C(before) and C(after) override sets.
  returned: always
  type: dict
"""

from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._humantime import parse_duration
from ansible_collections.neonops.storage.plugins.module_utils._ids import TenantShardId
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)

BACKGROUND_KEYS = ("gc_period", "compaction_period")


def _is_zero_duration(value) -> bool:
    try:
        return isinstance(value, str) and parse_duration(value) == 0
    except ValueError:
        return False


def desired_overrides(current: dict, params: dict) -> dict:
    desired = {} if params["exclusive"] else dict(current)
    for key, value in (params["overrides"] or {}).items():
        if value is None:
            desired.pop(key, None)
        else:
            desired[key] = value
    for key in params["remove"] or []:
        desired.pop(key, None)
    if params["background_ops"] == "suspended":
        desired.update(dict.fromkeys(BACKGROUND_KEYS, "0s"))
    elif params["background_ops"] == "resumed":
        for key in BACKGROUND_KEYS:
            if _is_zero_duration(desired.get(key)):
                desired.pop(key)
    return desired


def patch_body(current: dict, desired: dict) -> dict:
    """The PATCH delta: changed or new keys with their value, removed keys as None."""
    changes = {
        key: value
        for key, value in desired.items()
        if key not in current or not ps.overrides_equal({key: current[key]}, {key: value})
    }
    changes.update(dict.fromkeys((key for key in current if key not in desired), None))
    return changes


def read_location(module, client, tsid):
    try:
        location = ps.location_config(client, tsid)
    except NeonAPIError as exc:
        if exc.not_found:
            module.fail_json(msg=f"tenant shard {tsid} has no location on this pageserver ({exc.url})")
        fail_api(module, exc, f"read location config of {tsid}")
    if location is None:
        module.fail_json(msg=f"location of {tsid} is being reconfigured right now; retry later")
    return location


def main():
    module = neon_module(
        argument_spec=neon_argument_spec(
            tenant_shard_id={"type": "str", "required": True},
            overrides={"type": "dict", "default": {}},
            remove={"type": "list", "elements": "str", "default": []},
            exclusive={"type": "bool", "default": False},
            background_ops={"type": "str", "choices": ["suspended", "resumed"]},
        ),
        supports_check_mode=True,
    )
    p = module.params
    tsid = validate_or_fail(module, TenantShardId.parse, p["tenant_shard_id"], "tenant_shard_id")
    validate_or_fail(module, ps.validate_overrides, p["overrides"] or {}, "overrides", "overrides")
    if "tenant_id" in (p["overrides"] or {}):
        module.fail_json(msg="overrides: 'tenant_id' is not a tenant-config key")

    client = client_from_module(module)
    location = read_location(module, client, tsid)
    current = dict(location.get("tenant_conf") or {})
    desired = desired_overrides(current, p)
    result = {
        "changed": False,
        "previous_overrides": current,
        "overrides": current,
        "method": None,
        "diff": {"before": current, "after": current},
    }
    if ps.overrides_equal(current, desired):
        module.exit_json(**result)

    result.update(changed=True, overrides=desired, diff={"before": current, "after": desired})
    use_tenant_config_api = tsid.is_unsharded and location.get("mode") in ps.ATTACHED_MODES
    if use_tenant_config_api:
        result["method"] = "PUT /v1/tenant/config" if p["exclusive"] else "PATCH /v1/tenant/config"
    else:
        result["method"] = f"PUT /v1/tenant/{tsid}/location_config"
    if module.check_mode:
        module.exit_json(**result)

    try:
        if use_tenant_config_api and p["exclusive"]:
            ps.put_tenant_config(client, tsid.tenant_id, desired)
        elif use_tenant_config_api:
            ps.patch_tenant_config(client, tsid.tenant_id, patch_body(current, desired))
        else:
            ps.put_location_config(client, tsid, {**location, "tenant_conf": desired})
    except NeonAPIError as exc:
        fail_api(module, exc, f"set tenant config overrides of {tsid}", previous_overrides=current)

    after = read_location(module, client, tsid)
    result["overrides"] = dict(after.get("tenant_conf") or {})
    result["diff"]["after"] = result["overrides"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
