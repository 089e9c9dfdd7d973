"""Storage controller semantics: generations, upcalls, attach-hook, nodes, tenants, restart durability."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from fleet_helpers import json_server, wait_for

pytestmark = pytest.mark.neonsim

FAST_STORCON = {"name": "storcon", "heartbeat_interval_s": 0.5, "offline_after_s": 2}


@pytest.fixture(scope="module")
def sim(neonsim_fleet_module):
    return neonsim_fleet_module("storcon-only", storage_controller=FAST_STORCON)


def new_tenant() -> str:
    return uuid.uuid4().hex


def api(sim, method, path, body=None, expected=200):
    resp = requests.request(method, sim.storcon_url + path, json=body, timeout=10)
    assert resp.status_code == expected, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


def attach(sim, tsid, node_id, **extra):
    return api(sim, "POST", "/debug/v1/attach-hook", {"tenant_shard_id": tsid, "node_id": node_id, **extra})["gen"]


def register_body(node_id, port=1, az="az-a"):
    return {
        "node_id": node_id,
        "listen_pg_addr": "127.0.0.1",
        "listen_pg_port": port + 1,
        "listen_http_addr": "127.0.0.1",
        "listen_http_port": port,
        "availability_zone_id": az,
    }


def re_attach(sim, node_id, register=None):
    body = {"node_id": node_id}
    if register is not None:
        body["register"] = register
    return api(sim, "POST", "/upcall/v1/re-attach", body)["tenants"]


def test_attach_hook_generations_strictly_increase(sim):
    tsid = new_tenant()
    gens = [attach(sim, tsid, 1), attach(sim, tsid, 2), attach(sim, tsid, 1)]
    assert gens == sorted(set(gens)) and gens[0] >= 1
    assert api(sim, "POST", "/debug/v1/inspect", {"tenant_shard_id": tsid}) == {"attachment": [gens[-1], 1]}
    # generation_override lifts the base; the result is still above every earlier generation
    assert attach(sim, tsid, 2, generation_override=100) == 101
    assert attach(sim, tsid, 2, generation_override=5) == 102


def test_validate_rejects_stale_generation_and_omits_unknown(sim):
    tsid = new_tenant()
    old = attach(sim, tsid, 1)
    new = attach(sim, tsid, 2)
    unknown = new_tenant()
    out = api(
        sim,
        "POST",
        "/upcall/v1/validate",
        {"tenants": [{"id": tsid, "gen": old}, {"id": tsid, "gen": new}, {"id": unknown, "gen": 1}]},
    )
    assert out == {"tenants": [{"id": tsid, "valid": False}, {"id": tsid, "valid": True}]}


def test_re_attach_bumps_by_one_and_returns_secondaries(sim):
    node = 11
    re_attach(
        sim,
        node,
        register={
            "host": "127.0.0.1",
            "port": 9,
            "http_host": "127.0.0.1",
            "http_port": 8,
            "availability_zone_id": "az-b",
        },
    )
    attached = f"{new_tenant()}-0102"
    secondary = new_tenant()
    elsewhere = new_tenant()
    gen = attach(sim, attached, node)
    attach(sim, secondary, 12)
    attach(sim, elsewhere, 12)
    api(sim, "PUT", f"/sim/shard/{secondary}/secondaries", {"node_ids": [12]}, expected=404)  # 12 unknown yet
    re_attach(sim, 12, register=register_body(12, port=20))
    api(sim, "PUT", f"/sim/shard/{secondary}/secondaries", {"node_ids": [node]})

    tenants = {t["id"]: t for t in re_attach(sim, node)}
    assert tenants[attached]["gen"] == gen + 1 and tenants[attached]["mode"] == "AttachedSingle"
    assert tenants[attached]["stripe_size"] == 2048
    assert tenants[secondary]["gen"] is None and tenants[secondary]["mode"] == "Secondary"
    assert elsewhere not in tenants
    again = {t["id"]: t for t in re_attach(sim, node)}
    assert again[attached]["gen"] == gen + 2
    assert api(sim, "POST", "/debug/v1/inspect", {"tenant_shard_id": attached})["attachment"] == [gen + 2, node]
    # the node is WarmingUp (or already Active via heartbeat) but never silently dropped
    assert api(sim, "GET", f"/control/v1/node/{node}")["availability"] in ("WarmingUp", "Offline", "Active")


def test_re_attach_resets_scheduling_policy(sim):
    node = 13
    api(sim, "POST", "/control/v1/node", register_body(node, port=30))
    for before, after in [
        ("Draining", "Active"),
        ("PauseForRestart", "Active"),
        ("Deleting", "Pause"),
        ("Pause", "Pause"),
    ]:
        api(sim, "PUT", f"/control/v1/node/{node}/config", {"node_id": node, "scheduling": before})
        re_attach(sim, node)
        assert api(sim, "GET", f"/control/v1/node/{node}")["scheduling"] == after


def test_re_attach_unknown_node_without_register_fails(sim):
    resp = requests.post(sim.storcon_url + "/upcall/v1/re-attach", json={"node_id": 999}, timeout=10)
    assert resp.status_code == 404 and "msg" in resp.json()


def test_detach_via_attach_hook(sim):
    node = 14
    api(sim, "POST", "/control/v1/node", register_body(node, port=40))
    tsid = new_tenant()
    gen = attach(sim, tsid, node)
    assert attach(sim, tsid, None) is None
    assert api(sim, "POST", "/debug/v1/inspect", {"tenant_shard_id": tsid}) == {"attachment": None}
    assert tsid not in {t["id"] for t in re_attach(sim, node)}
    assert api(sim, "GET", f"/control/v1/tenant/{tsid}")["policy"] == "Detached"
    assert attach(sim, tsid, node) == gen + 1  # detach did not burn or reset the generation


def test_node_register_list_describe_config(sim):
    api(sim, "POST", "/control/v1/node", register_body(21, port=50))
    api(sim, "POST", "/control/v1/node", register_body(21, port=50))  # identical: idempotent
    conflict = requests.post(sim.storcon_url + "/control/v1/node", json=register_body(21, port=51), timeout=10)
    assert conflict.status_code == 409 and conflict.json()["msg"].startswith("Conflict")
    nodes = api(sim, "GET", "/control/v1/node")
    assert [n["id"] for n in nodes] == sorted(n["id"] for n in nodes)
    node = api(sim, "GET", "/control/v1/node/21")
    assert node["listen_http_port"] == 50 and node["availability_zone_id"] == "az-a"
    assert node["scheduling"] == "Active" and node["availability"] in ("Offline", "WarmingUp", "Active")
    api(sim, "PUT", "/control/v1/node/21/config", {"node_id": 21, "scheduling": "Pause"})
    assert api(sim, "GET", "/control/v1/node/21")["scheduling"] == "Pause"
    api(sim, "PUT", "/control/v1/node/21/config", {"node_id": 22, "scheduling": "Pause"}, expected=400)
    api(sim, "PUT", "/control/v1/node/21/config", {"node_id": 21, "scheduling": "Sleepy"}, expected=400)
    api(sim, "GET", "/control/v1/node/4242", expected=404)
    unresolvable = {**register_body(23, port=55), "listen_http_addr": "no-such-host.invalid"}
    api(sim, "POST", "/control/v1/node", unresolvable, expected=503)
    api(sim, "GET", "/control/v1/node/23", expected=404)
    # Upstream resolves "{listen_http_addr}:{port}" (tokio::net::lookup_host), which takes a bracketed IPv6 address as
    # a socket address; the controller then reaches the node at http://[::1]:port.
    bracketed = {**register_body(24, port=56), "listen_http_addr": "[::1]", "listen_pg_addr": "[::1]"}
    api(sim, "POST", "/control/v1/node", bracketed)
    assert api(sim, "GET", "/control/v1/node/24")["listen_http_addr"] == "[::1]"
    tsid = new_tenant()
    attach(sim, tsid, 21)
    shards = api(sim, "GET", "/control/v1/node/21/shards")
    assert {"tenant_shard_id": tsid, "is_observed_secondary": None, "is_intended_secondary": False} in shards["shards"]


def test_tenant_describe_locate_policy(sim):
    api(sim, "POST", "/control/v1/node", register_body(31, port=60, az="az-a"))
    api(sim, "POST", "/control/v1/node", register_body(32, port=70, az="az-b"))
    tenant = new_tenant()
    for n in range(2):
        attach(sim, f"{tenant}-{n:02x}02", 31 + n, stripe_size=4096)
    desc = api(sim, "GET", f"/control/v1/tenant/{tenant}")
    assert [s["tenant_shard_id"] for s in desc["shards"]] == [f"{tenant}-0002", f"{tenant}-0102"]
    assert [s["node_attached"] for s in desc["shards"]] == [31, 32]
    assert desc["stripe_size"] == 4096 and desc["policy"] == {"Attached": 0}
    loc = api(sim, "GET", f"/debug/v1/tenant/{tenant}/locate")
    assert loc["shard_params"] == {"count": 2, "stripe_size": 4096}
    assert [(s["node_id"], s["listen_http_port"]) for s in loc["shards"]] == [(31, 60), (32, 70)]

    api(sim, "PUT", f"/control/v1/tenant/{tenant}/policy", {"placement": {"Attached": 1}, "scheduling": "Stop"})
    desc = api(sim, "GET", f"/control/v1/tenant/{tenant}")
    assert desc["policy"] == {"Attached": 1} and {s["scheduling_policy"] for s in desc["shards"]} == {"Stop"}
    # No reconciler: storing a policy moves nothing.
    assert [s["node_attached"] for s in desc["shards"]] == [31, 32]
    api(sim, "PUT", f"/control/v1/tenant/{tenant}/policy", {"placement": "Detached"})
    desc = api(sim, "GET", f"/control/v1/tenant/{tenant}")
    assert desc["policy"] == "Detached" and {s["scheduling_policy"] for s in desc["shards"]} == {"Active"}
    assert api(sim, "POST", "/debug/v1/inspect", {"tenant_shard_id": f"{tenant}-0002"}) == {"attachment": None}
    api(sim, "PUT", f"/control/v1/tenant/{tenant}/policy", {"placement": {"Attached": -1}}, expected=400)
    api(sim, "GET", f"/control/v1/tenant/{new_tenant()}", expected=404)
    api(sim, "GET", "/control/v1/tenant/not-a-tenant", expected=400)


def test_heartbeat_active_then_offline(sim):
    utilization = {"utilization_score": 1}
    with json_server(lambda path: (200 if path == "/v1/utilization" else 404, utilization)) as port:
        re_attach(
            sim,
            41,
            register={
                "host": "127.0.0.1",
                "port": port,
                "http_host": "127.0.0.1",
                "http_port": port,
                "availability_zone_id": "az-a",
            },
        )
        wait_for(lambda: api(sim, "GET", "/control/v1/node/41")["availability"] == "Active", 20, "node 41 Active")
    wait_for(lambda: api(sim, "GET", "/control/v1/node/41")["availability"] == "Offline", 20, "node 41 Offline")


def test_state_survives_storcon_restart(neonsim_fleet):
    sim = neonsim_fleet("storcon-only")
    tsid = new_tenant()
    api(sim, "POST", "/control/v1/node", register_body(51, port=80))
    gen = attach(sim, tsid, 51)
    api(sim, "PUT", "/control/v1/node/51/config", {"node_id": 51, "scheduling": "Pause"})
    # concurrent attach-hooks share group commits but still get distinct, gap-free generations
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda _: attach(sim, tsid, 51), range(24)))
    assert sorted(concurrent) == list(range(gen + 1, gen + 25))
    others = [new_tenant() for _ in range(16)]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda t: attach(sim, t, 51), others)) == [1] * 16
    gen += 24
    # one of every other kind of mutation, so the durable state is compared record by record below
    detached, sharded = new_tenant(), new_tenant()
    attach(sim, detached, 51)
    attach(sim, detached, None)
    attach(sim, f"{sharded}-0002", 51)
    attach(sim, f"{sharded}-0102", 51)
    api(sim, "POST", "/control/v1/node", register_body(52, port=90))
    api(sim, "PUT", f"/control/v1/tenant/{sharded}/policy", {"placement": {"Attached": 1}, "scheduling": "Pause"})
    api(sim, "PUT", f"/sim/shard/{sharded}-0102/secondaries", {"node_ids": [52]})
    re_attach(sim, 52)
    before = api(sim, "GET", "/sim/state")
    old_pid = sim.kill("storcon")  # SIGKILL: only state.json survives
    assert sim.start("storcon") != old_pid
    after = api(sim, "GET", "/sim/state")
    assert {k: after[k] for k in ("nodes", "tenants", "shards")} == {
        k: before[k] for k in ("nodes", "tenants", "shards")
    }
    assert api(sim, "POST", "/debug/v1/inspect", {"tenant_shard_id": tsid}) == {"attachment": [gen, 51]}
    node = api(sim, "GET", "/control/v1/node/51")
    assert node["scheduling"] == "Pause" and node["listen_http_port"] == 80
    returned = {t["id"]: t["gen"] for t in re_attach(sim, 51)}
    assert returned == {tsid: gen + 1, f"{sharded}-0002": 2, f"{sharded}-0102": 2, **{t: 2 for t in others}}
    assert attach(sim, tsid, 51) == gen + 2
    state = json.loads((sim.dir / "storcon" / "state.json").read_text())
    assert state["shards"][tsid]["generation"] == gen + 2
    assert all(state["shards"][t]["generation"] == 2 for t in others)
