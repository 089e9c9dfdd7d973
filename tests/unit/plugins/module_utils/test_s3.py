from __future__ import annotations

import json

import pytest
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry, RetryingBotoClientWrapper
from ansible_collections.neonops.storage.plugins.module_utils import _s3
from ansible_collections.neonops.storage.tests.unit.conftest import TENANT_ID, TIMELINE_ID
from ansible_collections.neonops.storage.tests.unit.plugins.conftest import layer_name, snapshot, write_timeline

TSID_1 = f"{TENANT_ID}-0102"


@pytest.mark.parametrize(
    "value,expected",
    [
        ("pageserver", "pageserver"),
        ("pageserver/", "pageserver"),
        ("fleet/a-1/ps_2", "fleet/a-1/ps_2"),
    ],
)
def test_prefix_accepted(value, expected):
    assert _s3.validate_prefix(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "/",
        "//",
        "..",
        ".",
        "a/../b",
        "a/./b",
        "a//b",
        "/abs",
        "pageserver ",
        " pageserver",
        "page server",
        "pageserver\n",
        "pag\u0435server",
        "pageserver\u2215x",
        "a\\b",
        "a/*",
        None,
        3,
        "a/b//",
    ],
)
def test_prefix_refused_naming_field(value):
    with pytest.raises(ValueError, match=r"^dest_prefix_in_bucket: "):
        _s3.validate_prefix(value, "dest_prefix_in_bucket")


@pytest.mark.parametrize("value", ["", "A", "ab", "Bucket", "a..b", "-ab", "ab-", "b\u0430cket", "a/b", "x" * 64])
def test_bucket_refused(value):
    with pytest.raises(ValueError, match=r"^bucket: "):
        _s3.validate_bucket(value)


@pytest.mark.parametrize(
    "value", [f"{TENANT_ID}/..", f"../{TENANT_ID}", f"{TENANT_ID}-0102", f"{TENANT_ID} ", f"{TENANT_ID}/x", "*", ""]
)
def test_tenant_id_refused(value):
    with pytest.raises(ValueError, match=r"^tenant_id: "):
        _s3.validate_copy_tenant_id(value)


def test_distinct_prefixes():
    _s3.check_distinct("b", "ps-a", "b", "ps-b")
    _s3.check_distinct("b", "ps", "c", "ps")
    with pytest.raises(ValueError, match="^dest_prefix_in_bucket: 'ps' is the source prefix"):
        _s3.check_distinct("b", "ps", "b", "ps")
    with pytest.raises(ValueError, match="^dest_prefix_in_bucket: .* inside the tenant tree"):
        _s3.check_distinct("b", "ps", "b", f"ps/tenants/{TENANT_ID}/copy")
    with pytest.raises(ValueError, match="^prefix_in_bucket: .* inside the tenant tree"):
        _s3.check_distinct("b", "new/tenants/old", "b", "new")


def test_parse_key_kinds():
    p = "ps"
    base = f"ps/tenants/{TSID_1}"
    assert _s3.parse_key(f"{base}/heatmap-v1.json", p)["kind"] == "heatmap"
    m = _s3.parse_key(f"{base}/tenant-manifest-0000000a.json", p)
    assert (m["kind"], m["generation"]) == ("tenant_manifest", 10)
    i = _s3.parse_key(f"{base}/timelines/{TIMELINE_ID}/index_part.json-0000000b", p)
    assert (i["kind"], i["generation"], i["timeline_id"], i["tenant_id"]) == ("index_part", 11, TIMELINE_ID, TENANT_ID)
    assert _s3.parse_key(f"{base}/timelines/{TIMELINE_ID}/index_part.json", p)["generation"] is None
    lay = _s3.parse_key(f"{base}/timelines/{TIMELINE_ID}/{layer_name(5)}-00000003", p)
    assert (lay["kind"], lay["generation"]) == ("layer", 3)
    assert _s3.parse_key(f"ps/tenants/{TENANT_ID}/timelines/{TIMELINE_ID}/initdb.tar.zst", p)["kind"] == "initdb"
    assert _s3.parse_key(f"ps/tenants/{TENANT_ID.upper()}/heatmap-v1.json", p) is None
    assert _s3.parse_key("ps/tenants/not-a-tenant/x", p) is None
    assert _s3.parse_key(f"other/tenants/{TENANT_ID}/heatmap-v1.json", p) is None


def test_layer_key_from_index_metadata():
    name = layer_name(1)
    assert _s3.layer_key("ps", TENANT_ID, TIMELINE_ID, name, {"file_size": 1, "generation": 2, "shard": "0104"}) == (
        f"ps/tenants/{TENANT_ID}-0104/timelines/{TIMELINE_ID}/{name}-00000002"
    )
    assert _s3.layer_key("ps", TENANT_ID, TIMELINE_ID, name, {"file_size": 1}) == (
        f"ps/tenants/{TENANT_ID}/timelines/{TIMELINE_ID}/{name}"
    )
    for bad_name, meta in (("../../x", {}), (name, {"shard": "../x"}), (name, {"generation": "1"})):
        with pytest.raises(_s3.S3LayoutError):
            _s3.layer_key("ps", TENANT_ID, TIMELINE_ID, bad_name, meta)


def test_summarize_groups_by_shard_and_newest_generation():
    p = "ps"
    objs = {
        f"ps/tenants/{TSID_1}/timelines/{TIMELINE_ID}/index_part.json-00000002": {"size": 10, "etag": "a"},
        f"ps/tenants/{TSID_1}/timelines/{TIMELINE_ID}/index_part.json-00000005": {"size": 10, "etag": "b"},
        f"ps/tenants/{TSID_1}/timelines/{TIMELINE_ID}/{layer_name(1)}-00000005": {"size": 100, "etag": "c"},
        f"ps/tenants/{TSID_1}/heatmap-v1.json": {"size": 3, "etag": "d"},
        "ps/tenants/junk": {"size": 7, "etag": "e"},
    }
    summary = _s3.summarize(objs, p)
    assert summary["other"] == {"objects": 1, "bytes": 7}
    [tenant] = summary["tenants"]
    [shard] = tenant["shards"]
    assert (tenant["objects"], tenant["bytes"]) == (4, 123)
    assert shard["newest_generation"] == 5 and shard["heatmap"] and shard["layers"] == 1
    assert (shard["shard_number"], shard["shard_count"]) == (1, 2)
    assert shard["timelines"][0]["index_part_key"].endswith("index_part.json-00000005")


def _client(s3):
    return RetryingBotoClientWrapper(s3, AWSRetry.jittered_backoff(retries=2, delay=0))


def _config(threshold):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=threshold, multipart_chunksize=5 * _s3.MIB, max_concurrency=4)


def test_copy_then_rerun_skips_everything(s3, make_bucket):
    src, dst = make_bucket(), make_bucket()
    keys = write_timeline(s3, src, "old", TENANT_ID, TIMELINE_ID, [1, 2], layers=5, big=6 * _s3.MIB)
    client = _client(s3)
    first = _s3.copy_tenant(client, src, "old", dst, "new", TENANT_ID, False, 4, _config(5 * _s3.MIB), 5 * _s3.MIB)
    assert first["copied"] == {"objects": len(keys), "bytes": first["source"]["bytes"], "multipart": 1}
    assert first["verified"]["objects"] == len(keys) and not first["mismatched"] and not first["missing_layers"]
    assert first["layers_checked"] == 6 and first["index_parts_checked"] == 1
    assert set(snapshot(s3, dst)) == {k.replace("old/", "new/", 1) for k in keys}
    second = _s3.copy_tenant(client, src, "old", dst, "new", TENANT_ID, False, 4, _config(5 * _s3.MIB), 5 * _s3.MIB)
    assert second["copied"]["objects"] == 0 and second["identical"]["objects"] == len(keys)
    assert second["verified"]["objects"] == len(keys)


def test_verify_reports_missing_layer(s3, make_bucket):
    src, dst = make_bucket(), make_bucket()
    write_timeline(s3, src, "old", TENANT_ID, TIMELINE_ID, [3], layers=2)
    index_key = f"old/tenants/{TENANT_ID}/timelines/{TIMELINE_ID}/index_part.json-00000003"
    index = json.loads(s3.get_object(Bucket=src, Key=index_key)["Body"].read())
    index["layer_metadata"][layer_name(0x9999)] = {"file_size": 5, "generation": 3}
    s3.put_object(Bucket=src, Key=index_key, Body=json.dumps(index).encode())
    result = _s3.copy_tenant(
        _client(s3), src, "old", dst, "new", TENANT_ID, False, 2, _config(64 * _s3.MIB), 64 * _s3.MIB
    )
    assert [m["layer_key"] for m in result["missing_layers"]] == [
        f"new/tenants/{TENANT_ID}/timelines/{TIMELINE_ID}/{layer_name(0x9999)}-00000003"
    ]


class _RecordingModule:
    """Stands in for AnsibleAWSModule: records what ``client()`` asks amazon.aws for."""

    def __init__(self):
        self.calls = []

    def client(self, service, retry_decorator=None, **extra):
        self.calls.append((service, retry_decorator, extra))
        return "client"


def test_client_is_amazon_aws_retrying_client_pooled_for_the_copies_in_flight():
    module = _RecordingModule()
    assert _s3.client(module, concurrency=16) == "client"
    [(service, retry, extra)] = module.calls
    assert service == "s3" and retry is not None
    # a connection per copy in flight and per multipart part among them: none waits for, or drops, a connection
    assert extra["config"].max_pool_connections == _s3.pool_size(16) >= 16 * 4
    module = _RecordingModule()
    _s3.client(module)
    assert module.calls[0][2] == {}  # no concurrency: botocore's defaults and the user's aws_config alone


def test_argument_spec_adds_the_pageserver_api_options_only_when_asked():
    own = {"bucket": {"type": "str", "required": True}}
    assert _s3.argument_spec(own) == own
    spec = _s3.argument_spec(own, pageserver_api=True)
    assert set(spec) == {"bucket", "api_token", "ca_path", "timeout", "retries"}
    assert spec["api_token"]["no_log"] is True
    spec["api_token"]["no_log"] = False  # a copy: one module cannot change another's spec
    assert _s3.PAGESERVER_API_SPEC["api_token"]["no_log"] is True
