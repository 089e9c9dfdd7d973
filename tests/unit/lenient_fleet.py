"""A fake server that answers every route of every service the modules call, like a healthy fleet would.

Set ``FakeAPI.fallback = lenient_fleet``: reads get plausible upstream shapes, and every mutating request is
accepted. A module that let bad input through would therefore go on and send its mutating request, which
the fake records, so tests can prove that validation happens before any request.
"""

from __future__ import annotations

import re

from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID, TIMELINE_ID
from ansible_collections.neonops.storage.tests.unit.pageserver_canned import (
    UTILIZATION,
    location,
    progress,
    tenant_config,
    tenant_details,
    timeline_info,
)

_ID = r"[^/]+"

# The addresses every node of the fleet is registered with (storcon_node given these finds nothing to change).
NODE_ADDRESSES = {
    "listen_http_addr": "ps2.internal",
    "listen_http_port": 9898,
    "listen_pg_addr": "ps2.internal",
    "listen_pg_port": 6400,
    "availability_zone_id": "az-a",
}


def _node(node_id):
    node_id = int(node_id) if str(node_id).isdigit() else node_id
    return {"id": node_id, "availability": "Active", "scheduling": "Active", **NODE_ADDRESSES}


def _routes():
    return [
        # compute_ctl
        ("GET", r"/status", lambda m: (200, {"status": "running", "tenant": TENANT_ID, "timeline": TIMELINE_ID})),
        ("POST", r"/configure", lambda m: (200, {"status": "running"})),
        # storage controller
        ("POST", r"/debug/v1/inspect", lambda m: (200, {"attachment": [3, 1]})),
        ("POST", r"/debug/v1/attach-hook", lambda m: (200, {"gen": 4})),
        ("GET", r"/control/v1/node", lambda m: (200, [_node(1), _node(2)])),
        ("GET", rf"/control/v1/node/({_ID})", lambda m: (200, _node(m.group(1)))),
        (
            "GET",
            rf"/control/v1/tenant/({_ID})",
            lambda m: (
                200,
                {"tenant_id": m.group(1), "shards": [{"tenant_shard_id": m.group(1), "scheduling_policy": "Active"}]},
            ),
        ),
        ("PUT", rf"/control/v1/tenant/{_ID}/policy", lambda m: (200, None)),
        # pageserver (and the safekeeper's timeline route, which has the same path)
        ("GET", r"/v1/status", lambda m: (200, {"id": 1})),
        ("GET", r"/v1/utilization", lambda m: (200, UTILIZATION)),
        ("GET", r"/v1/location_config", lambda m: (200, {"tenant_shards": [[TENANT_ID, location()]]})),
        ("GET", rf"/v1/location_config/{_ID}", lambda m: (200, location())),
        ("PUT", rf"/v1/tenant/{_ID}/location_config", lambda m: (200, {"shards": []})),
        ("GET", r"/v1/tenant", lambda m: (200, [tenant_details()])),
        ("GET", rf"/v1/tenant/{_ID}", lambda m: (200, tenant_details())),
        ("GET", rf"/v1/tenant/{_ID}/config", lambda m: (200, tenant_config())),
        ("PUT", r"/v1/tenant/config", lambda m: (200, None)),
        ("PATCH", r"/v1/tenant/config", lambda m: (200, None)),
        ("GET", rf"/v1/tenant/{_ID}/timeline", lambda m: (200, [timeline_info()])),
        (
            "GET",
            rf"/v1/tenant/{_ID}/timeline/({_ID})",
            lambda m: (404, {"msg": f"NotFound: Timeline {TENANT_ID}/{m.group(1)} was not found"}),
        ),
        ("POST", rf"/v1/tenant/{_ID}/timeline", lambda m: (201, timeline_info())),
        ("DELETE", rf"/v1/tenant/{_ID}/timeline/{_ID}", lambda m: (202, None)),
        ("POST", rf"/v1/tenant/{_ID}/heatmap_upload", lambda m: (200, None)),
        ("GET", rf"/v1/tenant/{_ID}/secondary/status", lambda m: (200, progress(0, 4))),
        ("POST", rf"/v1/tenant/{_ID}/secondary/download", lambda m: (200, progress(4, 4))),
    ]


ROUTES = [(method, re.compile(pattern), answer) for method, pattern, answer in _routes()]


def lenient_fleet(request):
    for method, pattern, answer in ROUTES:
        match = pattern.fullmatch(request.path)
        if method == request.method and match:
            return answer(match)
    return 200, None  # anything else is accepted too
