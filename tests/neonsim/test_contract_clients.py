"""What a client written against upstream notices: trailing slashes on routes, the non-incremental logical size, the
layer map's shape and the remote timeline client's call counters (issue 10).

Sources: upstream `pageserver/src/http/routes.rs` (handlers, query flags), `libs/http-utils/src/endpoint.rs` (the
routerify router of the pageserver, safekeeper and storage controller), `libs/pageserver_api/src/models.rs`
(`LayerMapInfo`, `HistoricLayerInfo`, `InMemoryLayerInfo`, `LayerAccessStats`), `pageserver/src/metrics.rs`
(`pageserver_remote_timeline_client_calls_started` / `_finished`) and `compute_tools/src/http/server.rs` (axum,
exact paths).
"""

from __future__ import annotations

import asyncio
import re
import uuid

import jsonschema
import pytest
from aiohttp.test_utils import make_mocked_request
from fleet_helpers import free_port, wait_for

from neonsim._server import NodeContext
from neonsim.compute import ComputeNode
from neonsim.pageserver.http import Pageserver
from neonsim.pageserver.testing import Harness
from neonsim.safekeeper import SafekeeperNode
from neonsim.storcon import StorageController

pytestmark = pytest.mark.neonsim

# Compaction and GC only when a test asks; a checkpoint only when a test asks (so unflushed WAL stays in memory).
QUIET = {"compaction_period": "0s", "gc_period": "0s", "checkpoint_timeout": "10m", "checkpoint_distance": 10**9}
TENANT = "e" * 32


@pytest.fixture(scope="module")
def sim(neonsim_fleet_module):
    return neonsim_fleet_module("small")


@pytest.fixture(scope="module")
def h(sim):
    return Harness(sim)


def tenant_with_data(h, ps="ps1", keys=5, tag="v"):
    tenant, timeline, gen = h.create_tenant(ps, QUIET)
    lsn = h.write_keys(tenant, timeline, keys, tag)
    h.wait_lsn(ps, tenant, timeline, lsn)
    return tenant, timeline, gen, lsn


# ---- trailing slashes ------------------------------------------------------------------------------------------------


def _in_process_nodes(tmp_path):
    ports = iter(free_port() for _ in range(10))
    s3 = {"endpoint_url": "http://127.0.0.1:9", "bucket": "b", "region": "us-east-1"}
    fleet = {
        "dir": str(tmp_path),
        "auth": {"enabled": False},
        "s3": s3,
        "storage_controller": {"name": "storcon", "http_port": next(ports)},
        "pageservers": [
            {"name": "ps1", "node_id": 1, "http_port": next(ports), "pg_port": next(ports), "az": "az-a"}
        ],
        "safekeepers": [{"name": "sk1", "node_id": 101, "http_port": next(ports), "pg_port": next(ports)}],
        "computes": [
            {"name": "compute1", "compute_id": "c-1", "http_port": next(ports), "tenant_id": TENANT,
             "timeline_id": TENANT, "workload": {"enabled": False}}
        ],
    }  # fmt: skip
    return {
        "pageserver": Pageserver(NodeContext(tmp_path, "ps1", fleet=fleet)),
        "safekeeper": SafekeeperNode(NodeContext(tmp_path, "sk1", fleet=fleet)),
        "storcon": StorageController(NodeContext(tmp_path, "storcon", fleet=fleet)),
        "compute": ComputeNode(NodeContext(tmp_path, "compute1", fleet=fleet)),
    }


def _upstream_routes(app):
    """(method, example path, handler) of every upstream route of an app (not the sim-only /sim/... ones)."""
    for resource in app.router.resources():
        canonical = resource.canonical
        if canonical.startswith("/sim/") or not len(resource):
            continue
        path = re.sub(r"\{[^}]+\}", TENANT, canonical)
        for route in resource:
            if route.method != "HEAD":
                yield route.method, path, route.handler


def test_every_upstream_route_accepts_a_trailing_slash(tmp_path):
    """routerify (pageserver, safekeeper, storage controller) matches `/path` and `/path/` alike; compute_ctl's axum
    router does not."""
    nodes = _in_process_nodes(tmp_path)

    async def check():
        checked = 0
        for kind, node in nodes.items():
            app = node.http
            for method, path, handler in _upstream_routes(app):
                exact = await app.router.resolve(make_mocked_request(method, path, app=app))
                assert exact.handler == handler, (kind, method, path)
                slashed = await app.router.resolve(make_mocked_request(method, path + "/", app=app))
                if kind == "compute":
                    assert slashed.http_exception is not None and slashed.http_exception.status == 404, path
                else:
                    assert slashed.http_exception is None and slashed.handler == handler, (kind, method, path + "/")
                    checked += 1
            # sim-only routes stay exact, and two slashes are not one
            sim = await app.router.resolve(make_mocked_request("GET", "/sim/health/", app=app))
            assert sim.http_exception is not None and sim.http_exception.status == 404
        for node in nodes.values():
            await node.ctx.close()
        return checked

    assert asyncio.run(check()) > 50


def test_trailing_slash_routes_on_a_live_fleet(h, sim):
    tenant, timeline, gen, _lsn = tenant_with_data(h)
    base = h.ps("ps1")
    for path in (
        "/v1/status",
        "/v1/tenant",
        f"/v1/tenant/{tenant}",
        f"/v1/tenant/{tenant}/timeline",
        f"/v1/tenant/{tenant}/timeline/{timeline}",
        f"/v1/tenant/{tenant}/timeline/{timeline}/layer",
    ):
        exact, slashed = h.call("GET", base + path).json(), h.call("GET", base + path + "/").json()
        # sizes, LSNs and access times may move between two reads: compare the shape
        assert type(slashed) is type(exact), path
        if isinstance(exact, dict):
            assert set(slashed) == set(exact), path
        else:
            assert len(slashed) == len(exact), path
    assert h.call("GET", base + "/v1/status/").json() == {"id": h.node_id("ps1")}
    # a mutating route too: the same-generation location_config upsert
    body = {"mode": "AttachedSingle", "generation": gen, "secondary_conf": None, "tenant_conf": QUIET}
    resp = h.call("PUT", f"{base}/v1/tenant/{tenant}/location_config/", body)
    assert resp.json()["shards"] == [{"shard_id": tenant, "node_id": h.node_id("ps1")}]
    # the request log keeps the path as sent
    logged = [e for e in sim.request_log("ps1") if e["path"] == f"/v1/tenant/{tenant}/location_config/"]
    assert logged and logged[-1]["status"] == 200 and logged[-1]["mutating"]
    # safekeeper and storage controller: the same router
    sk1 = sim.entry("sk1")
    assert h.call("GET", sim.url("sk1") + "/v1/status/", service="safekeeper").json() == {"id": sk1["node_id"]}
    assert h.call("GET", sim.storcon_url + "/status/", service="storcon").status_code == 200
    nodes = h.call("GET", sim.storcon_url + "/control/v1/node/", service="storcon").json()
    assert {n["id"] for n in nodes} >= {h.node_id("ps1"), h.node_id("ps2")}
    # compute_ctl (axum) matches exactly
    assert h.call("GET", sim.url("compute1") + "/status", service="compute").status_code == 200
    resp = h.call("GET", sim.url("compute1") + "/status/", service="compute", expected=(404,))
    assert resp.status_code == 404
    # sim-only routes are not upstream's: exact
    h.call("GET", base + "/sim/health/", expected=(404,))


# ---- logical size ----------------------------------------------------------------------------------------------------


def _logical(h, ps, tenant, timeline, **flags):
    params = {k.replace("_", "-"): "true" for k, v in flags.items() if v}
    return h.call("GET", f"{h.ps(ps)}/v1/tenant/{tenant}/timeline/{timeline}", params=params).json()


def test_non_incremental_logical_size_is_filled_when_asked(h):
    tenant, timeline, _gen, lsn = tenant_with_data(h, keys=8, tag="size")
    plain = _logical(h, "ps1", tenant, timeline)
    assert plain["current_logical_size_non_incremental"] is None  # only when asked, as upstream
    info = _logical(h, "ps1", tenant, timeline, include_non_incremental_logical_size=True)
    assert info["current_logical_size_is_accurate"] is True
    assert info["current_logical_size_non_incremental"] == info["current_logical_size"] > 0
    listed = h.call(
        "GET", f"{h.ps('ps1')}/v1/tenant/{tenant}/timeline", params={"include-non-incremental-logical-size": "true"}
    ).json()
    assert [t["current_logical_size_non_incremental"] for t in listed] == [info["current_logical_size"]]
    # overwriting keys changes the size by the difference, both ways of counting agree
    lsn = h.write(tenant, timeline, [("k0000", "short"), ("new-key", "x" * 50)])
    h.wait_lsn("ps1", tenant, timeline, lsn)
    after = _logical(h, "ps1", tenant, timeline, include_non_incremental_logical_size=True)
    assert (
        after["current_logical_size_non_incremental"] == after["current_logical_size"] != info["current_logical_size"]
    )


def test_logical_size_after_attach_elsewhere_and_on_a_branch(h):
    """After an attach the incremental size is rebuilt from the layers (upstream's initial logical size calculation):
    not accurate until then, then equal to the non-incremental size."""
    tenant, timeline, _gen, lsn = tenant_with_data(h, keys=6, tag="moved")
    h.checkpoint("ps1", tenant, timeline)
    source = _logical(h, "ps1", tenant, timeline, include_non_incremental_logical_size=True)
    h.location("ps1", tenant, "AttachedStale", _gen, QUIET, flush_ms="5000")
    gen = h.attach_hook(tenant, "ps2")
    h.location("ps2", tenant, "AttachedSingle", gen, QUIET)
    h.wait_active("ps2", tenant)
    h.wait_lsn("ps2", tenant, timeline, lsn)
    moved = _logical(h, "ps2", tenant, timeline, force_await_initial_logical_size=True)
    assert moved["current_logical_size_is_accurate"] is True
    assert moved["current_logical_size"] == source["current_logical_size"]
    both = _logical(h, "ps2", tenant, timeline, include_non_incremental_logical_size=True)
    assert both["current_logical_size_non_incremental"] == both["current_logical_size"] == moved["current_logical_size"]

    child = uuid.uuid4().hex
    h.call("POST", f"{h.ps('ps2')}/v1/tenant/{tenant}/timeline", {"new_timeline_id": child,
           "ancestor_timeline_id": timeline}, expected=(201,))  # fmt: skip
    branch = _logical(h, "ps2", tenant, child, force_await_initial_logical_size=True)
    assert branch["current_logical_size_is_accurate"] is True
    assert branch["current_logical_size"] == moved["current_logical_size"]  # the ancestor's keys at the branch point


# ---- layer map -------------------------------------------------------------------------------------------------------

_LSN = {"type": "string", "pattern": r"^[0-9A-F]+/[0-9A-F]+$"}
_ACCESS_STATS = {
    "type": "object",
    "required": ["access_time", "residence_time", "visible"],
    "additionalProperties": False,
    "properties": {  # SystemTime as milliseconds since the epoch (serde_with TimestampMilliSeconds)
        "access_time": {"type": "integer", "minimum": 0},
        "residence_time": {"type": "integer", "minimum": 0},
        "visible": {"type": "boolean"},
    },
}
_HISTORIC_COMMON = {
    "layer_file_name": {"type": "string"},
    "layer_file_size": {"type": "integer", "minimum": 0},
    "lsn_start": _LSN,
    "remote": {"type": "boolean"},
    "access_stats": _ACCESS_STATS,
}
# libs/pageserver_api/src/models.rs: serde internally tagged enums (`#[serde(tag = "kind")]`), exact field sets
LAYER_MAP_SCHEMA = {
    "type": "object",
    "required": ["in_memory_layers", "historic_layers"],
    "additionalProperties": False,
    "properties": {
        "in_memory_layers": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "object", "required": ["kind", "lsn_start"], "additionalProperties": False,
                     "properties": {"kind": {"enum": ["Open"]}, "lsn_start": _LSN}},
                    {"type": "object", "required": ["kind", "lsn_start", "lsn_end"], "additionalProperties": False,
                     "properties": {"kind": {"enum": ["Frozen"]}, "lsn_start": _LSN, "lsn_end": _LSN}},
                ]
            },
        },
        "historic_layers": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "object", "additionalProperties": False,
                     "required": ["kind", *_HISTORIC_COMMON, "lsn_end", "l0"],
                     "properties": {"kind": {"enum": ["Delta"]}, **_HISTORIC_COMMON, "lsn_end": _LSN,
                                    "l0": {"type": "boolean"}}},
                    {"type": "object", "additionalProperties": False, "required": ["kind", *_HISTORIC_COMMON],
                     "properties": {"kind": {"enum": ["Image"]}, **_HISTORIC_COMMON}},
                ]
            },
        },
    },
}  # fmt: skip


def lsn_int(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def test_layer_map_has_upstreams_shape(h):
    tenant, timeline, _gen, _lsn = tenant_with_data(h, tag="l1")
    h.checkpoint("ps1", tenant, timeline)
    lsn = h.write_keys(tenant, timeline, 5, "l2")
    h.wait_lsn("ps1", tenant, timeline, lsn)
    h.checkpoint("ps1", tenant, timeline)
    h.compact("ps1", tenant, timeline)  # two L0 deltas merge into an L1 delta; a new image layer
    lsn = h.write_keys(tenant, timeline, 5, "l3")
    h.wait_lsn("ps1", tenant, timeline, lsn)
    h.checkpoint("ps1", tenant, timeline)  # a fresh L0 delta
    lsn = h.write_keys(tenant, timeline, 3, "open")
    h.wait_lsn("ps1", tenant, timeline, lsn)  # stays in the open in-memory layer
    url = f"/v1/tenant/{tenant}/timeline/{timeline}/layer"
    layers = h.get("ps1", url)
    jsonschema.Draft7Validator(LAYER_MAP_SCHEMA).validate(layers)
    historic = layers["historic_layers"]
    deltas = [x for x in historic if x["kind"] == "Delta"]
    images = [x for x in historic if x["kind"] == "Image"]
    assert images and {d["l0"] for d in deltas} == {True, False}
    assert [x["kind"] for x in layers["in_memory_layers"]] == ["Open"]
    timeline_info = h.timeline("ps1", tenant, timeline)
    assert layers["in_memory_layers"][0]["lsn_start"] == timeline_info["disk_consistent_lsn"]
    assert not any(x["remote"] for x in historic)
    # the newest image covers the layers below it for reads at the tip: it and the L0 delta above it are visible,
    # the bootstrap image and the L1 delta under it are not
    visible = {x["layer_file_name"] for x in historic if x["access_stats"]["visible"]}
    newest_image = max(images, key=lambda x: lsn_int(x["lsn_start"]))
    assert newest_image["layer_file_name"] in visible
    assert {x["layer_file_name"] for x in deltas if x["l0"]} <= visible
    assert {x["layer_file_name"] for x in historic if x is not newest_image and not x.get("l0")}.isdisjoint(visible)
    assert all(x["access_stats"]["residence_time"] > 0 for x in historic)
    h.evict("ps1", tenant)
    assert all(x["remote"] for x in h.get("ps1", url)["historic_layers"])
    # the route with a trailing slash answers too
    jsonschema.Draft7Validator(LAYER_MAP_SCHEMA).validate(h.get("ps1", url + "/"))


# ---- remote timeline client call counters ---------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
CALLS = "pageserver_remote_timeline_client_calls"


def parse_metrics(text: str) -> tuple[dict[str, str], list[tuple[str, dict, float]]]:
    """Prometheus text format: ({metric: type}, [(sample name, labels, value)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"unparsable metrics line: {line!r}"
            samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return types, samples


def calls(h, ps, tenant, timeline) -> dict[tuple[str, str, str], float]:
    """{(started|finished, file_kind, op_kind): value} of one timeline on one pageserver."""
    resp = h.call("GET", h.ps(ps) + "/metrics")
    types, samples = parse_metrics(resp.text)
    assert types[f"{CALLS}_started"] == types[f"{CALLS}_finished"] == "counter"
    out = {}
    for name, labels, value in samples:
        if name in (f"{CALLS}_started", f"{CALLS}_finished") and labels.get("timeline_id") == timeline:
            assert set(labels) == {"tenant_id", "shard_id", "timeline_id", "file_kind", "op_kind"}, labels
            assert labels["tenant_id"] == tenant and labels["shard_id"] == "0000"
            out[(name.rsplit("_", 1)[1], labels["file_kind"], labels["op_kind"])] = value
    return out


def test_remote_timeline_client_call_counters(h):
    tenant, timeline, gen, lsn = tenant_with_data(h, tag="metrics")
    h.checkpoint("ps1", tenant, timeline)
    # upstream's wait_for_upload_queue_empty: started == finished per (shard, file_kind, op_kind) once drained
    counts = wait_for(lambda: (c := calls(h, "ps1", tenant, timeline)) and c, 10, "counters")
    for kind in ("layer", "index"):
        assert counts[("started", kind, "upload")] >= 1
        assert counts[("finished", kind, "upload")] == counts[("started", kind, "upload")]
    # an on-demand download of an evicted layer
    assert h.evict("ps1", tenant) > 0
    assert h.read("ps1", tenant, timeline, "k0001", lsn).json()["value"].startswith("metrics-1-")
    counts = calls(h, "ps1", tenant, timeline)
    assert counts[("started", "layer", "download")] >= 1
    assert counts[("finished", "layer", "download")] == counts[("started", "layer", "download")]
    # an attach downloads the index
    h.location("ps1", tenant, "AttachedStale", gen, QUIET, flush_ms="5000")
    new_gen = h.attach_hook(tenant, "ps2")
    h.location("ps2", tenant, "AttachedMulti", new_gen, QUIET)
    h.wait_active("ps2", tenant)
    counts = calls(h, "ps2", tenant, timeline)
    assert counts[("started", "index", "download")] >= 1
    assert counts[("finished", "index", "download")] == counts[("started", "index", "download")]
    # a detached shard's counters go away with it (upstream removes a timeline's label values at shutdown)
    h.location("ps1", tenant, "Detached")
    assert calls(h, "ps1", tenant, timeline) == {}
