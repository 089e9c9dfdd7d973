#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: storcon_node
short_description: Register a pageserver with a Neon storage controller
version_added: 0.3.0
description:
  - Reads the node from C(GET /control/v1/node/{node_id}). When the controller does not know it, registers it with
    C(POST /control/v1/node) (NodeRegisterRequest, C(storage_controller/src/http.rs) in neondatabase/neon).
  - A node already registered with the same addresses is left alone. One registered with different addresses is
    refused before any request is sent, naming each differing field (the controller would answer 409; moving a
    node id to another address is a decommission and a new registration, not an update).
  - A pageserver that has no C(metadata.json) next to its C(pageserver.toml) does not register itself. Its
    re-attach is retried until the controller knows it, and it serves no tenant until then.
  - With O(wait_available=true), the module waits until the controller's heartbeats see the node (its availability
    is V(Active)).
  - The token needs the C(infra) (or C(admin)) scope when the storage controller checks tokens.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - Only reads the node; reports whether it would be registered. Never waits.
  diff_mode:
    support: full
    details:
      - Before and after are the node's address fields (V({}) before a registration).
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
  node_id:
    description: The pageserver's node id (its C(id) in C(pageserver.toml)).
    type: int
    required: true
  listen_http_addr:
    description:
      - Host name or address the controller reaches the pageserver's management API at.
      - An ASCII host name (parts of 1 to 63 characters, 253 in all), an IPv4 address or an IPv6 address in brackets
        (V([fd00::4])); no scheme, path or port. The controller builds the node's URL as
        C(http://<listen_http_addr>:<listen_http_port>), so a bare IPv6 address is refused.
      - Every address and port option is checked before any request.
    type: str
    required: true
  listen_http_port:
    description: Port of the management API (plain HTTP), 1 to 65535.
    type: int
    required: true
  listen_https_port:
    description:
      - Port of the HTTPS management API, 1 to 65535; required by a controller that only talks HTTPS to pageservers.
    type: int
  listen_pg_addr:
    description: Host name or address computes reach the page service at (the same rules as O(listen_http_addr)).
    type: str
    required: true
  listen_pg_port:
    description: Port of the page service (libpq), 1 to 65535.
    type: int
    required: true
  listen_grpc_addr:
    description:
      - Host name or address of the gRPC page service, when the pageserver serves one (the same rules as
        O(listen_http_addr)).
    type: str
  listen_grpc_port:
    description: Port of the gRPC page service, 1 to 65535.
    type: int
  availability_zone_id:
    description:
      - The node's availability zone, as the controller schedules by it.
      - Up to 128 letters, digits, V(-), V(_), V(.) or V(:), starting with a letter or digit.
    type: str
    required: true
  wait_available:
    description: Wait until the controller reports the node's availability as V(Active) (its heartbeats answer).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait with O(wait_available=true).
    type: float
    default: 60
seealso:
  - module: neonops.storage.storcon_node_info
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Register the new pageserver with the storage controller
  neonops.storage.storcon_node:
    api_url: "{{ hostvars[groups['storage_controller'][0]].neon_api_url }}"
    api_token: "{{ neon_storcon_api_token | default(omit) }}"
    node_id: 4
    listen_http_addr: ps4.internal
    listen_http_port: 9898
    listen_pg_addr: ps4.internal
    listen_pg_port: 6400
    availability_zone_id: us-east-1b
    wait_available: true
"""

RETURN = r"""
node:
  description: The controller's description of the node after the module ran (V(null) in check mode before a
    registration).
  returned: success
  type: dict
  sample: {"id": 4, "availability": "Active", "scheduling": "Active", "listen_http_addr": "ps4.internal",
           "listen_http_port": 9898, "listen_pg_addr": "ps4.internal", "listen_pg_port": 6400,
           "availability_zone_id": "us-east-1b"}
registered:
  description: Whether this run registered the node (in check mode, whether it would).
  returned: success
  type: bool
  sample: true
"""

import re

from ansible_collections.neonops.storage.plugins.module_utils import _storcon
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError, hostname_problem
from ansible_collections.neonops.storage.plugins.module_utils._echo import echo
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_node_id
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)
from ansible_collections.neonops.storage.plugins.module_utils._poll import PollTimeout, poll


def argument_spec():
    return neon_argument_spec(
        node_id={"type": "int", "required": True},
        listen_http_addr={"type": "str", "required": True},
        listen_http_port={"type": "int", "required": True},
        listen_https_port={"type": "int"},
        listen_pg_addr={"type": "str", "required": True},
        listen_pg_port={"type": "int", "required": True},
        listen_grpc_addr={"type": "str"},
        listen_grpc_port={"type": "int"},
        availability_zone_id={"type": "str", "required": True},
        wait_available={"type": "bool", "default": False},
        wait_timeout={"type": "float", "default": 60.0},
    )


HOST_FIELDS = ("listen_http_addr", "listen_pg_addr", "listen_grpc_addr")
# Zone names as clouds write them (us-east-1b, use1-az2, europe-west1-b): no spaces, no separators of a path or URL.
ZONE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def host_problem(value: str) -> str | None:
    """Why ``value`` is not a host name, an IPv4 address or a bracketed IPv6 address, or None.

    The controller joins address and port as ``http://{listen_http_addr}:{listen_http_port}`` (``Node::base_url`` in
    upstream storage_controller/src/node.rs) and computes do the same with the pg address, so an IPv6 address
    must be in brackets: a bare ``fd00::4`` registers, but ``http://fd00::4:9898`` is no URL and the node stays
    Offline. A zone index (``%eth0``) has no place in such a URL either.
    """
    if not value:
        return "it is empty"
    if "/" in value:
        return "it looks like a URL or a path"
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        if ":" not in inner:
            return "only an IPv6 address goes in brackets"
        if "%" in inner:
            return "an IPv6 zone index (%...) cannot be part of the URL the controller builds"
        return hostname_problem(inner)
    if value.count(":") == 1:
        return "it carries a port: give the port in its own option"
    problem = hostname_problem(value)
    if ":" in value and problem is None:
        return f"an IPv6 address goes in brackets, as [{value}]: the controller builds URLs as http://<address>:<port>"
    return problem


def wanted_addresses(module) -> dict:
    """The address fields of the registration, each checked before any request (ports by NUMBER_LIMITS)."""
    params = module.params
    for field in HOST_FIELDS:
        value = params[field]
        problem = value is not None and host_problem(value)
        if problem:
            module.fail_json(
                msg=f"{field}: must be a host name or address without a scheme or port ({problem}), got {echo(value)}"
            )
    zone = params["availability_zone_id"]
    if not ZONE.fullmatch(zone):
        module.fail_json(
            msg="availability_zone_id: must be a zone name of up to 128 letters, digits, '-', '_', '.' or ':', "
            f"got {echo(zone)}"
        )
    return _storcon.node_addresses(params)


def main():
    module = neon_module(argument_spec=argument_spec(), supports_check_mode=True)
    node_id = validate_or_fail(module, validate_node_id, module.params["node_id"], "node_id")
    wanted = wanted_addresses(module)
    client = client_from_module(module)
    try:
        found = _storcon.nodes(client, node_id)
    except NeonAPIError as exc:
        fail_api(module, exc, f"read node {node_id} on the storage controller", reason=_storcon.failure_reason(exc))
    current = found[0] if found else None
    if current is not None:
        differences = _storcon.address_differences(current, wanted)
        if differences:
            listed = ", ".join(f"{field} is {have!r}, wanted {want!r}" for field, have, want in differences)
            module.fail_json(
                msg=f"node_id: node {node_id} is already registered with different addresses ({listed}); "
                "nothing was sent. Use a new node id for a new host.",
                node=current,
            )
    registered = current is None
    before = {} if registered else _storcon.node_addresses(current)
    if module.check_mode:
        module.exit_json(
            changed=registered, registered=registered, node=current, diff={"before": before, "after": wanted}
        )
    if registered:
        try:
            _storcon.register_node(client, node_id, wanted)
        except NeonAPIError as exc:
            fail_api(module, exc, f"register node {node_id} with the storage controller")

    def probe():
        described = _storcon.node_describe(client, node_id)
        ready = not module.params["wait_available"] or described.get("availability") == "Active"
        return ready, described

    try:
        node = poll(probe, module.params["wait_timeout"], f"node {node_id} Active on the storage controller")
    except PollTimeout as exc:
        module.fail_json(msg=f"{exc} (last seen {exc.last})", changed=registered, node=exc.last)
    except NeonAPIError as exc:
        fail_api(module, exc, f"read node {node_id} on the storage controller")
    module.exit_json(changed=registered, registered=registered, node=node, diff={"before": before, "after": wanted})


if __name__ == "__main__":
    main()
