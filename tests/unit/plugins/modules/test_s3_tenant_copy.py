from __future__ import annotations

import collections
import threading

import pytest
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.neonops.storage.plugins.module_utils import _s3
from ansible_collections.neonops.storage.plugins.modules import s3_tenant_copy
from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID, TIMELINE_ID, TIMELINE_ID_2
from ansible_collections.neonops.storage.tests.unit.plugins.conftest import aws_args, snapshot, write_timeline
from botocore.exceptions import ClientError

OTHER_TENANT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
BIG = 6 * _s3.MIB


def _fill(s3, bucket) -> set:
    """TENANT_ID in two shards (~50 small objects and one 6 MiB layer), and another tenant that must stay put."""
    keys = write_timeline(s3, bucket, "old", f"{TENANT_ID}-0002", TIMELINE_ID, [1, 2], layers=22, shard="0002", big=BIG)
    keys += write_timeline(s3, bucket, "old", f"{TENANT_ID}-0102", TIMELINE_ID, [2], layers=20, shard="0102")
    keys += write_timeline(s3, bucket, "old", f"{TENANT_ID}-0102", TIMELINE_ID_2, [3], layers=3, shard="0102")
    write_timeline(s3, bucket, "old", OTHER_TENANT, TIMELINE_ID, [5], layers=2)
    return set(keys)


def _fill_light(s3, bucket) -> set:
    """TENANT_ID in two shards, a few small objects each."""
    keys = write_timeline(s3, bucket, "old", f"{TENANT_ID}-0002", TIMELINE_ID, [1, 2], layers=3, shard="0002")
    keys += write_timeline(s3, bucket, "old", f"{TENANT_ID}-0102", TIMELINE_ID, [2], layers=2, shard="0102")
    write_timeline(s3, bucket, "old", OTHER_TENANT, TIMELINE_ID, [5], layers=1)
    return set(keys)


def _args(moto_url, src, dst=None, **kw):
    args = {
        **aws_args(moto_url),
        "bucket": src,
        "prefix_in_bucket": "old/",
        "dest_prefix_in_bucket": "new",
        "tenant_id": TENANT_ID,
        "concurrency": 8,
        "multipart_threshold": 5 * _s3.MIB,
        "multipart_chunksize": 5 * _s3.MIB,
    }
    if dst:
        args["dest_bucket"] = dst
    args.update(kw)
    return args


def _moved(keys, dst_prefix="new"):
    return {dst_prefix + k[len("old") :] for k in keys}


def test_copy_verifies_and_rerun_copies_nothing(s3, make_bucket, moto_url, run_module):
    src, dst = make_bucket(), make_bucket()
    keys = _fill(s3, src)
    assert len(keys) == 52  # 23+20+3 layers, 4 index_parts, 2 heatmaps
    before_src = snapshot(s3, src)
    run = run_module(s3_tenant_copy, _args(moto_url, src, dst))
    assert not run.failed and run.changed, run.result
    total = sum(size for key, (size, _etag) in before_src.items() if key in keys)
    assert run["source"] == {"objects": 52, "bytes": total}
    assert run["copied"] == {"objects": 52, "bytes": total, "multipart": 1}
    assert run["verified"] == {"objects": 52, "bytes": total}
    assert run["mismatched"] == [] and run["missing_layers"] == []
    assert run["index_parts_checked"] == 3 and run["layers_checked"] == 23 + 20 + 3
    assert run["shards"] == [f"{TENANT_ID}-0002", f"{TENANT_ID}-0102"]
    after = snapshot(s3, dst)
    assert set(after) == _moved(keys)
    big_key = next(k for k, (size, _e) in after.items() if size == BIG)
    assert after[big_key][1].endswith('-2"'), "the 6 MiB layer took the multipart copy path (2 parts)"
    assert snapshot(s3, src) == before_src

    again = run_module(s3_tenant_copy, _args(moto_url, src, dst))
    assert not again.failed and not again.changed, again.result
    assert again["copied"]["objects"] == 0 and again["identical"] == {"objects": 52, "bytes": total}
    assert again["verified"]["objects"] == 52
    assert snapshot(s3, dst) == after


def test_same_bucket_other_prefix(s3, make_bucket, moto_url, run_module):
    src = make_bucket()
    keys = _fill_light(s3, src)
    run = run_module(s3_tenant_copy, _args(moto_url, src, concurrency=1))
    assert not run.failed and run["copied"]["objects"] == len(keys) == 10, run.result
    assert {k for k in snapshot(s3, src) if k.startswith("new/")} == _moved(keys)


def test_check_mode_copies_nothing(s3, make_bucket, moto_url, run_module):
    src, dst = make_bucket(), make_bucket()
    keys = _fill_light(s3, src)
    # one object already there: check mode counts only the rest
    first = sorted(keys)[0]
    s3.copy_object(CopySource={"Bucket": src, "Key": first}, Bucket=dst, Key=_moved([first]).pop())
    before = snapshot(s3, dst)
    run = run_module(s3_tenant_copy, _args(moto_url, src, dst), check_mode=True)
    assert not run.failed and run.changed, run.result
    assert run["to_copy"]["objects"] == len(keys) - 1 and run["identical"]["objects"] == 1
    assert run["copied"] == {"objects": 0, "bytes": 0, "multipart": 0}
    assert set(run["would_copy"]) == _moved(keys) - set(before)
    assert snapshot(s3, dst) == before


class _FaultyClient:
    """Passes calls to the amazon.aws client; counts completed copies per key and fails the copy after ``limit``."""

    def __init__(self, inner, copies: collections.Counter, limit: int | None):
        self._inner = inner
        self._copies = copies
        self._limit = limit
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _gate(self, key):
        with self._lock:
            if self._limit is not None and sum(self._copies.values()) >= self._limit:
                raise ClientError({"Error": {"Code": "InternalError", "Message": "injected fault"}}, "CopyObject")

    def copy_object(self, **kw):
        self._gate(kw["Key"])
        out = self._inner.copy_object(**kw)
        with self._lock:
            self._copies[kw["Key"]] += 1
        return out

    def copy(self, source, bucket, key, **kw):
        self._gate(key)
        out = self._inner.copy(source, bucket, key, **kw)
        with self._lock:
            self._copies[key] += 1
        return out


def test_interrupted_copy_resumes_without_copying_twice(s3, make_bucket, moto_url, run_module, monkeypatch):
    src, dst = make_bucket(), make_bucket()
    keys = _fill(s3, src)
    copies = collections.Counter()
    real = s3_tenant_copy.s3_client
    limit = {"value": 20}
    monkeypatch.setattr(s3_tenant_copy, "s3_client", lambda module: _FaultyClient(real(module), copies, limit["value"]))
    # retries on InternalError would hide the fault: no retries in this test
    monkeypatch.setattr(AWSRetry, "jittered_backoff", classmethod(lambda cls, **kw: lambda f: f))

    run = run_module(s3_tenant_copy, _args(moto_url, src, dst, concurrency=4))
    assert run.failed and "injected fault" in run["msg"], run.result
    # The copies in flight when the fault hit finish (at most concurrency - 1 of them); no new one starts.
    done = sum(copies.values())
    assert run["copied"]["objects"] == done and 20 <= done < 24
    partial = snapshot(s3, dst)
    assert len(partial) == done
    # copy order: no index_part or heatmap lands before every layer is there
    assert all("/index_part.json" not in k and "heatmap" not in k for k in partial)

    limit["value"] = None
    rerun = run_module(s3_tenant_copy, _args(moto_url, src, dst, concurrency=4))
    assert not rerun.failed and rerun.changed, rerun.result
    assert rerun["identical"]["objects"] == done and rerun["copied"]["objects"] == 52 - done
    assert rerun["verified"]["objects"] == 52
    assert set(copies) == _moved(keys) and set(copies.values()) == {1}, "every object copied exactly once"


HOSTILE = [
    ("prefix_in_bucket", {"prefix_in_bucket": ""}),
    ("prefix_in_bucket", {"prefix_in_bucket": "/"}),
    ("prefix_in_bucket", {"prefix_in_bucket": ".."}),
    ("prefix_in_bucket", {"prefix_in_bucket": "a/../b"}),
    ("prefix_in_bucket", {"prefix_in_bucket": "old "}),
    ("prefix_in_bucket", {"prefix_in_bucket": "\u043eld"}),  # Cyrillic o
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": ""}),
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": "/"}),
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": ".."}),
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": "a/../b"}),
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": "new "}),
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": "n\u0435w"}),  # Cyrillic e
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": "new\u2024"}),  # one dot leader
    ("tenant_id", {"tenant_id": f"{TENANT_ID}/../{OTHER_TENANT}"}),
    ("tenant_id", {"tenant_id": f"../{TENANT_ID}"}),
    ("tenant_id", {"tenant_id": f"{TENANT_ID}-0002"}),
    ("tenant_id", {"tenant_id": f"{TENANT_ID} "}),
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": "old"}),  # same source and destination
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": "old/", "dest_bucket": "SAME"}),
    ("dest_prefix_in_bucket", {"dest_prefix_in_bucket": f"old/tenants/{TENANT_ID}"}),
    ("dest_bucket", {"dest_bucket": "Bad_Bucket"}),
    ("concurrency", {"concurrency": 0}),
    ("multipart_chunksize", {"multipart_chunksize": 1024}),
]


@pytest.mark.parametrize("field,override", HOSTILE, ids=[repr(o) for _f, o in HOSTILE])
def test_hostile_input_refused_before_any_request(field, override, s3, make_bucket, moto_url, run_module, monkeypatch):
    src, dst = make_bucket(), make_bucket()
    write_timeline(s3, src, "old", f"{TENANT_ID}-0002", TIMELINE_ID, [1], layers=2, shard="0002")
    write_timeline(s3, dst, "new", OTHER_TENANT, TIMELINE_ID, [1], layers=1)
    before = (snapshot(s3, src), snapshot(s3, dst))

    def no_client(module):
        raise AssertionError("an S3 client was created for hostile input")

    monkeypatch.setattr(s3_tenant_copy, "s3_client", no_client)
    override = {k: (src if v == "SAME" else v) for k, v in override.items()}
    args = _args(moto_url, src, dst)
    if override.get("dest_prefix_in_bucket", "").startswith("old"):
        args.pop("dest_bucket")
    run = run_module(s3_tenant_copy, {**args, **override})
    assert run.failed and run["msg"].startswith(f"{field}: "), run["msg"]
    assert (snapshot(s3, src), snapshot(s3, dst)) == before
