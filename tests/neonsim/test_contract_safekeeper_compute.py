"""Safekeeper TimelineStatus and compute_ctl status bodies validate against the upstream OpenAPI files.

The specs (upstream `safekeeper/src/http/openapi_spec.yaml`, `compute_tools/src/http/openapi_spec.yaml`) are read
from `../shared/reference/neon/` relative to the repository root (never copied). Where upstream's code and the
spec differ, the documented exceptions in `contract_exceptions.py` are applied to the schema before validating,
each with its reason.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import aiohttp
import jsonschema
import pytest
import yaml
from fleet_helpers import free_port, serve

from neonsim._server import NodeContext
from neonsim.compute import ComputeNode
from neonsim.lsn import format_lsn, record_size
from neonsim.safekeeper import SafekeeperNode

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO_ROOT.parent / "shared" / "reference" / "neon"
TENANT = "c" * 32
TIMELINE = "d" * 32

from contract_exceptions import (
    SAFEKEEPER_COMPUTE_EXCEPTIONS,
    SAFEKEEPER_COMPUTE_RESPONSE_EXCEPTIONS,
    SAFEKEEPER_COMPUTE_UNDOCUMENTED_ROUTES,
)


def load_spec(spec_file: str) -> dict:
    path = SPEC_DIR / spec_file
    if not path.exists():
        pytest.skip(f"upstream spec {path} not available")
    return yaml.safe_load(path.read_text())


def validator(spec_file: str, schema_name: str) -> jsonschema.Validator:
    doc = load_spec(spec_file)
    components = copy.deepcopy(doc["components"])
    for file, name, prop, override, reason in SAFEKEEPER_COMPUTE_EXCEPTIONS:
        assert reason, "every contract exception needs a reason"
        if file != spec_file or override is None:
            continue  # documentation-only entry: the spec already accepts the code's output
        if prop is None:
            components["schemas"][name] = override
        else:
            components["schemas"][name]["properties"][prop] = override
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    return jsonschema.Draft4Validator(schema)


def fleet(tmp_path) -> dict:
    return {
        "dir": str(tmp_path),
        "auth": {"enabled": False},
        "safekeepers": [
            {"name": "sk1", "node_id": 101, "http_port": free_port(), "pg_port": free_port(), "fsync": False}
        ],
        "computes": [
            {
                "name": "compute1",
                "compute_id": "compute-1",
                "http_port": free_port(),
                "tenant_id": TENANT,
                "timeline_id": TIMELINE,
                "workload": {"enabled": False},
            }
        ],
    }


def test_timeline_status_matches_safekeeper_openapi(tmp_path):
    f = fleet(tmp_path)
    sk = f["safekeepers"][0]
    http, pg = f"http://127.0.0.1:{sk['http_port']}", f"http://127.0.0.1:{sk['pg_port']}"
    schema = validator("safekeeper-openapi.yaml", "TimelineStatus")
    status_schema = validator("safekeeper-openapi.yaml", "SafekeeperStatus")

    async def scenario():
        node = SafekeeperNode(NodeContext(tmp_path, "sk1", fleet=f))
        async with serve(node), aiohttp.ClientSession() as s:
            body = {
                "tenant_id": TENANT,
                "timeline_id": TIMELINE,
                "mconf": {"generation": 1, "members": []},
                "pg_version": 170000,
                "start_lsn": "0/1000000",
            }
            async with s.post(f"{http}/v1/tenant/timeline", json=body) as r:
                assert r.status == 200
            start = 0x1000000
            rec = {
                "lsn": format_lsn(start),
                "end_lsn": format_lsn(start + record_size("k", "v")),
                "key": "k",
                "value": "v",
            }
            async with s.post(
                f"{pg}/sim/wal/append",
                json={"tenant_id": TENANT, "timeline_id": TIMELINE, "records": [rec], "commit_lsn": rec["end_lsn"]},
            ) as r:
                assert r.status == 200
            params = {
                "tenant_id": TENANT,
                "timeline_id": TIMELINE,
                "start_lsn": "0/1000000",
                "node_id": "1",
                "wait_ms": "0",
                "remote_consistent_lsn": "0/0",
            }
            async with s.get(f"{pg}/sim/wal/stream", params=params) as r:
                assert r.status == 200
            async with s.get(f"{http}/v1/tenant/{TENANT}/timeline/{TIMELINE}") as r:
                assert r.status == 200
                status = await r.json()
            async with s.get(f"{http}/v1/status") as r:
                node_status = await r.json()
            return status, node_status

    status, node_status = asyncio.run(scenario())
    schema.validate(status)
    status_schema.validate(node_status)
    assert node_status == {"id": 101}
    # upstream fields beyond the (stale) spec, `libs/safekeeper_api/src/models.rs`
    for field in ("mconf", "pg_info", "peers", "walsenders", "walreceivers"):
        assert field in status
    assert status["commit_lsn"] == status["flush_lsn"] == "0/1000042"
    assert list(status["walsenders"][0]) == ["Interpreted"]
    assert set(status["walsenders"][0]["Interpreted"]["feedback"]["Pageserver"]) >= {
        "last_received_lsn",
        "disk_consistent_lsn",
        "remote_consistent_lsn",
        "replytime",
        "shard_number",
    }


def test_compute_status_matches_compute_ctl_openapi(tmp_path):
    f = fleet(tmp_path)
    url = f"http://127.0.0.1:{f['computes'][0]['http_port']}"
    schema = validator("compute-ctl-openapi.yaml", "ComputeState")
    spec = {
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": []},
        "suspend_timeout_seconds": -1,
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connection_info": {
            "shard_count": 0,
            "stripe_size": None,
            "shards": {"0000": {"pageservers": [{"id": 1, "libpq_url": "postgres://no_user@127.0.0.1:1"}]}},
        },
    }

    async def scenario():
        node = ComputeNode(NodeContext(tmp_path, "compute1", fleet=f))
        async with serve(node), aiohttp.ClientSession() as s:
            async with s.get(f"{url}/status") as r:
                empty = await r.json()
            async with s.post(f"{url}/configure", json={"spec": spec}) as r:
                rejected = (r.status, await r.json())
            async with s.post(
                f"{url}/configure", json={"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}}
            ) as r:
                configured = (r.status, await r.json())
            async with s.get(f"{url}/status") as r:
                running = await r.json()
            return empty, rejected, configured, running

    empty, rejected, configured, running = asyncio.run(scenario())
    for body in (empty, configured[1], running):
        schema.validate(body)
    assert empty["status"] == "empty" and empty["tenant"] is None
    assert rejected[0] == 400 and "compute_ctl_config" in rejected[1]["error"]
    assert configured[0] == 200 and running["status"] == "running" and running["tenant"] == TENANT


def test_the_spec_really_rejects_what_the_exceptions_allow():
    # Guards the exceptions: without them a null tenant must fail, else the entry is stale and should go.
    doc = load_spec("compute-ctl-openapi.yaml")
    strict = jsonschema.Draft4Validator({"$ref": "#/components/schemas/ComputeState", "components": doc["components"]})
    assert not strict.is_valid({"start_time": "2024-01-01T00:00:00Z", "status": "empty", "tenant": None})


def test_route_exceptions_are_still_needed(tmp_path):
    """Each documented route difference must really be absent from the spec, and the sim must serve it."""
    doc = load_spec("safekeeper-openapi.yaml")
    for method, path, reason in SAFEKEEPER_COMPUTE_UNDOCUMENTED_ROUTES:
        assert reason
        assert method.lower() not in doc["paths"].get(path, {}), f"{method} {path} is in the spec now"
    for spec_file, method, path, status, _body_schema, reason in SAFEKEEPER_COMPUTE_RESPONSE_EXCEPTIONS:
        assert spec_file == "safekeeper-openapi.yaml" and reason
        documented = doc["paths"].get(path, {}).get(method.lower(), {}).get("responses", {})
        assert str(status) not in documented and status not in documented

    f = fleet(tmp_path)
    http = f"http://127.0.0.1:{f['safekeepers'][0]['http_port']}"

    async def scenario():
        node = SafekeeperNode(NodeContext(tmp_path, "sk1", fleet=f))
        out = {}
        async with serve(node), aiohttp.ClientSession() as s:
            body = {
                "tenant_id": TENANT,
                "timeline_id": TIMELINE,
                "mconf": {"generation": 1, "members": []},
                "pg_version": 170000,
                "start_lsn": "0/1000000",
            }
            async with s.post(f"{http}/v1/tenant/timeline", json=body) as r:
                out[("POST", "/v1/tenant/timeline")] = (r.status, await r.json(content_type=None))
            async with s.get(f"{http}/v1/tenant/timeline") as r:
                out[("GET", "/v1/tenant/timeline")] = (r.status, await r.json())
            async with s.get(f"{http}/v1/utilization") as r:
                out[("GET", "/v1/utilization")] = (r.status, await r.json())
        return out

    out = asyncio.run(scenario())
    for method, path, _ in SAFEKEEPER_COMPUTE_UNDOCUMENTED_ROUTES:
        assert out[(method, path)][0] == 200
    for _file, method, path, status, body_schema, _reason in SAFEKEEPER_COMPUTE_RESPONSE_EXCEPTIONS:
        got_status, got_body = out[(method, path)]
        assert got_status == status
        jsonschema.validate(got_body, body_schema)
