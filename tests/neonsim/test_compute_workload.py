"""Walproposer and workload against in-process safekeeper nodes and a stand-in page server.

The real pageserver is exercised in the fleet tests; here a minimal page server answers `/sim/page` from one
safekeeper's committed WAL so quorum and read-checking logic can be tested quickly and deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from aiohttp import web
from fleet_helpers import free_port

from neonsim._server import NodeContext
from neonsim.lsn import format_lsn, parse_lsn
from neonsim.safekeeper import SafekeeperNode
from neonsim.sharding import key_to_shard
from neonsim.workload import PageserverConn, Workload

TENANT = "a" * 32
TIMELINE = "b" * 32
START = "0/1000000"


class Served:
    """An aiohttp app on a fixed port that can be stopped and started again (a killed/restarted process)."""

    def __init__(self, app_factory, port: int):
        self.app_factory = app_factory
        self.port = port
        self.runner = None

    async def start(self):
        self.runner = web.AppRunner(self.app_factory(), shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self):
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class Fleet:
    def __init__(self, tmp_path, n_safekeepers=3):
        self.dir = tmp_path
        self.sk_entries = [
            {"name": f"sk{i}", "node_id": 100 + i, "http_port": free_port(), "pg_port": free_port(), "fsync": False}
            for i in range(n_safekeepers)
        ]
        self.fleet = {"dir": str(tmp_path), "auth": {"enabled": False}, "safekeepers": self.sk_entries}
        self.nodes: dict[str, SafekeeperNode] = {}
        self.pg: dict[str, Served] = {}
        self.page_served: Served | None = None
        self.page_source = "sk0"
        self.page_override = None  # callable(key, value) -> value, to simulate a pageserver that lost data
        self.stripe_size = 1

    def _make_node(self, name):
        node = SafekeeperNode(NodeContext(self.dir, name, fleet=self.fleet))
        self.nodes[name] = node
        return node

    async def start(self):
        for entry in self.sk_entries:
            node = self._make_node(entry["name"])
            node.sk.create_timeline(
                {
                    "tenant_id": TENANT,
                    "timeline_id": TIMELINE,
                    "mconf": {"generation": 1, "members": []},
                    "pg_version": 170000,
                    "start_lsn": START,
                }
            )
            self.pg[entry["name"]] = Served(lambda n=entry["name"]: self.nodes[n].pg, entry["pg_port"])
            await self.pg[entry["name"]].start()
        self.page_served = Served(self._page_app, free_port())
        await self.page_served.start()

    async def kill(self, name):
        await self.pg[name].stop()
        self.nodes[name].sk.close()

    async def restart(self, name):
        node = self._make_node(name)  # reloads WAL from disk like a new process
        assert node.sk.timelines, "restarted safekeeper lost its timeline"
        await self.pg[name].start()

    async def close(self):
        for served in [*self.pg.values(), self.page_served]:
            await served.stop()
        for node in self.nodes.values():
            await node.ctx.close()

    def timeline(self, name):
        return self.nodes[name].sk.get(TENANT, TIMELINE)

    @property
    def sk_connstrings(self):
        return [f"127.0.0.1:{e['pg_port']}" for e in self.sk_entries]

    @property
    def page_conn(self) -> PageserverConn:
        return PageserverConn(0, None, (f"http://127.0.0.1:{self.page_served.port}",))

    def _page_app(self):
        async def page(request):
            lsn = parse_lsn(request.query["lsn"])
            key = request.query["key"]
            tsid = request.query["tenant_shard_id"]
            if len(tsid) == 37:
                # sharded read: only the owning shard may be asked (as a pageserver holds only its shard's keys)
                number, count = int(tsid[33:35], 16), int(tsid[35:37], 16)
                if key_to_shard(key, count, self.stripe_size) != number:
                    return web.json_response({"msg": f"key {key} is not in shard {tsid}"}, status=404)
            deadline = asyncio.get_running_loop().time() + int(request.query["timeout_ms"]) / 1000
            tl = self.timeline(self.page_source)
            while tl.commit_lsn < lsn:
                if asyncio.get_running_loop().time() > deadline:
                    return web.json_response({"msg": "timed out waiting for WAL"}, status=504)
                await asyncio.sleep(0.01)
            value = None
            for rec in tl.records:
                if rec.end_lsn <= lsn and rec.key == key:
                    value = rec.value
            if self.page_override is not None:
                value = self.page_override(key, value)
            return web.json_response({"key": key, "value": value, "lsn": format_lsn(lsn)})

        app = web.Application()
        app.router.add_get("/sim/page", page)
        return app


async def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_fleet(tmp_path, **workload_options):
    fleet = Fleet(tmp_path)
    await fleet.start()
    session = aiohttp.ClientSession()
    conn = {"value": fleet.page_conn}
    workload = Workload(
        session,
        "compute-1",
        TENANT,
        TIMELINE,
        fleet.sk_connstrings,
        lambda: conn["value"],
        tmp_path / "compute1",
        options={"write_rate": 0, "read_rate": 0, **workload_options},
    )
    try:
        yield fleet, workload, conn
    finally:
        await workload.close()
        await session.close()
        await fleet.close()


def test_writes_commit_at_majority_and_stall_without_it(tmp_path):
    async def scenario():
        async with running_fleet(tmp_path) as (fleet, workload, _):
            first = await asyncio.wait_for(workload.write_once("k1", "v1"), 10)
            for name in ("sk0", "sk1", "sk2"):
                await wait_until(lambda n=name: fleet.timeline(n).commit_lsn == first.end_lsn, what=f"{name} commit")

            await fleet.kill("sk2")
            second = await asyncio.wait_for(workload.write_once("k2", "v2"), 10)
            assert fleet.timeline("sk0").flush_lsn >= second.end_lsn
            await wait_until(lambda: fleet.timeline("sk1").commit_lsn == second.end_lsn, what="commit with one down")

            await fleet.kill("sk1")
            stalled = asyncio.ensure_future(workload.write_once("k3", "v3"))
            link0 = workload.walproposer.links[0]
            # Once the proposer has processed sk0's flush of the new record, an ack would already have happened.
            await wait_until(lambda: (link0.flush_lsn or 0) > second.end_lsn, what="sk0 flush seen by proposer")
            await asyncio.sleep(0)
            assert not stalled.done(), "a write was acknowledged by a single safekeeper"
            assert workload.writes_acked == 2

            await fleet.restart("sk1")
            third = await asyncio.wait_for(stalled, 10)
            assert workload.writes_acked == 3
            # the restarted safekeeper kept its WAL and was caught up from the proposer's buffer
            await wait_until(lambda: fleet.timeline("sk1").flush_lsn == third.end_lsn, what="sk1 caught up")

            await fleet.restart("sk2")
            await wait_until(lambda: fleet.timeline("sk2").flush_lsn == third.end_lsn, what="sk2 caught up")
            values = [r.value for r in fleet.timeline("sk2").records]
            assert values == ["v1", "v2", "v3"]

    asyncio.run(scenario())


def test_new_walproposer_continues_after_highest_flush_lsn(tmp_path):
    async def scenario():
        async with running_fleet(tmp_path) as (fleet, workload, _):
            acked = await asyncio.wait_for(workload.write_once("k", "v"), 10)
            await workload.close()
            second = Workload(
                workload.session,
                "compute-1",
                TENANT,
                TIMELINE,
                fleet.sk_connstrings,
                workload.conn_provider,
                tmp_path / "compute1",
            )
            # the acknowledged-write log of the first life is loaded again
            assert second.expected_at("k", acked.end_lsn).value == "v"
            nxt = await asyncio.wait_for(second.write_once("k", "w"), 10)
            assert parse_lsn(second.report()["last_acked_lsn"]) == nxt.end_lsn
            assert nxt.end_lsn > acked.end_lsn
            await second.close()

    asyncio.run(scenario())


def test_reads_and_verify_against_current_pageserver(tmp_path):
    async def scenario():
        async with running_fleet(tmp_path) as (fleet, workload, conn):
            for i in range(20):
                await workload.write_once(f"k{i % 5}", f"v{i}")
            for _ in range(10):
                assert await workload.read_once() is None
            report = await workload.verify()
            assert report["verified"] is True
            assert report["lost_writes"] == 0
            assert report["reads_ok"] == 10 and report["reads_failed"] == 0
            assert report["read_latency_ms"]["p50"] is not None

            # A pageserver that serves an older value: the read counts as a visible lost write.
            fleet.page_override = lambda key, value: "v0" if key == "k0" else value
            workload.acked_keys[:] = ["k0"]
            assert await workload.read_once() == "stale_value"
            report = await workload.verify()
            assert report["lost_writes"] == 1
            assert report["lost_write_samples"][0]["got"] == "v0"
            fleet.page_override = None

            # pageserver gone: reads fail with a reason
            await fleet.page_served.stop()
            assert await workload.read_once() == "connection_error"
            assert workload.report()["failures_by_reason"]["connection_error"] == 1
            conn["value"] = None
            assert await workload.read_once() == "no_pageserver"

    asyncio.run(scenario())


def test_verify_tells_an_in_doubt_write_that_committed_from_a_lost_write(tmp_path):
    async def scenario():
        async with running_fleet(tmp_path) as (fleet, workload, _):
            await workload.write_once("k0", "acked")
            await workload.write_once("k1", "v1")
            # A write the safekeepers committed but whose acknowledgement the compute never recorded (it was killed
            # between the two), then a later acknowledged write: the key now answers a value never acknowledged.
            wp = await workload.ensure_walproposer()
            _, committed = wp.write("k0", "in-doubt")
            await asyncio.wait_for(committed, 10)
            await workload.write_once("k2", "v2")

            report = await workload.verify()
            assert report["lost_writes"] == 0, report["lost_write_samples"]
            assert report["superseded_writes"] == 1
            assert report["superseded_write_samples"][0]["got"] == "in-doubt"
            assert report["superseded_write_samples"][0]["expected"] == "acked"

            # A value the pageserver serves at every LSN (the acknowledged write is gone): the proof fails, it is lost.
            fleet.page_override = lambda key, value: "invented" if key == "k1" else value
            report = await workload.verify()
            assert report["lost_writes"] == 1, report
            assert report["lost_write_samples"][0] == {
                "key": "k1",
                "expected": "v1",
                "got": "invented",
                "at_acknowledged_lsn": "invented",
            }
            assert report["superseded_writes"] == 1

    asyncio.run(scenario())


def test_workload_loops_run_at_rate_and_persist_acks(tmp_path):
    async def scenario():
        async with running_fleet(tmp_path, write_rate=50, read_rate=50) as (_, workload, _):
            await workload.start()
            await wait_until(lambda: workload.writes_acked >= 10 and workload.reads_ok >= 5, what="workload progress")
            report = await workload.verify()
            assert report["running"] is False
            assert report["lost_writes"] == 0
            assert report["reads_failed"] == 0
            lines = (tmp_path / "compute1" / "acked_writes.jsonl").read_text().splitlines()
            assert len(lines) == report["writes_acked"]

    asyncio.run(scenario())


@pytest.mark.parametrize("bad", ["nonsense", "postgres://only-host"])
def test_bad_safekeeper_connstring_is_rejected(tmp_path, bad):
    from neonsim.workload import http_base

    with pytest.raises(ValueError):
        http_base(bad)


def test_concurrent_first_writes_share_one_walproposer(tmp_path):
    async def scenario():
        async with running_fleet(tmp_path) as (fleet, workload, _):
            acked = await asyncio.wait_for(
                asyncio.gather(*(workload.write_once(f"k{i}", f"v{i}") for i in range(16))), 20
            )
            ends = sorted(a.end_lsn for a in acked)
            assert len(set(ends)) == 16
            await wait_until(lambda: fleet.timeline("sk0").commit_lsn == ends[-1], what="all committed")
            assert sorted(r.value for r in fleet.timeline("sk0").records) == sorted(f"v{i}" for i in range(16))

    asyncio.run(scenario())


def test_sharded_reads_go_to_the_owning_shard(tmp_path):
    async def scenario():
        async with running_fleet(tmp_path) as (fleet, workload, conn):
            base = fleet.page_conn.urls[0]
            # four shards served by the same stand-in; it refuses keys asked of the wrong shard
            conn["value"] = PageserverConn(4, 1, (base, base, base, base))
            for i in range(20):
                await workload.write_once(f"key{i}", f"v{i}")
            shards = {key_to_shard(f"key{i}", 4, 1) for i in range(20)}
            assert len(shards) > 1
            report = await workload.verify()
            assert report["lost_writes"] == 0, report["lost_write_samples"]
            # a wrong stripe size sends some keys to the wrong shard: they fail
            conn["value"] = PageserverConn(4, 1 << 30, (base, base, base, base))
            report = await workload.verify()
            assert report["lost_writes"] > 0
            assert {s.get("error") for s in report["lost_write_samples"]} == {"http_404"}

    asyncio.run(scenario())
