"""Every error status of the first request each pageserver module makes gives a clear failure.

The failure names what was attempted, the method and URL, the status and the server's message, and never the
token. Statuses with a documented special meaning for a module (404 = absent for tenant_info/tenant_location,
503 = still activating for timeline_catchup) are covered in the module's own tests.
"""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import (
    heatmap_upload,
    pageserver_info,
    secondary_download,
    tenant_config,
    tenant_info,
    tenant_location,
    timeline_catchup,
)
from ansible_collections.neonops.storage.tests.unit.conftest import SECRET_TOKEN, TENANT_ID, TIMELINE_ID

STATUSES = (400, 401, 403, 404, 409, 500, 503)
SERVER_MESSAGES = {
    400: "Failed to parse json request: missing field `mode`",
    401: "Unauthorized: missing authorization header",
    403: "Forbidden: JWT authentication error",
    404: f"NotFound: tenant {TENANT_ID}",
    409: "Conflict: tenant slot busy",
    500: "tenant is broken: simulated",
    503: "Tenant not yet active",
}

# module, extra args, (method, path) of the first request, what the failure says was attempted, skipped statuses
CASES = [
    (pageserver_info, {}, ("GET", "/v1/status"), "read pageserver status", ()),
    (tenant_info, {}, ("GET", f"/v1/location_config/{TENANT_ID}"), f"read location config of {TENANT_ID}", (404,)),
    (
        tenant_location,
        {"mode": "AttachedSingle", "generation": 1, "wait_timeout": 0},
        ("GET", f"/v1/location_config/{TENANT_ID}"),
        f"read location config of {TENANT_ID}",
        (404,),
    ),
    (
        tenant_config,
        {"background_ops": "suspended"},
        ("GET", f"/v1/location_config/{TENANT_ID}"),
        f"read location config of {TENANT_ID}",
        (404,),
    ),
    (heatmap_upload, {}, ("POST", f"/v1/tenant/{TENANT_ID}/heatmap_upload"), f"upload heatmap of {TENANT_ID}", ()),
    (
        secondary_download,
        {},
        ("GET", f"/v1/tenant/{TENANT_ID}/secondary/status"),
        f"read secondary status of {TENANT_ID}",
        (),
    ),
    (
        timeline_catchup,
        {"target_lsns": {TIMELINE_ID: "0/10"}, "deadline": 0},
        ("GET", f"/v1/tenant/{TENANT_ID}/timeline"),
        f"read timelines of {TENANT_ID} on the destination",
        (503,),
    ),
]

PARAMS = [
    pytest.param(module, extra, request, attempted, status, id=f"{module.__name__.rsplit('.', 1)[-1]}-{status}")
    for module, extra, request, attempted, skipped in CASES
    for status in STATUSES
    if status not in skipped
]


@pytest.mark.parametrize(("module", "extra", "request_", "attempted", "status"), PARAMS)
def test_error_status_fails_clearly(fake_api, run_module, module, extra, request_, attempted, status):
    method, path = request_
    fake_api.add(method, path, {"msg": SERVER_MESSAGES[status]}, status)
    args = {"api_url": fake_api.url, "api_token": SECRET_TOKEN, "tenant_shard_id": TENANT_ID, "retries": 0, **extra}
    if module is pageserver_info:
        del args["tenant_shard_id"]
    run = run_module(module, args)
    assert run.failed
    assert run["msg"].startswith(f"{attempted} failed: ")
    assert f"{method} {fake_api.url}{path}: HTTP {status}: {SERVER_MESSAGES[status]}" in run["msg"]
    assert run["status"] == status
    assert fake_api.mutating_requests == [] or method == "POST"
    assert SECRET_TOKEN not in run.raw
