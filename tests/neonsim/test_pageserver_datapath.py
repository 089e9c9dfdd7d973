"""Pageserver data path on a running fleet: freezing, background compaction, GC blocks, heatmaps, WAL source."""

from __future__ import annotations

import time

import pytest

from neonsim import fleet as fleet_mod
from neonsim.lsn import parse_lsn
from neonsim.pageserver.testing import Harness

pytestmark = pytest.mark.neonsim

QUIET = {"compaction_period": "0s", "gc_period": "0s", "checkpoint_distance": 10**9, "checkpoint_timeout": "1h"}


@pytest.fixture(scope="module")
def sim(neonsim_fleet_module):
    return neonsim_fleet_module("small", computes=[])


@pytest.fixture(scope="module")
def h(sim):
    return Harness(sim)


def wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
    return value


def layer_names(h, ps, tenant, timeline, gen):
    index = h.s3_json(ps, f"tenants/{tenant}/timelines/{timeline}/index_part.json-{gen:08x}")
    return index, sorted(index["layer_metadata"])


def test_checkpoint_distance_freezes_and_uploads(h):
    tenant, timeline, gen = h.create_tenant("ps1", {**QUIET, "checkpoint_distance": 4096})
    lsn = h.write_keys(tenant, timeline, 30, "d")  # about 8 KiB of WAL
    h.wait_lsn("ps1", tenant, timeline, lsn)

    def flushed_and_uploaded():
        info = h.timeline("ps1", tenant, timeline)
        remote = parse_lsn(info["remote_consistent_lsn"])
        return remote > parse_lsn(info["initdb_lsn"]) and remote == parse_lsn(info["disk_consistent_lsn"]) and info

    info = wait_until(flushed_and_uploaded)
    index, names = layer_names(h, "ps1", tenant, timeline, gen)
    assert index["disk_consistent_lsn"] == info["remote_consistent_lsn"]
    assert any("-" in n.split("__")[1] for n in names)  # a delta layer
    assert all(meta["generation"] == gen and "shard" not in meta for meta in index["layer_metadata"].values())
    expected_metadata = {"disk_consistent_lsn", "prev_record_lsn", "ancestor_timeline", "ancestor_lsn",
                         "latest_gc_cutoff_lsn", "initdb_lsn", "pg_version"}  # fmt: skip
    assert set(index["metadata_bytes"]) >= expected_metadata


def test_checkpoint_timeout_flushes_an_idle_layer(h):
    tenant, timeline, _gen = h.create_tenant("ps1", {**QUIET, "checkpoint_timeout": "1s"})
    lsn = h.write_keys(tenant, timeline, 3, "t")
    h.wait_lsn("ps1", tenant, timeline, lsn)
    wait_until(lambda: parse_lsn(h.timeline("ps1", tenant, timeline)["remote_consistent_lsn"]) == lsn)


def test_background_compaction_merges_l0_and_creates_images(h):
    conf = {**QUIET, "compaction_period": "1s", "compaction_threshold": 3, "image_creation_threshold": 1}
    tenant, timeline, gen = h.create_tenant("ps2", conf)
    for r in range(3):
        lsn = h.write_keys(tenant, timeline, 10, f"c{r}")
        h.wait_lsn("ps2", tenant, timeline, lsn)
        h.checkpoint("ps2", tenant, timeline)

    def compacted():
        names = layer_names(h, "ps2", tenant, timeline, gen)[1]
        l1 = [n for n in names if n.split("__")[0].endswith("FFE")]
        images = [n for n in names if "-" not in n.split("__")[1]]
        return l1 and len(images) >= 2 and names

    names = wait_until(compacted)
    assert not any(n.split("__")[0].endswith("FFF") and "-" in n.split("__")[1] for n in names)  # no L0 left
    for i in range(10):
        assert h.read("ps2", tenant, timeline, f"k{i:04d}").json()["value"].startswith("c2-")


def test_block_gc_is_stored_in_index_part(h):
    tenant, timeline, gen = h.create_tenant("ps1", QUIET)
    for r in range(2):
        lsn = h.write_keys(tenant, timeline, 10, f"g{r}")
        h.wait_lsn("ps1", tenant, timeline, lsn)
        h.checkpoint("ps1", tenant, timeline)
    h.compact("ps1", tenant, timeline)
    url = f"{h.ps('ps1')}/v1/tenant/{tenant}/timeline/{timeline}"
    assert h.call("POST", url + "/block_gc").json() is None
    index, _ = layer_names(h, "ps1", tenant, timeline, gen)
    assert index["gc_blocking"]["reasons"] == ["Manual"] and index["gc_blocking"]["started_at"]
    assert "gc_blocking" in h.get("ps1", f"/v1/tenant/{tenant}")
    assert h.gc("ps1", tenant, timeline)["layers_removed"] == 0
    h.call("POST", url + "/unblock_gc")
    assert layer_names(h, "ps1", tenant, timeline, gen)[0]["gc_blocking"] is None
    assert h.gc("ps1", tenant, timeline)["layers_removed"] > 0


def test_no_gc_in_multi(h):
    tenant, timeline, gen = h.create_tenant("ps2", QUIET)
    for r in range(2):
        lsn = h.write_keys(tenant, timeline, 10, f"m{r}")
        h.wait_lsn("ps2", tenant, timeline, lsn)
        h.checkpoint("ps2", tenant, timeline)
    h.compact("ps2", tenant, timeline)
    h.location("ps2", tenant, "AttachedMulti", gen, QUIET)
    assert h.gc("ps2", tenant, timeline)["layers_removed"] == 0
    h.location("ps2", tenant, "AttachedSingle", gen, QUIET)
    assert h.gc("ps2", tenant, timeline)["layers_removed"] > 0


def test_heatmap_upload_fields(h):
    tenant, timeline, gen = h.create_tenant("ps1", {**QUIET, "heatmap_period": "30s"})
    lsn = h.write_keys(tenant, timeline, 5, "h")
    h.wait_lsn("ps1", tenant, timeline, lsn)
    h.checkpoint("ps1", tenant, timeline)
    h.call("POST", f"{h.ps('ps1')}/v1/tenant/{tenant}/heatmap_upload")
    heatmap = h.s3_json("ps1", f"tenants/{tenant}/heatmap-v1.json")
    assert heatmap["generation"] == gen and heatmap["upload_period_ms"] == 30000
    [entry] = heatmap["timelines"]
    assert entry["timeline_id"] == timeline and len(entry["layers"]) == 2
    names = [layer["name"] for layer in entry["layers"]]
    assert len(set(names)) == len(names)
    for layer in entry["layers"]:
        assert set(layer) == {"name", "metadata", "access_time", "cold"}
        assert layer["metadata"]["generation"] == gen and layer["metadata"]["file_size"] > 0


def test_walreceiver_switches_safekeeper_on_failure(h, sim):
    tenant, timeline, _gen = h.create_tenant("ps2", QUIET)
    lsn = h.write_keys(tenant, timeline, 5, "s")
    h.wait_lsn("ps2", tenant, timeline, lsn)
    source = h.timeline("ps2", tenant, timeline)["wal_source_connstr"]
    current = next(sk for sk in h.sks() if source.endswith(f":{sk['pg_port']}/"))
    sim.kill(current["name"])
    try:
        lsn = h.write_keys(tenant, timeline, 5, "after", skip={current["name"]})
        h.wait_lsn("ps2", tenant, timeline, lsn)
        assert h.timeline("ps2", tenant, timeline)["wal_source_connstr"] != source
        assert h.read("ps2", tenant, timeline, "k0004").json()["value"].startswith("after-4-")
    finally:
        sim.start(current["name"])


def test_walreceiver_connect_delay_holds_new_receivers_until_lowered(h):
    """POST /sim/walreceiver: a receiver started under a delay waits; lowering the delay releases it at once."""
    h.call("POST", f"{h.ps('ps2')}/sim/walreceiver", {"connect_delay_ms": 600_000})
    try:
        tenant, timeline, _gen = h.create_tenant("ps2", QUIET)
        lsn = h.write_keys(tenant, timeline, 5, "held")
        time.sleep(1.5)
        held = h.timeline("ps2", tenant, timeline)
        assert held["walreceiver_status"] == "Connecting" and parse_lsn(held["last_record_lsn"]) < lsn
    finally:
        h.call("POST", f"{h.ps('ps2')}/sim/walreceiver", {"connect_delay_ms": 0})
    h.wait_lsn("ps2", tenant, timeline, lsn)


def test_reset_restarts_in_the_same_generation(h):
    tenant, timeline, gen = h.create_tenant("ps1", QUIET)
    lsn = h.write_keys(tenant, timeline, 5, "r")
    h.wait_lsn("ps1", tenant, timeline, lsn)
    h.checkpoint("ps1", tenant, timeline)
    local = h.sim.dir / "ps1" / "tenants" / tenant / "timelines" / timeline
    assert any(local.iterdir())
    assert h.call("POST", f"{h.ps('ps1')}/v1/tenant/{tenant}/reset", params={"drop_cache": "true"}).json() is None
    assert h.wait_active("ps1", tenant)["generation"] == gen
    assert not local.exists() or not any(local.iterdir())  # drop_cache removed the local layers
    assert h.read("ps1", tenant, timeline, "k0002", lsn).json()["value"].startswith("r-2-")
    h.call("POST", f"{h.ps('ps1')}/v1/tenant/{'e' * 32}/reset", expected=(500,))


def test_lazy_attach_activates(h):
    tenant, timeline, gen = h.create_tenant("ps2", QUIET)
    h.location("ps2", tenant, "Secondary")
    h.location("ps2", tenant, "AttachedSingle", h.attach_hook(tenant, "ps2"), QUIET, lazy="true")
    assert h.wait_active("ps2", tenant)["generation"] == gen + 1
    assert [t["timeline_id"] for t in h.get("ps2", f"/v1/tenant/{tenant}/timeline")] == [timeline]


def test_failed_uploads_are_retried_without_new_wal(h, sim):
    tenant, timeline, _gen = h.create_tenant("ps1", QUIET)
    lsn = h.write_keys(tenant, timeline, 5, "u")
    h.wait_lsn("ps1", tenant, timeline, lsn)
    sim.fault("s3proxy", routes="^PUT ", error_rate=1.0, status=503)
    try:
        resp = h.call("PUT", f"{h.ps('ps1')}/v1/tenant/{tenant}/timeline/{timeline}/checkpoint", expected=(500,))
        assert "503" in resp.text or "SlowDown" in resp.text or "Service" in resp.text, resp.text
        info = h.timeline("ps1", tenant, timeline)
        assert parse_lsn(info["disk_consistent_lsn"]) == lsn and parse_lsn(info["remote_consistent_lsn"]) < lsn
    finally:
        sim.clear_fault("s3proxy")
    wait_until(lambda: parse_lsn(h.timeline("ps1", tenant, timeline)["remote_consistent_lsn"]) == lsn)


def test_graceful_stop_flushes_open_layers(h, sim):
    tenant, timeline, gen = h.create_tenant("ps2", QUIET)
    lsn = h.write_keys(tenant, timeline, 5, "stop")
    h.wait_lsn("ps2", tenant, timeline, lsn)
    assert parse_lsn(h.timeline("ps2", tenant, timeline)["disk_consistent_lsn"]) < lsn  # still in memory
    fleet_mod.stop_processes(sim.dir, ["ps2"])  # SIGTERM
    index = h.s3_json("ps2", f"tenants/{tenant}/timelines/{timeline}/index_part.json-{gen:08x}")
    assert parse_lsn(index["disk_consistent_lsn"]) == lsn
    sim.start("ps2")
    assert h.wait_active("ps2", tenant)["generation"] == gen + 1
    assert parse_lsn(h.timeline("ps2", tenant, timeline)["disk_consistent_lsn"]) == lsn


def test_layer_map_reports_residence(h):
    tenant, timeline, _gen = h.create_tenant("ps1", QUIET)
    lsn = h.write_keys(tenant, timeline, 5, "l")
    h.wait_lsn("ps1", tenant, timeline, lsn)
    url = f"/v1/tenant/{tenant}/timeline/{timeline}/layer"
    assert h.get("ps1", url)["in_memory_layers"][0]["kind"] == "Open"
    h.checkpoint("ps1", tenant, timeline)
    layers = h.get("ps1", url)["historic_layers"]
    assert {layer["kind"] for layer in layers} == {"Delta", "Image"} and not any(x["remote"] for x in layers)
    h.evict("ps1", tenant)
    assert all(layer["remote"] for layer in h.get("ps1", url)["historic_layers"])
    both = h.get("ps1", f"/v1/tenant/{tenant}/timeline_and_offloaded")
    assert [t["timeline_id"] for t in both["timelines"]] == [timeline] and both["offloaded"] == []


def test_eviction_policy_makes_reads_depend_on_s3(h):
    policy = {"kind": "LayerAccessThreshold", "period": "1s", "threshold": "1s"}
    tenant, timeline, _gen = h.create_tenant("ps2", {**QUIET, "eviction_policy": policy})
    lsn = h.write_keys(tenant, timeline, 5, "e")
    h.wait_lsn("ps2", tenant, timeline, lsn)
    h.checkpoint("ps2", tenant, timeline)
    url = f"/v1/tenant/{tenant}/timeline/{timeline}/layer"
    wait_until(lambda: all(layer["remote"] for layer in h.get("ps2", url)["historic_layers"]))
    downloads = h.stats("ps2")["on_demand_downloads"]
    assert h.read("ps2", tenant, timeline, "k0003", lsn).json()["value"].startswith("e-3-")
    assert h.stats("ps2")["on_demand_downloads"] > downloads
