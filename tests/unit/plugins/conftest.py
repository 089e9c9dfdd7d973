"""A moto S3 server on 127.0.0.1 for the S3 module and module_utils tests, and a Neon remote-layout writer."""

from __future__ import annotations

import itertools
import json
import socket

import pytest

_bucket_numbers = itertools.count()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_url():
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_URL",
        "S3_URL",
        "EC2_URL",
        "AWS_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def s3(moto_url, aws_env):
    """A plain boto3 client on the moto server (what the tests use to set up and inspect buckets)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def make_bucket(s3):
    def make() -> str:
        name = f"neon-test-{next(_bucket_numbers)}"
        s3.create_bucket(Bucket=name)
        return name

    return make


def aws_args(moto_url: str) -> dict:
    return {"endpoint_url": moto_url, "region": "us-east-1", "access_key": "testing", "secret_key": "testing"}


def layer_name(n: int) -> str:
    """A delta layer file name (upstream pageserver/src/tenant/storage_layer/layer_name.rs)."""
    return f"{'0' * 36}-{'F' * 36}__{n:016X}-{n + 1:016X}"


def write_timeline(
    s3,
    bucket: str,
    prefix: str,
    tenant_shard_id: str,
    timeline_id: str,
    generations,
    layers: int,
    layer_size: int = 64,
    shard: str | None = None,
    big: int = 0,
) -> list[str]:
    """Write layers and one index_part per generation (each referencing every layer); returns all keys.

    ``big``: size of one extra layer written as a multi-MiB object (0 = none).
    """
    tenant_id = tenant_shard_id[:32]
    gen = max(generations)
    keys = []
    meta = {}
    sizes = [layer_size] * layers + ([big] if big else [])
    for i, size in enumerate(sizes):
        name = layer_name(0x1000 + 16 * i)
        suffix = f"-{shard}" if shard else ""
        key = f"{prefix}/tenants/{tenant_id}{suffix}/timelines/{timeline_id}/{name}-{gen:08x}"
        s3.put_object(Bucket=bucket, Key=key, Body=bytes([i % 251]) * size)
        keys.append(key)
        meta[name] = {"file_size": size, "generation": gen, **({"shard": shard} if shard else {})}
    for g in generations:
        key = f"{prefix}/tenants/{tenant_shard_id}/timelines/{timeline_id}/index_part.json-{g:08x}"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({"version": 15, "layer_metadata": meta}).encode())
        keys.append(key)
    heatmap = f"{prefix}/tenants/{tenant_shard_id}/heatmap-v1.json"
    s3.put_object(Bucket=bucket, Key=heatmap, Body=b'{"generation": %d, "timelines": []}' % gen)
    keys.append(heatmap)
    return keys


def snapshot(s3, bucket: str) -> dict:
    """Every object in a bucket: {key: (size, etag)}."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = (obj["Size"], obj["ETag"])
    return out
