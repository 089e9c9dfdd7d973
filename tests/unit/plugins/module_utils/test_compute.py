from __future__ import annotations

import json

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _compute
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError, NeonClient

PS1 = "postgres://no_user@ps1.internal:64000"
PS2 = "postgresql://no_user@[::1]:64001"


@pytest.fixture
def client(fake_api):
    return NeonClient(fake_api.url, backoff_factor=0, error_key="error")


def test_status_and_configure_wrappers(fake_api, client):
    fake_api.add("GET", "/status", {"status": "running"})
    fake_api.add("POST", "/configure", {"status": "running"})
    assert _compute.status(client) == {"status": "running"}
    assert _compute.configure(client, {"format_version": 1.0}, {"jwks": {"keys": []}}) == {"status": "running"}
    assert fake_api.requests[1].body == {"spec": {"format_version": 1.0}, "compute_ctl_config": {"jwks": {"keys": []}}}


def test_configure_error_carries_compute_ctl_error_text(fake_api, client):
    fake_api.add("POST", "/configure", {"error": "invalid compute status: configuration-pending"}, 412)
    with pytest.raises(NeonAPIError) as info:
        _compute.configure(client, {}, {})
    assert (info.value.status, info.value.message) == (412, "invalid compute status: configuration-pending")


@pytest.mark.parametrize("url", [PS1, PS2, "postgres://u@10.0.0.1:5432/", "postgresql://cloud_admin@h-1.example.com:1"])
def test_valid_libpq_urls(url):
    assert _compute.validate_libpq_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "postgres://host:64000",  # no user
        "postgres://u@host",  # no port
        "postgres://u@host:0",
        "postgres://u@host:65536",
        "postgres://u:secret@host:64000",  # passwords belong in storage_auth_token
        "http://u@host:64000",
        "postgres://u@host:64000,postgres://u@h2:1",
        "postgres://u@host:64000/db?x=1",
        "postgres://u@host:64000\n",  # "$" with re.match would take this
        "postgres://u@host:64000/\n",
        "postgres://u@" + "a" * 64 + ":5432",  # a host name label is at most 63 characters
        "postgres://u@h\u200bost:5432",
        "postgres://\u0661@host:5432",
        None,
        42,
    ],
)
def test_invalid_libpq_urls_name_the_field_and_value(url):
    with pytest.raises(ValueError) as info:
        _compute.validate_libpq_url(url, "pageservers[3].libpq_url")
    assert str(info.value).startswith("pageservers[3].libpq_url: ")
    assert repr(url).replace(":secret@", ":********@") in str(info.value)
    assert "secret" not in str(info.value)


def test_invalid_url_message_is_cut():
    with pytest.raises(ValueError) as info:
        _compute.validate_libpq_url("postgres://u@h:1" + "/" * 10_000_000)
    assert len(str(info.value)) < 300 and "10000016 characters" in str(info.value)


def test_stripe_size_from_files_takes_ascii_digits_only():
    settings = _compute.parse_postgresql_conf("neon.pageserver_connstring='a'\nneon.stripe_size = \u0662\u0660\n")
    assert _compute.conf_connection(settings)["stripe_size"] is None
    assert _compute.conf_connection(_compute.parse_postgresql_conf("neon.stripe_size = 20\n"))["stripe_size"] == 20


@pytest.mark.parametrize("body", [{"status": 5}, {}, [], "running"])
def test_status_answer_that_is_not_a_compute_status_is_refused(fake_api, client, body):
    fake_api.add("GET", "/status", body)
    with pytest.raises(NeonAPIError) as info:
        _compute.status(client)
    assert info.value.status == 200 and "is this the right URL" in info.value.message


def test_grpc_url():
    assert _compute.validate_grpc_url("grpc://no_user@h:51051") == "grpc://no_user@h:51051"
    with pytest.raises(ValueError):
        _compute.validate_grpc_url("postgres://no_user@h:51051")


@pytest.mark.parametrize("count", [0, 1, 8, 255])
def test_shard_counts(count):
    assert _compute.validate_shard_count(count) == count


@pytest.mark.parametrize("count", [-1, 256, True, "4", None])
def test_bad_shard_counts(count):
    with pytest.raises(ValueError, match="shard_count"):
        _compute.validate_shard_count(count)


@pytest.mark.parametrize("stripe", [0, -1, 2**32, True, 2048.0])
def test_bad_stripe_sizes(stripe):
    with pytest.raises(ValueError, match="stripe_size"):
        _compute.validate_stripe_size(stripe)


def test_build_unsharded_connection_info():
    info = _compute.build_connection_info([{"node_id": 1, "libpq_url": PS1}], 0, None)
    assert info == {
        "shard_count": 0,
        "stripe_size": None,
        "shards": {"0000": {"pageservers": [{"id": 1, "libpq_url": PS1, "grpc_url": None}]}},
        "prefer_protocol": "libpq",
    }


def test_build_sharded_connection_info_orders_by_shard_number():
    servers = [{"libpq_url": f"postgres://u@h{n}:1"} for n in range(17)]
    info = _compute.build_connection_info(servers, 17, 2048)
    assert sorted(info["shards"]) == sorted(f"{n:02x}11" for n in range(17))
    assert info["shards"]["1011"]["pageservers"][0]["libpq_url"] == "postgres://u@h16:1"
    # Hex shard indexes must not sort as text ("0a11" < "1011" but "0a" is 10).
    assert _compute.connstring_from_connection_info(info) == ",".join(s["libpq_url"] for s in servers)


@pytest.mark.parametrize(
    ("servers", "count", "stripe", "message"),
    [
        ([{"libpq_url": PS1}, {"libpq_url": PS2}], 0, None, "pageservers: 2 entries given, but shard_count 0"),
        ([{"libpq_url": PS1}], 2, 2048, "pageservers: 1 entries given, but shard_count 2"),
        ([{"libpq_url": PS1}], 0, 2048, "shard_stripe_size: must be unset"),
        ([{"libpq_url": PS1}, {"libpq_url": PS2}], 2, None, "shard_stripe_size: required"),
        ([{"libpq_url": PS1, "node_id": -3}], 0, None, "pageservers[0].node_id"),
    ],
)
def test_build_connection_info_rejects(servers, count, stripe, message):
    with pytest.raises(ValueError) as info:
        _compute.build_connection_info(servers, count, stripe)
    assert str(info.value).startswith(message)


def test_grpc_preference_needs_grpc_urls():
    with pytest.raises(ValueError, match=r"pageservers\[0\].grpc_url: required"):
        _compute.build_connection_info([{"libpq_url": PS1}], 0, None, "grpc")
    info = _compute.build_connection_info([{"libpq_url": PS1, "grpc_url": "grpc://u@h:2"}], 0, None, "grpc")
    assert info["prefer_protocol"] == "grpc"


def test_spec_connection_prefers_connection_info_then_legacy_then_settings():
    info = _compute.build_connection_info([{"libpq_url": PS1}, {"libpq_url": PS2}], 2, 8)
    spec = {"pageserver_connection_info": info, "pageserver_connstring": "postgres://u@old:1"}
    assert _compute.spec_connection(spec) == {
        "connstring": f"{PS1},{PS2}",
        "stripe_size": 8,
        "shard_count": 2,
        "source": "pageserver_connection_info",
    }
    legacy = {"pageserver_connstring": f"{PS1}, {PS2}", "shard_stripe_size": 16}
    assert _compute.spec_connection(legacy)["connstring"] == f"{PS1},{PS2}"
    assert _compute.spec_connection(legacy)["stripe_size"] == 16
    settings = {
        "cluster": {
            "settings": [
                {"name": "neon.pageserver_connstring", "value": PS1, "vartype": "string"},
                {"name": "neon.stripe_size", "value": "32", "vartype": "integer"},
            ]
        }
    }
    assert _compute.spec_connection(settings) == {
        "connstring": PS1,
        "stripe_size": 32,
        "shard_count": None,
        "source": "cluster.settings",
    }
    assert _compute.spec_connection({})["source"] is None


def test_apply_connection_info_keeps_present_legacy_fields_only():
    info = _compute.build_connection_info([{"libpq_url": PS1}, {"libpq_url": PS2}], 2, 8)
    spec = {"pageserver_connstring": "postgres://u@old:1", "cluster": {"roles": []}}
    new = _compute.apply_connection_info(spec, info)
    assert new["pageserver_connstring"] == f"{PS1},{PS2}"
    assert "shard_stripe_size" not in new
    assert new["pageserver_connection_info"] == info
    assert spec == {"pageserver_connstring": "postgres://u@old:1", "cluster": {"roles": []}}  # input untouched


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("neon.pageserver_connstring = 'postgres://a@h:1'\n", "postgres://a@h:1"),
        (
            "neon.pageserver_connstring='postgres://a@h:1,postgres://b@h:2' # comment\n",
            "postgres://a@h:1,postgres://b@h:2",
        ),
        ("NEON.PAGESERVER_CONNSTRING 'x'\n", "x"),
        ("neon.pageserver_connstring = 'old'\nneon.pageserver_connstring = 'new'\n", "new"),  # last wins
        ("# neon.pageserver_connstring = 'commented'\n", None),
        ("neon.pageserver_connstring = 'it''s'\n", "it's"),
    ],
)
def test_parse_postgresql_conf(text, expected):
    assert _compute.parse_postgresql_conf(text).get("neon.pageserver_connstring") == expected


def test_conf_connection():
    settings = _compute.parse_postgresql_conf("neon.pageserver_connstring='a,b'\nneon.stripe_size = 2048  # pages\n")
    assert _compute.conf_connection(settings) == {"connstring": "a,b", "stripe_size": 2048, "source": "postgresql.conf"}


def test_redact_spec_and_secrets():
    spec = {
        "storage_auth_token": "tok",
        "cluster": {"roles": [{"name": "r", "encrypted_password": "pw"}, {"name": "s", "encrypted_password": None}]},
    }
    redacted = _compute.redact_spec(spec)
    assert redacted["storage_auth_token"] == "********"
    assert redacted["cluster"]["roles"][0] == {"name": "r", "encrypted_password": "********"}
    assert redacted["cluster"]["roles"][1]["encrypted_password"] is None
    assert spec["storage_auth_token"] == "tok"
    assert _compute.spec_secrets(spec) == {"tok", "pw"}


def test_spec_documents_round_trip_in_their_shape():
    bare = json.dumps({"format_version": 1.0, "spec": "not a wrapper"})
    spec, config, wrapped = _compute.load_spec_document(bare)
    assert (spec["spec"], config, wrapped) == ("not a wrapper", None, False)
    assert json.loads(_compute.dump_spec_document(bare, {"format_version": 2.0})) == {"format_version": 2.0}

    document = json.dumps({"spec": {"format_version": 1.0}, "compute_ctl_config": {"jwks": {"keys": []}}})
    spec, config, wrapped = _compute.load_spec_document(document)
    assert (spec, config, wrapped) == ({"format_version": 1.0}, {"jwks": {"keys": []}}, True)
    rewritten = json.loads(_compute.dump_spec_document(document, {"format_version": 3.0}))
    assert rewritten == {"spec": {"format_version": 3.0}, "compute_ctl_config": {"jwks": {"keys": []}}}


@pytest.mark.parametrize(("text", "message"), [("{", "not valid JSON"), ("[]", "expected a JSON object")])
def test_bad_spec_documents(text, message):
    with pytest.raises(ValueError, match=message):
        _compute.load_spec_document(text, "/x/spec.json")
