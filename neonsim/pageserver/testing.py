"""Test-side driver for pageserver scenarios on a running fleet (`neonsim.fleet.SimFleet`).

It plays the control plane (storcon attach-hook, location_config) and a minimal walproposer (appends WAL
straight to every safekeeper), and logs what it wrote as acknowledged writes in `DIR/harness/` so the
checker verifies them like a compute's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import requests

from neonsim.lsn import format_lsn, parse_lsn, record_size
from neonsim.pageserver.remote import normalize_prefix


class Harness:
    def __init__(self, sim):
        self.sim = sim
        self.fleet = sim.fleet
        self.http = requests.Session()
        self.flush_lsn: dict[tuple[str, str], int] = {}
        self.acked_path = Path(sim.dir) / "harness" / "acked_writes.jsonl"
        self.acked_path.parent.mkdir(parents=True, exist_ok=True)

    # ---- HTTP(S) to the node APIs ------------------------------------------------------------------------------------
    def call(self, method, url, body=None, expected=(200,), params=None, service="pageserver"):
        resp = self.http.request(
            method, url, json=body, params=params, headers=self.sim.headers(service), timeout=60, verify=self.sim.verify
        )
        if expected is not None and resp.status_code not in expected:
            raise AssertionError(f"{method} {url}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp

    def ps(self, name: str) -> str:
        return self.sim.url(name)

    def node_id(self, name: str) -> int:
        return self.sim.entry(name)["node_id"]

    def get(self, ps: str, path: str, **kw):
        return self.call("GET", self.ps(ps) + path, **kw).json()

    # ---- control plane ---------------------------------------------------------------------------------
    def attach_hook(self, tsid: str, ps: str | None) -> int | None:
        body = {"tenant_shard_id": tsid, "node_id": self.node_id(ps) if ps else None}
        return self.call("POST", self.sim.storcon_url + "/debug/v1/attach-hook", body, service="storcon").json()["gen"]

    def location(
        self,
        ps: str,
        tsid: str,
        mode: str,
        generation=None,
        tenant_conf=None,
        expected=(200,),
        stripe_size=None,
        **params,
    ):
        body = {
            "mode": mode,
            "generation": generation,
            "secondary_conf": {"warm": False} if mode == "Secondary" else None,
            "tenant_conf": tenant_conf or {},
        }
        if stripe_size is not None:
            body.update(shard_number=0, shard_count=0, shard_stripe_size=stripe_size)
        url = f"{self.ps(ps)}/v1/tenant/{tsid}/location_config"
        return self.call("PUT", url, body, expected=expected, params=params or None)

    def wait_active(self, ps: str, tsid: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            resp = self.call("GET", f"{self.ps(ps)}/v1/tenant/{tsid}", expected=None)
            if resp.status_code == 200:
                info = resp.json()
                if info["state"]["slug"] == "Active":
                    return info
                assert info["state"]["slug"] != "Broken", info
            assert time.monotonic() < deadline, f"{tsid} not active on {ps}: {resp.status_code} {resp.text}"
            time.sleep(0.05)

    def create_tenant(self, ps: str, tenant_conf: dict | None = None) -> tuple[str, str, int | None]:
        """A fresh unsharded tenant with one timeline on ps and on every safekeeper: (tenant, timeline, gen)."""
        tenant_id, timeline_id = uuid.uuid4().hex, uuid.uuid4().hex
        gen = self.attach_hook(tenant_id, ps)
        self.location(ps, tenant_id, "AttachedSingle", gen, tenant_conf)
        self.wait_active(ps, tenant_id)
        info = self.call(
            "POST", f"{self.ps(ps)}/v1/tenant/{tenant_id}/timeline", {"new_timeline_id": timeline_id}, expected=(201,)
        ).json()
        members = [{"id": sk["node_id"], "host": "127.0.0.1", "pg_port": sk["pg_port"]} for sk in self.sks()]
        body = {
            "tenant_id": tenant_id,
            "timeline_id": timeline_id,
            "mconf": {"generation": 1, "members": members, "new_members": None},
            "pg_version": 170000,
            "start_lsn": info["last_record_lsn"],
        }
        for sk in self.sks():
            url = f"{self.sim.url(sk['name'])}/v1/tenant/timeline"
            self.call("POST", url, body, (200, 201), service="safekeeper")
        self.flush_lsn[(tenant_id, timeline_id)] = parse_lsn(info["last_record_lsn"])
        return tenant_id, timeline_id, gen

    def sks(self) -> list[dict]:
        return list(self.fleet.get("safekeepers") or [])

    # ---- WAL ------------------------------------------------------------------------------------------
    def write(self, tenant_id: str, timeline_id: str, items: Sequence[tuple[str, str | None]], skip=()) -> int:
        """Append records to every safekeeper (except those named in skip) and commit; returns the end LSN."""
        lsn = self.flush_lsn[(tenant_id, timeline_id)]
        records = []
        for key, value in items:
            end = lsn + record_size(key, value)
            records.append({"lsn": format_lsn(lsn), "end_lsn": format_lsn(end), "key": key, "value": value})
            lsn = end
        body = {"tenant_id": tenant_id, "timeline_id": timeline_id, "records": records, "commit_lsn": format_lsn(lsn)}
        for sk in self.sks():
            if sk["name"] not in skip:
                self.call("POST", f"http://127.0.0.1:{sk['pg_port']}/sim/wal/append", body)
        self.flush_lsn[(tenant_id, timeline_id)] = lsn
        with open(self.acked_path, "a") as fh:
            for rec in records:
                fh.write(json.dumps({**rec, "tenant_id": tenant_id, "timeline_id": timeline_id}) + "\n")
        return lsn

    def write_keys(self, tenant_id: str, timeline_id: str, count: int, tag: str, size: int = 200, skip=()) -> int:
        items = [(f"k{i:04d}", f"{tag}-{i}-" + "x" * size) for i in range(count)]
        return self.write(tenant_id, timeline_id, items, skip=skip)

    def s3(self):
        return self.sim.moto_s3()

    def s3_json(self, ps: str, key_below_prefix: str):
        conf = self.fleet["s3"]
        prefix = normalize_prefix(self.sim.entry(ps).get("prefix_in_bucket"))
        body = self.s3().get_object(Bucket=conf["bucket"], Key=prefix + key_below_prefix)["Body"].read()
        return json.loads(body)

    def wait_lsn(self, ps: str, tsid: str, timeline_id: str, lsn: int, timeout: float = 30.0) -> None:
        body = {timeline_id: format_lsn(lsn), "timeout": {"secs": int(timeout), "nanos": 0}}
        resp = self.call("POST", f"{self.ps(ps)}/v1/tenant/{tsid}/wait_lsn", body, expected=(200, 202))
        assert resp.status_code == 200, f"{ps} did not reach {format_lsn(lsn)}"

    def timeline(self, ps: str, tsid: str, timeline_id: str) -> dict:
        return self.get(ps, f"/v1/tenant/{tsid}/timeline/{timeline_id}")

    def checkpoint(self, ps: str, tsid: str, timeline_id: str) -> None:
        self.call("PUT", f"{self.ps(ps)}/v1/tenant/{tsid}/timeline/{timeline_id}/checkpoint")

    def compact(self, ps: str, tsid: str, timeline_id: str) -> None:
        self.call("PUT", f"{self.ps(ps)}/v1/tenant/{tsid}/timeline/{timeline_id}/compact")

    def gc(self, ps: str, tsid: str, timeline_id: str, horizon: int = 0) -> dict:
        url = f"{self.ps(ps)}/v1/tenant/{tsid}/timeline/{timeline_id}/do_gc"
        return self.call("PUT", url, {"gc_horizon": horizon}).json()

    def flush_deletions(self, ps: str) -> None:
        self.call("PUT", f"{self.ps(ps)}/v1/deletion_queue/flush", params={"execute": "true"})

    def stats(self, ps: str) -> dict:
        return self.call("GET", f"{self.ps(ps)}/sim/pageserver").json()

    def evict(self, ps: str, tsid: str) -> int:
        return self.call("POST", f"{self.ps(ps)}/sim/tenant/{tsid}/evict").json()["evicted"]

    def read(self, ps: str, tsid: str, timeline_id: str, key: str, lsn: int | None = None, timeout_ms: int = 5000):
        params = {"tenant_shard_id": tsid, "timeline_id": timeline_id, "key": key, "timeout_ms": str(timeout_ms)}
        if lsn is not None:
            params["lsn"] = format_lsn(lsn)
        return self.http.get(self.sim.pg_url(ps) + "/sim/page", params=params, timeout=30)
