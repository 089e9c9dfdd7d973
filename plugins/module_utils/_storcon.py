# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Thin wrappers over the Neon storage controller (storcon) HTTP API.

Internal to neonops.storage; may change in any release. Every function takes a ``NeonClient`` and returns
plain data; HTTP errors surface as ``NeonAPIError`` from the client.
"""

from __future__ import annotations

from urllib.parse import quote

from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._echo import echo
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_node_id, validate_tenant_id


def _segment(value) -> str:
    # Path parameters come from user input: keep them one path segment.
    return quote(str(value), safe="")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _attach_hook_problem(data):
    generation = data.get("gen")
    if generation is not None and not _is_int(generation):
        return f"gen: expected an integer generation, got {echo(generation)}"
    return None


def _inspect_problem(data):
    attachment = (data or {}).get("attachment")
    if attachment is None:
        return None
    if not (isinstance(attachment, list) and len(attachment) == 2 and all(_is_int(v) for v in attachment)):
        return f"attachment: expected [generation, node_id], got {echo(attachment)}"
    return None


def _objects_problem(data):
    for item in data:
        if not isinstance(item, dict):
            return f"expected objects, got {echo(item)}"
    return None


def _tenant_problem(data):
    shards = data.get("shards", [])
    if not isinstance(shards, list):
        return f"shards: expected an array, got {echo(shards)}"
    for shard in shards:
        if not isinstance(shard, dict) or not isinstance(shard.get("tenant_shard_id"), str):
            return f"shards: expected objects with a tenant_shard_id, got {echo(shard)}"
    return None


def attach_hook(client, tenant_shard_id: str, node_id: int | None, generation_override: int | None = None):
    """Issue a new generation for ``tenant_shard_id`` on ``node_id`` (``None`` detaches).

    Not idempotent: every call increments the generation. Returns the new generation (``None`` on detach).
    """
    body = {"tenant_shard_id": str(tenant_shard_id), "node_id": node_id}
    if generation_override is not None:
        body["generation_override"] = generation_override
    data = client.post("/debug/v1/attach-hook", json=body, returns=dict, check=_attach_hook_problem).data
    return data.get("gen")


def inspect(client, tenant_shard_id: str) -> dict:
    """Read the current generation and its node without changing anything.

    Returns ``{"generation": int|None, "node_id": int|None}``; both are ``None`` when the shard is unknown
    or detached.
    """
    data = client.post(
        "/debug/v1/inspect",
        json={"tenant_shard_id": str(tenant_shard_id)},
        returns=(dict, type(None)),
        check=_inspect_problem,
        mutating=False,
    ).data
    attachment = (data or {}).get("attachment")
    if not attachment:
        return {"generation": None, "node_id": None}
    generation, node_id = attachment
    return {"generation": generation, "node_id": node_id}


def node_list(client) -> list:
    return client.get("/control/v1/node", returns=list, check=_objects_problem).data


def node_describe(client, node_id: int) -> dict:
    return client.get(f"/control/v1/node/{_segment(node_id)}", returns=dict).data


def tenant_describe(client, tenant_id: str) -> dict:
    return client.get(f"/control/v1/tenant/{_segment(tenant_id)}", returns=dict, check=_tenant_problem).data


def locate(client, tenant_id: str) -> dict:
    return client.get(f"/debug/v1/tenant/{_segment(tenant_id)}/locate", returns=dict).data


def is_unknown_route(exc: NeonAPIError) -> bool:
    """A 404 that is not the controller's "not found" for the object: the URL does not serve its API."""
    return exc.unknown_route


def failure_reason(exc: NeonAPIError) -> str | None:
    """What to add to a failure message: a 404 for the route itself means the URL is not a storage controller."""
    return "the URL does not serve the storage controller API" if is_unknown_route(exc) else None


def nodes(client, node_id: int | None = None) -> list:
    """All node descriptions, or only ``node_id``'s (``[]`` when the controller does not know that node).

    A 404 for the route itself is raised, so a wrong URL is not mistaken for an unknown node.
    """
    if node_id is None:
        return node_list(client)
    try:
        return [node_describe(client, validate_node_id(node_id))]
    except NeonAPIError as exc:
        if exc.not_found:
            return []
        raise


def tenant_or_none(client, tenant_id: str) -> dict | None:
    """The tenant's description, or ``None`` when the controller does not know the tenant."""
    try:
        return tenant_describe(client, validate_tenant_id(tenant_id))
    except NeonAPIError as exc:
        if exc.not_found:
            return None
        raise


SHARD_SCHEDULING_POLICIES = ("Active", "Essential", "Pause", "Stop")


def set_tenant_scheduling(client, tenant_id: str, scheduling: str) -> None:
    """Set the scheduling policy of every shard of the tenant (placement left as it is)."""
    client.put(f"/control/v1/tenant/{_segment(validate_tenant_id(tenant_id))}/policy", json={"scheduling": scheduling})


def shard_scheduling(tenant: dict | None) -> dict:
    """``{tenant_shard_id: scheduling_policy}`` from a tenant description (``{}`` for none)."""
    return {s["tenant_shard_id"]: s.get("scheduling_policy") for s in (tenant or {}).get("shards") or []}


# NodeRegisterRequest's address fields (storage_controller/src/http.rs, libs/pageserver_api/src/controller_api.rs);
# a node registered again with the same values is a no-op upstream, with different ones a 409.
NODE_ADDRESS_FIELDS = (
    "listen_pg_addr",
    "listen_pg_port",
    "listen_http_addr",
    "listen_http_port",
    "listen_https_port",
    "listen_grpc_addr",
    "listen_grpc_port",
    "availability_zone_id",
)


def node_addresses(node: dict | None) -> dict:
    """The address fields of a node description or register request (absent ones as ``None``)."""
    return {field: (node or {}).get(field) for field in NODE_ADDRESS_FIELDS}


def address_differences(current: dict, wanted: dict) -> list:
    """``[(field, current, wanted)]`` for each address field that differs."""
    have, want = node_addresses(current), node_addresses(wanted)
    return [(field, have[field], want[field]) for field in NODE_ADDRESS_FIELDS if have[field] != want[field]]


def register_node(client, node_id: int, addresses: dict) -> None:
    """``POST /control/v1/node`` (NodeRegisterRequest). Not retried: the client never resends a POST."""
    body = {"node_id": validate_node_id(node_id)}
    body.update({k: v for k, v in node_addresses(addresses).items() if v is not None})
    client.post("/control/v1/node", json=body)
