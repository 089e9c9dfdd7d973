"""Consistency checker over the fleet's S3 state (and the computes' acknowledged-write logs).

For every tenant shard timeline it takes the newest index_part (highest generation) and checks that:
1. every layer the index references exists in S3 (else: a lost layer);
2. reconstructing each key at the index's disk_consistent_lsn from the referenced layers (and the ancestor's
   newest index at the branch point) yields, for every acknowledged write at or below that LSN, that write or
   a newer record (else: a lost key).

`python -m neonsim check --dir DIR` prints the report; `run_check(fleet_dir) -> dict` is the API.
Synthetic timelines (declared layers without objects, sim-only) are counted and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from neonsim.lsn import format_lsn, parse_lsn
from neonsim.pageserver.layers import LayerContent, parse_layer_bytes, parse_layer_name
from neonsim.pageserver.remote import index_generation, layer_key, normalize_prefix
from neonsim.sharding import TenantShardId, key_in_shard

MAX_SAMPLES = 50
INDEX_STABILITY_ATTEMPTS = 5


def _s3_client(s3: dict):
    # straight to moto, not through the fault proxy: the checker must see the truth
    return boto3.client(
        "s3",
        endpoint_url=s3.get("moto_url") or s3.get("endpoint_url") or None,
        region_name=s3.get("region", "us-east-1"),
        aws_access_key_id=s3.get("access_key", "testing"),
        aws_secret_access_key=s3.get("secret_key", "testing"),
        config=Config(retries={"max_attempts": 3}),
    )


class _Bucket:
    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket
        self._content: dict[str, LayerContent | None] = {}

    def list_keys(self, prefix: str) -> set[str]:
        keys: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.update(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def get_json(self, key: str):
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def layer(self, key: str) -> LayerContent | None:
        if key not in self._content:
            try:
                data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                self._content[key] = parse_layer_bytes(data)
            except self.client.exceptions.NoSuchKey:
                self._content[key] = None
        return self._content[key]


class _IndexedTimeline:
    def __init__(self, tsid: str, timeline_id: str, index: dict, generation: int, prefix: str):
        self.shard_id = TenantShardId.parse(tsid)
        self.tsid = tsid
        self.timeline_id = timeline_id
        self.index = index
        self.generation = generation
        md = index.get("metadata_bytes") or {}
        self.disk_consistent_lsn = parse_lsn(index.get("disk_consistent_lsn"))
        self.ancestor = md.get("ancestor_timeline")
        self.ancestor_lsn = parse_lsn(md.get("ancestor_lsn")) if self.ancestor else 0
        self.synthetic = bool(index.get("neonsim_synthetic"))
        self.layers = []  # (kind, lsn_start, lsn_end, s3 key, name, generation)
        for name, meta in (index.get("layer_metadata") or {}).items():
            kind, start, end = parse_layer_name(name)
            gen = int(meta.get("generation") or 0)
            key = layer_key(prefix, self.shard_id.tenant_id, meta.get("shard"), timeline_id, name, gen)
            self.layers.append((kind, start, end, key, name, gen))


def _reconstruct(bucket: _Bucket, timelines: dict, tl: _IndexedTimeline, key: str, lsn: int):
    """(found_record_lsn, value) of key at lsn; record lsn -1 when never written."""
    eligible = [x for x in tl.layers if (x[1] < lsn if x[0] == "delta" else x[2] <= lsn)]
    eligible.sort(key=lambda x: (x[2], x[0] == "image"), reverse=True)
    for kind, _start, _end, s3_key, _name, _gen in eligible:
        content = bucket.layer(s3_key)
        if content is None:
            continue  # lost layer: already reported; reconstruct from what is left
        found, value, rec_lsn = content.newest_at(key, lsn)
        if found:
            return rec_lsn, value
        if kind == "image":
            return -1, None
    if tl.ancestor:
        parent = timelines.get((tl.tsid, tl.ancestor))
        if parent is not None:
            return _reconstruct(bucket, timelines, parent, key, min(lsn, tl.ancestor_lsn))
    return -1, None


def _load_acked(fleet_dir: Path, fleet: dict) -> dict[tuple[str, str], dict[str, list[dict]]]:
    acked: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    computes = {c["name"]: c for c in fleet.get("computes") or []}
    # every writer keeps its log in DIR/<writer>/acked_writes.jsonl (computes, and test harnesses)
    for path in sorted(fleet_dir.glob("*/acked_writes.jsonl")):
        compute = computes.get(path.parent.name, {})
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                record = {
                    "lsn": parse_lsn(entry["lsn"]),
                    "end_lsn": parse_lsn(entry["end_lsn"]),
                    "value": entry["value"],
                }
                tenant = entry.get("tenant_id") or compute.get("tenant_id")
                timeline = entry.get("timeline_id") or compute.get("timeline_id")
                acked[(tenant, timeline)][entry["key"]].append(record)
            except (ValueError, KeyError, TypeError):
                continue  # torn last line after a kill
    return acked


def run_check(fleet_dir) -> dict:
    fleet_dir = Path(fleet_dir)
    fleet = json.loads((fleet_dir / "fleet.json").read_text())
    s3 = fleet["s3"]
    bucket = _Bucket(_s3_client(s3), s3["bucket"])
    prefixes = sorted({normalize_prefix(ps.get("prefix_in_bucket")) for ps in fleet.get("pageservers") or []} or {""})
    acked = _load_acked(fleet_dir, fleet)
    report: dict[str, Any] = {
        "ok": True,
        "timelines_checked": 0,
        "layers_checked": 0,
        "keys_checked": 0,
        "acked_writes": sum(len(v) for keys in acked.values() for v in keys.values()),
        "skipped_synthetic": 0,
        "lost_layers": [],
        "lost_keys": [],
        "lost_layers_count": 0,
        "lost_keys_count": 0,
    }
    for prefix in prefixes:
        all_keys = bucket.list_keys(f"{prefix}tenants/")
        newest: dict[tuple[str, str], tuple[int, str]] = {}
        for key in all_keys:
            gen = index_generation(key)
            if gen is None:
                continue
            parts = key[len(prefix) :].split("/")  # tenants/<tsid>/timelines/<tl>/index_part.json-<gen>
            if len(parts) != 5 or parts[0] != "tenants" or parts[2] != "timelines":
                continue
            ident = (parts[1], parts[3])
            if ident not in newest or gen > newest[ident][0]:
                newest[ident] = (gen, key)
        timelines: dict[tuple[str, str], _IndexedTimeline] = {}
        for (tsid, timeline_id), (gen, key) in newest.items():
            index = bucket.get_json(key)
            if index.get("deleted_at"):
                continue
            timelines[(tsid, timeline_id)] = _IndexedTimeline(tsid, timeline_id, index, gen, prefix)
        for ident, tl in list(timelines.items()):
            if tl.synthetic:
                report["skipped_synthetic"] += 1
                continue
            report["timelines_checked"] += 1
            for _attempt in range(INDEX_STABILITY_ATTEMPTS):
                result = _check_timeline(bucket, timelines, tl, all_keys, acked, fleet)
                if not result["lost_layers"] and not result["lost_keys"]:
                    break
                # a live pageserver may have replaced the index meanwhile: only a loss seen by an index that
                # is still current counts
                fresh = bucket.get_json(newest[ident][1])
                if fresh == tl.index:
                    break
                tl = timelines[ident] = _IndexedTimeline(tl.tsid, tl.timeline_id, fresh, tl.generation, prefix)
                all_keys = bucket.list_keys(f"{prefix}tenants/{tl.tsid}/")
            report["layers_checked"] += result["layers_checked"]
            report["keys_checked"] += result["keys_checked"]
            for kind in ("lost_layers", "lost_keys"):
                report[f"{kind}_count"] += len(result[kind])
                report[kind].extend(result[kind][: max(MAX_SAMPLES - len(report[kind]), 0)])
    report["ok"] = not report["lost_layers_count"] and not report["lost_keys_count"]
    return report


def _check_timeline(bucket: _Bucket, timelines: dict, tl: _IndexedTimeline, all_keys: set, acked, fleet) -> dict:
    result: dict[str, Any] = {"layers_checked": 0, "keys_checked": 0, "lost_layers": [], "lost_keys": []}
    for _kind, _s, _e, s3_key, name, layer_gen in tl.layers:
        result["layers_checked"] += 1
        # on a live fleet an index read after the listing may reference layers uploaded since
        if s3_key not in all_keys and not bucket.exists(s3_key):
            result["lost_layers"].append(
                {
                    "tenant_shard_id": tl.tsid,
                    "timeline_id": tl.timeline_id,
                    "layer": name,
                    "layer_generation": layer_gen,
                    "index_generation": tl.generation,
                    "key": s3_key,
                }
            )
    writes = acked.get((tl.shard_id.tenant_id, tl.timeline_id)) or {}
    sid = tl.shard_id
    stripe = fleet_stripe(fleet, sid.tenant_id) if sid.shard_count > 1 else None
    for key, records in writes.items():
        if not key_in_shard(key, sid.shard_number, sid.shard_count, stripe):
            continue
        visible = [r for r in records if r["end_lsn"] <= tl.disk_consistent_lsn]
        if not visible:
            continue
        expected = max(visible, key=lambda r: r["end_lsn"])
        result["keys_checked"] += 1
        rec_lsn, value = _reconstruct(bucket, timelines, tl, key, tl.disk_consistent_lsn)
        # a newer record than the last acknowledged one is fine (written but not yet acknowledged)
        if rec_lsn < expected["lsn"] or (rec_lsn == expected["lsn"] and value != expected["value"]):
            result["lost_keys"].append(
                {
                    "tenant_shard_id": tl.tsid,
                    "timeline_id": tl.timeline_id,
                    "key": key,
                    "expected": expected["value"],
                    "expected_lsn": format_lsn(expected["lsn"]),
                    "found": value,
                    "found_lsn": format_lsn(rec_lsn) if rec_lsn >= 0 else None,
                    "at_lsn": format_lsn(tl.disk_consistent_lsn),
                }
            )
    return result


def fleet_stripe(fleet: dict, tenant_id: str) -> int | None:
    for tenant in fleet.get("tenants") or []:
        if tenant.get("tenant_id") == tenant_id:
            return tenant.get("stripe_size")
    return None


check = run_check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neonsim check")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    report = run_check(args.dir)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
