"""Safekeeper core without HTTP: WAL append/commit/stream, durability across restart, trimming."""

from __future__ import annotations

import asyncio

import pytest

from neonsim.lsn import format_lsn, parse_lsn, record_size
from neonsim.safekeeper import BadRequest, Conflict, Safekeeper, WalRemoved
from neonsim.sharding import key_to_shard

TENANT = "a" * 32
TIMELINE = "b" * 32
START = parse_lsn("0/1000000")


def make_sk(path, **kw) -> Safekeeper:
    sk = Safekeeper(101, path, fsync=False, **kw)
    sk.load()
    return sk


def create(sk: Safekeeper, start=START):
    return sk.create_timeline(
        {
            "tenant_id": TENANT,
            "timeline_id": TIMELINE,
            "mconf": {"generation": 1, "members": [{"id": 101, "host": "127.0.0.1", "pg_port": 1}]},
            "pg_version": 170000,
            "start_lsn": format_lsn(start),
        }
    )


def records(start: int, n: int, prefix="k") -> list[dict]:
    out = []
    lsn = start
    for i in range(n):
        key, value = f"{prefix}{i}", f"v{i}"
        end = lsn + record_size(key, value)
        out.append({"lsn": format_lsn(lsn), "end_lsn": format_lsn(end), "key": key, "value": value})
        lsn = end
    return out


def append(sk, recs, commit=None):
    body = {"tenant_id": TENANT, "timeline_id": TIMELINE, "records": recs}
    if commit is not None:
        body["commit_lsn"] = commit
    return asyncio.run(sk.append(body))


def stream(sk, start, **extra):
    query = {"tenant_id": TENANT, "timeline_id": TIMELINE, "start_lsn": format_lsn(start), "wait_ms": "0", **extra}
    return asyncio.run(sk.stream(query))


def test_create_is_idempotent_and_validates(tmp_path):
    sk = make_sk(tmp_path)
    first = create(sk)
    assert create(sk) is first
    assert sk.list_timelines() == [{"tenant_id": TENANT, "timeline_id": TIMELINE}]
    with pytest.raises(BadRequest, match="start_lsn"):
        sk.create_timeline({"tenant_id": TENANT, "timeline_id": "c" * 32, "mconf": {}, "pg_version": 17})
    with pytest.raises(BadRequest, match="tenant_id"):
        sk.create_timeline({"tenant_id": "xyz", "timeline_id": "c" * 32})


def test_append_must_start_at_flush_lsn(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 3)
    assert append(sk, recs)["flush_lsn"] == recs[-1]["end_lsn"]
    with pytest.raises(Conflict) as info:
        append(sk, records(START, 1))
    assert info.value.extra["expected_lsn"] == recs[-1]["end_lsn"]
    # An empty append is a probe: it reports flush_lsn and changes nothing.
    assert append(sk, [])["flush_lsn"] == recs[-1]["end_lsn"]


def test_stream_returns_only_committed_wal(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 4)
    append(sk, recs, commit=recs[1]["end_lsn"])
    out = stream(sk, START)
    assert [r["key"] for r in out["records"]] == ["k0", "k1"]
    assert out["end_lsn"] == recs[1]["end_lsn"]
    # commit_lsn is capped at this safekeeper's own flush_lsn
    asyncio.run(sk.commit({"tenant_id": TENANT, "timeline_id": TIMELINE, "commit_lsn": "1/0"}))
    tl = sk.get(TENANT, TIMELINE)
    assert tl.commit_lsn == tl.flush_lsn == parse_lsn(recs[-1]["end_lsn"])


def test_stream_filters_by_shard_but_reports_end_lsn(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 40)
    append(sk, recs, commit=recs[-1]["end_lsn"])
    seen = []
    for shard in range(4):
        out = stream(sk, START, shard_number=str(shard), shard_count="4", stripe_size="1")
        assert out["end_lsn"] == recs[-1]["end_lsn"]
        assert all(key_to_shard(r["key"], 4, 1) == shard for r in out["records"])
        seen += [r["key"] for r in out["records"]]
    assert sorted(seen) == sorted(r["key"] for r in recs)


def test_stream_long_poll_wakes_on_commit(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 2)

    async def scenario():
        query = {"tenant_id": TENANT, "timeline_id": TIMELINE, "start_lsn": format_lsn(START), "wait_ms": "30000"}
        poll = asyncio.ensure_future(sk.stream(query))
        await asyncio.sleep(0)
        assert not poll.done()
        body = {"tenant_id": TENANT, "timeline_id": TIMELINE, "records": recs, "commit_lsn": recs[-1]["end_lsn"]}
        await sk.append(body)
        return await poll

    out = asyncio.run(scenario())
    assert [r["key"] for r in out["records"]] == ["k0", "k1"]


def test_restart_keeps_flushed_wal_and_conservative_commit(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 5)
    append(sk, recs[:3], commit=recs[0]["end_lsn"])
    sk.maintenance()  # persists commit_lsn = end of record 0
    append(sk, recs[3:], commit=recs[4]["end_lsn"])  # not persisted before the "crash"
    # Simulate a torn write at the end of the file.
    tl = sk.get(TENANT, TIMELINE)
    tl._wal_file.write(b'{"lsn": "0/10')
    tl._wal_file.flush()

    again = make_sk(tmp_path)
    tl2 = again.get(TENANT, TIMELINE)
    assert tl2.flush_lsn == parse_lsn(recs[-1]["end_lsn"])
    assert tl2.commit_lsn == parse_lsn(recs[0]["end_lsn"])
    # The torn tail was cut: appending continues at flush_lsn.
    more = records(tl2.flush_lsn, 1, prefix="after")
    assert append(again, more)["flush_lsn"] == more[0]["end_lsn"]
    third = make_sk(tmp_path)
    assert third.get(TENANT, TIMELINE).flush_lsn == parse_lsn(more[0]["end_lsn"])


def test_trim_follows_max_remote_consistent_lsn_and_old_stream_gets_410(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 10)
    append(sk, recs, commit=recs[5]["end_lsn"])
    horizon = recs[7]["end_lsn"]
    stream(sk, START, node_id="1", remote_consistent_lsn=horizon)
    stream(sk, START, node_id="2", remote_consistent_lsn=recs[2]["end_lsn"])  # a lower report does not lower it
    tl = sk.get(TENANT, TIMELINE)
    assert tl.remote_consistent_lsn == parse_lsn(horizon)
    sk.maintenance()
    # never above commit_lsn
    assert tl.local_start_lsn == parse_lsn(recs[6]["lsn"])
    with pytest.raises(WalRemoved, match="already been removed"):
        stream(sk, START)
    out = stream(sk, tl.local_start_lsn)
    assert out["end_lsn"] == recs[5]["end_lsn"]
    # the trim survives a restart
    again = make_sk(tmp_path)
    tl2 = again.get(TENANT, TIMELINE)
    assert tl2.local_start_lsn == tl.local_start_lsn
    assert tl2.flush_lsn == parse_lsn(recs[-1]["end_lsn"])
    assert len(tl2.records) == 4


def test_sharded_tenant_trims_only_below_every_shards_horizon(tmp_path):
    # One shard far ahead must not trim WAL a lagging shard still needs (its reads would stall on 410).
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 10)
    append(sk, recs, commit=recs[-1]["end_lsn"])
    tl = sk.get(TENANT, TIMELINE)
    shard = {"shard_count": "2", "stripe_size": "2048"}
    stream(sk, START, node_id="1", shard_number="0", remote_consistent_lsn=recs[8]["end_lsn"], **shard)
    assert tl.remote_consistent_lsn == 0  # shard 1 has not reported yet
    stream(sk, START, node_id="2", shard_number="1", remote_consistent_lsn=recs[3]["end_lsn"], **shard)
    assert tl.remote_consistent_lsn == parse_lsn(recs[3]["end_lsn"])
    sk.maintenance()
    assert tl.local_start_lsn == parse_lsn(recs[4]["lsn"])
    out = stream(sk, tl.local_start_lsn, node_id="2", shard_number="1", **shard)
    assert out["end_lsn"] == recs[-1]["end_lsn"]


def test_status_has_upstream_fields_and_walsenders(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 2)
    append(sk, recs, commit=recs[-1]["end_lsn"])
    stream(sk, START, node_id="7", shard_number="1", shard_count="2", stripe_size="8", last_received_lsn="0/1000010")
    status = sk.get(TENANT, TIMELINE).status(101)
    assert status["commit_lsn"] == recs[-1]["end_lsn"]
    assert status["walreceivers"] == [{"conn_id": 1, "status": "Streaming"}]
    (sender,) = status["walsenders"]
    feedback = sender["Interpreted"]["feedback"]["Pageserver"]
    assert feedback["last_received_lsn"] == "0/1000010"
    assert feedback["shard_number"] == 1
    assert sender["Interpreted"]["shard"]["count"] == 2


def test_delete_timeline_and_tenant(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    assert sk.delete_timeline(TENANT, TIMELINE) == {"dir_existed": True, "was_active": False}
    assert sk.delete_timeline(TENANT, TIMELINE) == {"dir_existed": False, "was_active": False}
    create(sk)
    assert sk.delete_tenant(TENANT) == {TIMELINE: {"dir_existed": True, "was_active": False}}
    assert make_sk(tmp_path).timelines == {}


def test_peer_reports_let_a_safekeeper_without_walsenders_trim(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    recs = records(START, 6)
    append(sk, recs, commit=recs[-1]["end_lsn"])
    tl = sk.get(TENANT, TIMELINE)
    peer_status = {
        "acceptor_state": {"term": 1},
        "flush_lsn": recs[-1]["end_lsn"],
        "commit_lsn": recs[-1]["end_lsn"],
        "local_start_lsn": format_lsn(START),
        "remote_consistent_lsn": recs[3]["end_lsn"],
    }
    tl.learn_from_peer(102, peer_status, "127.0.0.1:2", "127.0.0.1:3")
    sk.maintenance()
    assert tl.local_start_lsn == parse_lsn(recs[4]["lsn"])
    (peer,) = tl.status(101)["peers"]
    assert (peer["sk_id"], peer["commit_lsn"], peer["pg_connstr"]) == (102, recs[-1]["end_lsn"], "127.0.0.1:2")


def test_walsender_expires_after_last_poll(tmp_path):
    sk = make_sk(tmp_path)
    create(sk)
    stream(sk, START, node_id="3")
    tl = sk.get(TENANT, TIMELINE)
    (sender,) = tl.walsenders.values()
    tl.expire_walsenders(now=sender.last_seen + 1)
    assert len(tl.walsenders) == 1
    # a walsender in the middle of a long-poll never expires
    sender.active_polls = 1
    tl.expire_walsenders(now=sender.last_seen + 3600)
    assert len(tl.walsenders) == 1
    sender.active_polls = 0
    tl.expire_walsenders(now=sender.last_seen + 3600)
    assert tl.walsenders == {}
    assert tl.status(101)["walsenders"] == []
