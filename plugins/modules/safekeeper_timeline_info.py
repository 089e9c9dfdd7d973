#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: safekeeper_timeline_info
short_description: Read a timeline's status from its safekeepers, with the quorum's commit LSN
version_added: 0.1.0
author: neonops.storage maintainers (@neonops)
description:
  - Reads C(GET /v1/tenant/{tenant_id}/timeline/{timeline_id}) (TimelineStatus) from each safekeeper in
    O(safekeeper_urls), or from the single safekeeper at O(api_url).
  - Returns every safekeeper's answer (LSNs as upstream strings and, next to each, as C(<field>_int)), and
    the highest RV(commit_lsn) and RV(flush_lsn) among the safekeepers that answered.
  - RV(commit_lsn) is what a catching-up pageserver must reach when the compute is idle.
  - A safekeeper that fails (unreachable, an HTTP error, or the timeline unknown there with 404) is reported
    in RV(safekeepers) with its error and as a warning. The module fails only when fewer than a majority of
    the safekeepers answered and O(require_quorum=true).
  - Safekeepers are not sharded, so the path takes the plain tenant id.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._attributes.action_group
options:
  api_url:
    description:
      - Base URL of one safekeeper's HTTP API, for example V(http://sk-1.internal:7676).
      - Ignored when O(safekeeper_urls) is set. One of the two is required.
      - Checked before any request like every O(api_url) (C(http) or C(https), no user information, query or
        fragment, no whitespace, an ASCII host name with parts of 1 to 63 characters).
      - If not set, the value of the E(NEONOPS_API_URL) environment variable is used.
    type: str
    required: false
  safekeeper_urls:
    description:
      - Base URLs of the timeline's safekeepers (all members, so that the majority is computed over the
        whole set). Each may appear only once. O(api_token) and the TLS options apply to each.
    type: list
    elements: str
  tenant_id:
    description: The tenant id (32 hex characters; not a tenant shard id).
    type: str
    required: true
  timeline_id:
    description: The timeline id (32 hex characters).
    type: str
    required: true
  require_quorum:
    description:
      - Fail unless a majority of the safekeepers (more than half of those listed) answered.
      - With V(false) the module succeeds even when none answered; RV(commit_lsn) is then V(null).
    type: bool
    default: true
seealso:
  - module: neonops.storage.timeline_catchup
  - plugin: neonops.storage.lsn_max
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Commit LSN of a timeline across its three safekeepers
  neonops.storage.safekeeper_timeline_info:
    safekeeper_urls: "{{ groups['safekeepers'] | map('extract', hostvars, 'neon_api_url') | list }}"
    api_token: "{{ neon_safekeeper_api_token | default(omit) }}"
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
    timeline_id: de200bd42b49cc1814412c7e592dd6e9
  register: sk

- name: Require the destination pageserver to have caught up with the quorum
  ansible.builtin.assert:
    that: (timeline.last_record_lsn | neonops.storage.lsn_to_int) >= sk.commit_lsn_int
"""

RETURN = r"""
commit_lsn:
  description: Highest C(commit_lsn) among the safekeepers that answered; V(null) when none did.
  returned: success
  type: str
  sample: 0/16960E8
commit_lsn_int:
  description: RV(commit_lsn) as an integer.
  returned: success
  type: int
  sample: 23683304
flush_lsn:
  description: Highest C(flush_lsn) among the safekeepers that answered; V(null) when none did.
  returned: success
  type: str
  sample: 0/1696100
flush_lsn_int:
  description: RV(flush_lsn) as an integer.
  returned: success
  type: int
  sample: 23683328
answered:
  description: How many safekeepers answered.
  returned: success
  type: int
  sample: 3
quorum:
  description: Whether a majority of the safekeepers answered.
  returned: success
  type: bool
  sample: true
quorum_size:
  description: How many answers make a majority.
  returned: success
  type: int
  sample: 2
safekeepers:
  description: One entry per safekeeper, in the order given.
  returned: success
  type: list
  elements: dict
  contains:
    url:
      description: The safekeeper's base URL.
      type: str
    ok:
      description: Whether it returned the timeline's status.
      type: bool
    error:
      description: What went wrong, or V(null).
      type: str
    http_status:
      description: The HTTP status of a failed request (V(null) for transport errors or on success).
      type: int
    commit_lsn:
      description: This safekeeper's C(commit_lsn) (V(null) on error).
      type: str
    commit_lsn_int:
      description: This safekeeper's C(commit_lsn) as an integer.
      type: int
    flush_lsn:
      description: This safekeeper's C(flush_lsn) (V(null) on error).
      type: str
    flush_lsn_int:
      description: This safekeeper's C(flush_lsn) as an integer.
      type: int
    timeline:
      description:
        - The whole TimelineStatus (C(mconf), C(acceptor_state), C(peers), C(walsenders), C(walreceivers),
          LSN fields and their C(_int) twins), or V(null) on error.
      type: dict
"""

from ansible_collections.neonops.storage.plugins.module_utils import _safekeeper
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_tenant_id, validate_timeline_id
from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn, lsn_fields_as_int
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_for_url,
    client_from_module,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)


def argument_spec():
    spec = neon_argument_spec(
        safekeeper_urls={"type": "list", "elements": "str"},
        tenant_id={"type": "str", "required": True},
        timeline_id={"type": "str", "required": True},
        require_quorum={"type": "bool", "default": True},
    )
    spec["api_url"]["required"] = False  # safekeeper_urls can replace it
    return spec


def _max_lsn(entries, field):
    values = [entry[f"{field}_int"] for entry in entries if entry["ok"] and entry[f"{field}_int"] is not None]
    if not values:
        return None, None
    highest = max(values)
    return str(Lsn(highest)), highest


def read_safekeeper(client, tenant_id, timeline_id) -> dict:
    entry = {"url": client.base_url, "ok": False, "error": None, "http_status": None, "timeline": None}
    try:
        status = _safekeeper.timeline_status(client, tenant_id, timeline_id)
        if not isinstance(status, dict):
            raise ValueError(f"unexpected TimelineStatus {status!r}")
        timeline = lsn_fields_as_int(status, _safekeeper.TIMELINE_STATUS_LSN_FIELDS)
    except NeonAPIError as exc:
        entry["error"] = str(exc)
        entry["http_status"] = exc.status
    except ValueError as exc:  # an LSN field that does not parse
        entry["error"] = f"unusable TimelineStatus from {client.base_url}: {exc}"
    else:
        entry.update(ok=True, timeline=timeline)
    for field in ("commit_lsn", "flush_lsn"):
        entry[field] = entry["timeline"].get(field) if entry["ok"] else None
        entry[f"{field}_int"] = entry["timeline"].get(f"{field}_int") if entry["ok"] else None
    return entry


def main():
    module = neon_module(
        argument_spec=argument_spec(),
        required_one_of=[("api_url", "safekeeper_urls")],
        supports_check_mode=True,
    )
    params = module.params
    tenant_id = validate_or_fail(module, validate_tenant_id, params["tenant_id"], "tenant_id")
    timeline_id = validate_or_fail(module, validate_timeline_id, params["timeline_id"], "timeline_id")
    if params["safekeeper_urls"] is not None:
        if not params["safekeeper_urls"]:
            module.fail_json(msg="safekeeper_urls: must list at least one safekeeper")
        clients = [
            client_for_url(module, url, params["api_token"], f"safekeeper_urls[{index}]")
            for index, url in enumerate(params["safekeeper_urls"])
        ]
        seen = set()
        for index, client in enumerate(clients):
            # A safekeeper listed twice would count twice towards the majority.
            if client.base_url in seen:
                module.fail_json(msg=f"safekeeper_urls[{index}]: {client.base_url} is listed more than once")
            seen.add(client.base_url)
    else:
        clients = [client_from_module(module)]

    entries = [read_safekeeper(client, tenant_id, timeline_id) for client in clients]
    answered = sum(1 for entry in entries if entry["ok"])
    quorum_size = len(entries) // 2 + 1
    commit_lsn, commit_lsn_int = _max_lsn(entries, "commit_lsn")
    flush_lsn, flush_lsn_int = _max_lsn(entries, "flush_lsn")
    result = {
        "changed": False,
        "safekeepers": entries,
        "answered": answered,
        "quorum": answered >= quorum_size,
        "quorum_size": quorum_size,
        "commit_lsn": commit_lsn,
        "commit_lsn_int": commit_lsn_int,
        "flush_lsn": flush_lsn,
        "flush_lsn_int": flush_lsn_int,
    }
    failures = [entry for entry in entries if not entry["ok"]]
    if params["require_quorum"] and not result["quorum"]:
        details = "; ".join(entry["error"] for entry in failures)
        module.fail_json(
            msg=f"Reading timeline {tenant_id}/{timeline_id} from the safekeepers failed: only {answered} of "
            f"{len(entries)} answered, a quorum needs {quorum_size}: {details}",
            **result,
        )
    for entry in failures:
        module.warn(f"safekeeper {entry['url']}: {entry['error']}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
