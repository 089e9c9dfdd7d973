#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: compute_info
short_description: Read a compute's status and the pageserver connection it uses
version_added: 0.1.0
author: neonops.storage maintainers (@neonops)
description:
  - Reads compute_ctl's C(GET /status).
  - Reads the pageserver connection the compute uses. compute_ctl has no API that returns its applied spec,
    so the connection is read from files on the compute host.
  - With O(pgdata), from C({pgdata}/postgresql.conf) (C(neon.pageserver_connstring), C(neon.stripe_size)),
    which compute_ctl rewrites on every configuration and which is therefore the ground truth.
  - With O(spec_path), from the compute spec kept there (C(pageserver_connection_info), else the legacy
    C(pageserver_connstring) and C(shard_stripe_size), else the C(neon.pageserver_connstring) entry in
    C(cluster.settings)). The spec is returned too, with credentials masked.
  - With both, RV(pageserver_connstring) comes from C(postgresql.conf) and RV(in_sync) tells whether the
    spec agrees with it.
  - The files are read on the host the module runs on. Run it on the compute host (for example with
    C(delegate_to)) when O(pgdata) or O(spec_path) is set.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._attributes.action_group
options:
  api_url:
    description:
      - Base URL of compute_ctl's external HTTP API, for example V(http://compute-1.internal:3080).
      - Checked before any request like every O(api_url) (C(http) or C(https), no user information, query or
        fragment, no whitespace, an ASCII host name with parts of 1 to 63 characters).
      - If not set, the value of the E(NEONOPS_API_URL) environment variable is used.
    type: str
    required: true
  pgdata:
    description: The compute's Postgres data directory (holding C(postgresql.conf)).
    type: path
  spec_path:
    description:
      - JSON file holding the compute's spec, either a bare ComputeSpec or an object with the keys C(spec)
        and C(compute_ctl_config) (the shape of compute_ctl's C(--config) file).
    type: path
seealso:
  - module: neonops.storage.compute_pageserver
"""

EXAMPLES = r"""
- name: What does compute-1 read from?
  neonops.storage.compute_info:
    api_url: "{{ hostvars['compute1'].neon_api_url }}"
    api_token: "{{ neon_compute_api_token | default(omit) }}"
    pgdata: "{{ hostvars['compute1'].neon_pgdata }}"
    spec_path: "{{ hostvars['compute1'].neon_spec_path }}"
  delegate_to: compute1
  register: compute

- name: Show it
  ansible.builtin.debug:
    msg: "{{ compute.status }} via {{ compute.pageservers | join(', ') }}"
"""

RETURN = r"""
status:
  description: The compute status, as compute_ctl reports it.
  returned: success
  type: str
  sample: running
compute:
  description: compute_ctl's whole C(/status) answer.
  returned: success
  type: dict
  sample:
    start_time: "2026-01-01T10:00:00.000Z"
    tenant: 1f359dd625e519a1a4e8d7509690f6fc
    timeline: de200bd42b49cc1814412c7e592dd6e9
    status: running
    last_active: null
    error: null
pageserver_connstring:
  description:
    - Comma-separated libpq URLs of the pageservers, one per shard in shard order.
    - V(null) when neither O(pgdata) nor O(spec_path) is set, or they name no pageserver.
  returned: success
  type: str
  sample: postgres://no_user@127.0.0.1:64000
pageservers:
  description: RV(pageserver_connstring) split into a list.
  returned: success
  type: list
  elements: str
  sample: [postgres://no_user@127.0.0.1:64000]
stripe_size:
  description: The stripe size in 8 KiB pages, or V(null) (unsharded, or not recorded).
  returned: success
  type: int
  sample: 2048
connstring_source:
  description: Where RV(pageserver_connstring) was read (V(postgresql.conf), a spec field name, or V(null)).
  returned: success
  type: str
  sample: postgresql.conf
spec:
  description: The spec read from O(spec_path), with C(storage_auth_token) and role passwords masked.
  returned: when O(spec_path) is set
  type: dict
spec_connection:
  description: The connection as the spec states it (C(connstring), C(stripe_size), C(shard_count), C(source)).
  returned: when O(spec_path) is set
  type: dict
in_sync:
  description:
    - Whether the spec's connstring (and, for several shards, stripe size) equals what C(postgresql.conf) shows.
    - V(null) unless both O(pgdata) and O(spec_path) are set.
  returned: success
  type: bool
"""

import os

from ansible_collections.neonops.storage.plugins.module_utils import _compute
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
)


def read_text(module, path, option):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        module.fail_json(msg=f"{option}: cannot read {path}: {exc.strerror or exc}")


def read_conf_connection(module, pgdata):
    conf_path = os.path.join(pgdata, "postgresql.conf")
    return _compute.conf_connection(_compute.parse_postgresql_conf(read_text(module, conf_path, "pgdata")))


def read_spec(module, spec_path):
    """(spec, compute_ctl_config or None, original text) from the spec file."""
    text = read_text(module, spec_path, "spec_path")
    try:
        spec, config, _wrapped = _compute.load_spec_document(text, spec_path)
    except ValueError as exc:
        module.fail_json(msg=f"spec_path: {exc}")
    return spec, config, text


def connections_agree(conf: dict, spec_conn: dict) -> bool:
    if conf["connstring"] != spec_conn["connstring"]:
        return False
    shards = len(conf["connstring"].split(",")) if conf["connstring"] else 0
    return shards <= 1 or conf["stripe_size"] == spec_conn["stripe_size"]


def argument_spec():
    return neon_argument_spec(pgdata={"type": "path"}, spec_path={"type": "path"})


def main():
    module = neon_module(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    client = client_from_module(module, error_key="error")
    try:
        compute = _compute.status(client)
    except NeonAPIError as exc:
        fail_api(module, exc, "Reading the compute status")

    result = {"changed": False, "compute": compute, "status": (compute or {}).get("status"), "in_sync": None}
    current = {"connstring": None, "stripe_size": None, "source": None}
    if params["spec_path"]:
        spec, _config, _text = read_spec(module, params["spec_path"])
        module.no_log_values.update(_compute.spec_secrets(spec))
        spec_conn = _compute.spec_connection(spec)
        result["spec"] = _compute.redact_spec(spec)
        result["spec_connection"] = spec_conn
        current = spec_conn
    if params["pgdata"]:
        conf = read_conf_connection(module, params["pgdata"])
        if params["spec_path"]:
            result["in_sync"] = connections_agree(conf, result["spec_connection"])
        current = conf

    result["pageserver_connstring"] = current["connstring"]
    result["pageservers"] = current["connstring"].split(",") if current["connstring"] else []
    result["stripe_size"] = current["stripe_size"]
    result["connstring_source"] = current["source"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
