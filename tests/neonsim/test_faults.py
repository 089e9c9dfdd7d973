"""Fault injection: status, error rate, latency and freeze on node HTTP ports; 503s and drops at the S3 proxy."""

from __future__ import annotations

import asyncio
import json
import threading

import boto3
import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from neonsim._faults import FaultSpec, FaultSpecError, FaultState
from neonsim._server import NodeContext, json_response


def make_app(tmp_path):
    fleet = {
        "dir": str(tmp_path),
        "auth": {"enabled": False},
        "storage_controller": {"name": "storcon", "http_port": 1},
        "pageservers": [],
        "safekeepers": [],
        "computes": [],
    }
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    ctx = NodeContext(tmp_path, "storcon")
    app = ctx.make_http_app()

    async def handler(request):
        return json_response(None)

    app.router.add_get("/status", handler)
    app.router.add_put("/control/v1/node/{id}/config", handler)
    return ctx, app


def run(app, calls):
    async def main():
        async with TestClient(TestServer(app)) as client:
            return await calls(client)

    return asyncio.run(main())


def test_status_fault_only_on_matching_routes(tmp_path):
    ctx, app = make_app(tmp_path)

    async def calls(client):
        set_resp = await client.post("/sim/fault", json={"status": 503, "routes": "^PUT /control/"})
        put = await client.put("/control/v1/node/1/config")
        get = await client.get("/status")
        health = await client.get("/sim/fault")  # /sim/* never faulted
        cleared = await client.delete("/sim/fault")
        after = await client.put("/control/v1/node/1/config")
        return set_resp.status, put.status, await put.json(), get.status, health.status, cleared.status, after.status

    assert run(app, calls) == (200, 503, {"msg": "injected fault (status 503)"}, 200, 200, 200, 200)
    lines = [json.loads(line) for line in (tmp_path / "requests" / "storcon.jsonl").read_text().splitlines()]
    assert [(line["method"], line["status"]) for line in lines if line["path"].startswith("/control")] == [
        ("PUT", 503),
        ("PUT", 200),
    ]


def test_error_rate_and_latency(tmp_path):
    ctx, app = make_app(tmp_path)
    ctx.faults.rng.seed(7)

    async def calls(client):
        await client.post("/sim/fault", json={"error_rate": 0.5, "latency_ms": 5})
        statuses = [(await client.get("/status")).status for _ in range(40)]
        return statuses

    statuses = run(app, calls)
    assert set(statuses) == {200, 503}
    assert ctx.faults.injected == statuses.count(503)
    durations = [
        json.loads(line)["duration_ms"]
        for line in (tmp_path / "requests" / "storcon.jsonl").read_text().splitlines()
        if '"/status"' in line
    ]
    assert min(durations) >= 5.0  # every request carried the injected latency


def test_freeze_hangs_until_cleared(tmp_path):
    ctx, app = make_app(tmp_path)

    async def calls(client):
        await client.post("/sim/fault", json={"freeze": True, "routes": "/status"})
        frozen = asyncio.ensure_future(client.get("/status"))
        done, _ = await asyncio.wait({frozen}, timeout=0.5)
        hung = not done
        other = (await client.put("/control/v1/node/1/config")).status  # not matched: answers
        await client.delete("/sim/fault")
        resp = await frozen
        return hung, other, resp.status

    assert run(app, calls) == (True, 200, 200)


def test_fault_spec_validation():
    for bad in ({"error_rate": 2}, {"status": 42}, {"routes": "("}, {"latency_ms": -1}, {"colour": "red"}, []):
        with pytest.raises(FaultSpecError):
            FaultSpec.from_json(bad)
    state = FaultState(seed=1)
    state.set(FaultSpec.from_json({"status": 500, "routes": "^GET /v1/tenant"}))
    assert asyncio.run(state.apply("GET", "/v1/tenant/x")) == 500
    assert asyncio.run(state.apply("PUT", "/v1/tenant/x")) is None
    assert asyncio.run(state.apply("GET", "/sim/health")) is None


@pytest.mark.neonsim
def test_cli_fault_on_storcon_and_s3_proxy(neonsim_fleet):
    sim = neonsim_fleet("storcon-only")
    sim.fault("storcon", status=500, routes="/control/v1/node$")
    assert requests.get(sim.storcon_url + "/control/v1/node", timeout=5).status_code == 500
    assert requests.get(sim.storcon_url + "/status", timeout=5).status_code == 200
    sim.clear_fault("storcon")
    assert requests.get(sim.storcon_url + "/control/v1/node", timeout=5).status_code == 200

    # freeze on a real node process: a request hangs until the fault is cleared from another thread
    sim.fault("storcon", freeze=True, routes="/control/v1/node$")
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "status", requests.get(sim.storcon_url + "/control/v1/node", timeout=30).status_code
        )
    )
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()
    sim.clear_fault("storcon")
    thread.join(10)
    assert result == {"status": 200}

    s3 = sim.fleet["s3"]
    client = boto3.client(
        "s3",
        endpoint_url=s3["endpoint_url"],
        region_name=s3["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    client.put_object(Bucket=s3["bucket"], Key="pageserver/tenants/x/blob", Body=b"payload")
    sim.fault("s3proxy", error_rate=1.0, routes="^GET /neon-sim/pageserver/tenants/")
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=s3["bucket"], Key="pageserver/tenants/x/blob")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert err.value.response["Error"]["Code"] == "SlowDown"
    client.put_object(Bucket=s3["bucket"], Key="pageserver/tenants/x/other", Body=b"ok")  # PUT not matched
    sim.fault("s3proxy", drop_rate=1.0, routes="^GET ")
    with pytest.raises(ConnectionClosedError):
        client.get_object(Bucket=s3["bucket"], Key="pageserver/tenants/x/blob")
    sim.clear_fault("s3proxy")
    assert client.get_object(Bucket=s3["bucket"], Key="pageserver/tenants/x/blob")["Body"].read() == b"payload"
    stats = requests.get(s3["endpoint_url"] + "/sim/stats", timeout=5).json()
    assert stats["errors_injected"] >= 1 and stats["dropped"] >= 1
