"""Hostile input never reaches a server (issue 9).

Each case runs one module with one bad option against a fake server that answers every route like a healthy
fleet (``lenient_fleet``), so a module that let the input through would go on and send requests. Every case
must end in a clear failure whose message names the option, without a traceback (the module exits through
fail_json), without any request at all, with a message of readable size and without the token.

Classes: ids, LSNs, URLs, numbers, enums, combinations, sizes, types, encodings.
"""

from __future__ import annotations

import pytest
from ansible.module_utils.common.parameters import PASS_VARS
from ansible_collections.neonops.storage.plugins.modules import (
    compute_info,
    compute_pageserver,
    heatmap_upload,
    pageserver_info,
    safekeeper_timeline_info,
    secondary_download,
    storcon_node,
    storcon_node_info,
    storcon_tenant_info,
    storcon_tenant_policy,
    tenant_config,
    tenant_generation,
    tenant_info,
    tenant_location,
    timeline,
    timeline_catchup,
)
from ansible_collections.neonops.storage.tests.unit.conftest import (
    SECRET_TOKEN,
    TENANT_ID,
    TIMELINE_ID,
    TIMELINE_ID_2,
)
from ansible_collections.neonops.storage.tests.unit.lenient_fleet import NODE_ADDRESSES, lenient_fleet

PS_URL = "postgres://no_user@127.0.0.1:64001"
SPEC = {
    "format_version": 1.0,
    "cluster": {"roles": [], "databases": [], "settings": []},
    "tenant_id": TENANT_ID,
    "timeline_id": TIMELINE_ID,
    "pageserver_connection_info": {
        "shard_count": 0,
        "stripe_size": None,
        "shards": {"0000": {"pageservers": [{"id": 1, "libpq_url": "postgres://no_user@127.0.0.1:64000"}]}},
        "prefer_protocol": "libpq",
    },
}
MB10 = 10 * 1024 * 1024
MAX_MESSAGE = 2100

# Valid arguments for each module (besides api_url and api_token); against lenient_fleet each of these runs
# succeeds, and the mutating modules send their mutating request (test_base_arguments_reach_the_server).
BASE = {
    pageserver_info: {},
    tenant_info: {"tenant_shard_id": TENANT_ID},
    tenant_location: {"tenant_shard_id": TENANT_ID, "mode": "AttachedSingle", "generation": 5},
    tenant_config: {"tenant_shard_id": TENANT_ID, "overrides": {"heatmap_period": "60s"}},
    heatmap_upload: {"tenant_shard_id": TENANT_ID},
    secondary_download: {"tenant_shard_id": TENANT_ID},
    timeline: {"tenant_shard_id": TENANT_ID, "timeline_id": TIMELINE_ID_2, "ancestor_timeline_id": TIMELINE_ID},
    timeline_catchup: {"tenant_shard_id": TENANT_ID, "target_lsns": {TIMELINE_ID: "0/10"}},
    tenant_generation: {"tenant_shard_id": TENANT_ID, "node_id": 2},
    storcon_node: {"node_id": 2, **NODE_ADDRESSES},
    storcon_node_info: {"node_id": 2},
    storcon_tenant_info: {"tenant_id": TENANT_ID},
    storcon_tenant_policy: {"tenant_id": TENANT_ID, "scheduling": "Stop"},
    safekeeper_timeline_info: {"tenant_id": TENANT_ID, "timeline_id": TIMELINE_ID},
    compute_info: {},
    compute_pageserver: {
        "spec": SPEC,
        "compute_ctl_config": {"jwks": {"keys": []}},
        "pageservers": [{"node_id": 2, "libpq_url": PS_URL}],
    },
}
MUTATING = {tenant_location, tenant_config, heatmap_upload, secondary_download, timeline, tenant_generation}
MUTATING |= {storcon_tenant_policy, compute_pageserver}


def name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


# Runs a test once per module of BASE, named after the module.
EACH_MODULE = pytest.mark.parametrize("module", list(BASE), ids=[name(module) for module in BASE])


def base_args(api, module, **extra) -> dict:
    """The connection to ``api`` and the module's valid BASE arguments, with ``extra`` on top."""
    return {"api_url": api.url, "api_token": SECRET_TOKEN, **BASE[module], **extra}


class Case:
    def __init__(self, case_id, module, field, env=None, **args):
        self.id, self.module, self.field, self.env, self.args = case_id, module, field, env or {}, args


CASES = [
    # ---- ids -----------------------------------------------------------------------------------------------
    Case("id-newline-timeline", timeline, "timeline_id", timeline_id=TIMELINE_ID_2 + "\n"),
    Case("id-newline-policy", storcon_tenant_policy, "tenant_id", tenant_id=TENANT_ID + "\n"),
    Case("id-newline-shard", tenant_location, "tenant_shard_id", tenant_shard_id=TENANT_ID + "-0001\n"),
    Case("id-newline-ancestor", timeline, "ancestor_timeline_id", ancestor_timeline_id=TIMELINE_ID + "\n"),
    Case("id-newline-catchup-timelines", timeline_catchup, "timelines", timelines=[TIMELINE_ID + "\n"]),
    Case("id-newline-target-key", timeline_catchup, "target_lsns", target_lsns={TIMELINE_ID + "\n": "0/10"}),
    Case("id-newline-safekeeper", safekeeper_timeline_info, "timeline_id", timeline_id=TIMELINE_ID + "\n"),
    Case("id-nul-tenant-info", tenant_info, "tenant_shard_id", tenant_shard_id=TENANT_ID[:16] + "\x00" + "0" * 15),
    Case("id-nul-timeline", timeline, "timeline_id", timeline_id=TIMELINE_ID_2 + "\x00"),
    Case("id-short", tenant_config, "tenant_shard_id", tenant_shard_id=TENANT_ID[:31]),
    Case("id-non-hex", heatmap_upload, "tenant_shard_id", tenant_shard_id="g" * 32),
    Case("id-path-traversal", heatmap_upload, "tenant_shard_id", tenant_shard_id="../../v1/tenant/" + TENANT_ID),
    Case("id-slash-shard", secondary_download, "tenant_shard_id", tenant_shard_id=TENANT_ID + "/0001"),
    Case("id-shard-number-above-count", tenant_location, "tenant_shard_id", tenant_shard_id=TENANT_ID + "-0401"),
    Case("id-shard-count-zero", tenant_generation, "tenant_shard_id", tenant_shard_id=TENANT_ID + "-0100"),
    Case("id-shard-on-safekeeper", safekeeper_timeline_info, "tenant_id", tenant_id=TENANT_ID + "-0001"),
    Case("id-shard-on-storcon", storcon_tenant_info, "tenant_id", tenant_id=TENANT_ID + "-0001"),
    Case("id-timeline-is-itself", timeline, "ancestor_timeline_id", ancestor_timeline_id=TIMELINE_ID_2),
    # ---- LSNs ----------------------------------------------------------------------------------------------
    Case("lsn-three-parts", timeline, "ancestor_start_lsn", ancestor_start_lsn="1/2/3"),
    Case("lsn-half-overflow", timeline, "ancestor_start_lsn", ancestor_start_lsn="100000000/0"),
    Case("lsn-negative", timeline, "ancestor_start_lsn", ancestor_start_lsn="-1/0"),
    Case("lsn-0x-prefix", timeline, "ancestor_start_lsn", ancestor_start_lsn="0x1/0"),
    Case("lsn-int-above-u64", timeline_catchup, "target_lsns", target_lsns={TIMELINE_ID: 1 << 64}),
    Case("lsn-int-negative", timeline_catchup, "target_lsns", target_lsns={TIMELINE_ID: -1}),
    Case("lsn-boolean", timeline_catchup, "target_lsns", target_lsns={TIMELINE_ID: True}),
    Case("lsn-without-ancestor", timeline, "ancestor_start_lsn", ancestor_timeline_id=None, ancestor_start_lsn="0/1"),
    # ---- URLs ----------------------------------------------------------------------------------------------
    Case("url-label-64", tenant_info, "api_url", api_url="http://" + "a" * 64 + ".example:9898"),
    Case("url-host-254", tenant_info, "api_url", api_url="http://" + ("a" * 50 + ".") * 5 + "example:9898"),
    Case("url-userinfo", tenant_location, "api_url", api_url="http://admin:s3cr3t-pw@127.0.0.1:9898"),
    Case("url-scheme", pageserver_info, "api_url", api_url="ftp://127.0.0.1:9898"),
    Case("url-port", storcon_node_info, "api_url", api_url="http://127.0.0.1:99999"),
    Case("url-port-zero", storcon_node_info, "api_url", api_url="http://127.0.0.1:0"),
    Case("url-query", storcon_tenant_policy, "api_url", api_url="http://127.0.0.1:1234/?tenant=x"),
    Case("url-newline", tenant_config, "api_url", api_url="http://127.0.0.1:9898\n"),
    Case("url-inner-space", tenant_config, "api_url", api_url="http://127.0.0.1 :9898"),
    Case("url-no-host", heatmap_upload, "api_url", api_url="http://"),
    Case("url-source", timeline_catchup, "source_api_url", target_lsns=None, source_api_url="http://a b"),
    Case(
        "url-safekeeper-list",
        safekeeper_timeline_info,
        "safekeeper_urls[1]",
        safekeeper_urls=["http://127.0.0.1:1", "x"],
    ),
    Case("url-catchup-safekeeper", timeline_catchup, "safekeeper_urls[0]", target_lsns=None, safekeeper_urls=["sk:1"]),
    Case(
        "url-ca-path-missing",
        tenant_location,
        "ca_path",
        api_url="https://127.0.0.1:9898",
        ca_path="/nonexistent/ca.pem",
    ),
    Case(
        "url-libpq-newline", compute_pageserver, "pageservers[0].libpq_url", pageservers=[{"libpq_url": PS_URL + "\n"}]
    ),
    Case(
        "url-libpq-label-64",
        compute_pageserver,
        "pageservers[0].libpq_url",
        pageservers=[{"libpq_url": f"postgres://u@{'a' * 64}:5432"}],
    ),
    Case(
        "url-grpc",
        compute_pageserver,
        "pageservers[0].grpc_url",
        pageservers=[{"libpq_url": PS_URL, "grpc_url": "http://x:1"}],
    ),
    # ---- numbers -------------------------------------------------------------------------------------------
    Case("num-timeout-nan", tenant_info, "timeout", timeout="nan"),
    Case("num-timeout-inf", tenant_location, "timeout", timeout="inf"),
    Case("num-timeout-1e10", timeline, "timeout", timeout=1e10),
    Case("num-timeout-env-nan", tenant_info, "timeout", env={"NEONOPS_TIMEOUT": "nan"}),
    Case("num-timeout-env-huge", tenant_config, "timeout", env={"NEONOPS_TIMEOUT": "1e10"}),
    Case("num-timeout-env-newline", tenant_location, "timeout (from NEONOPS_TIMEOUT)", env={"NEONOPS_TIMEOUT": "30\n"}),
    Case("num-timeout-env-digits", tenant_config, "timeout (from NEONOPS_TIMEOUT)", env={"NEONOPS_TIMEOUT": "\u0663"}),
    Case(
        "num-suboption-node-id-newline",
        compute_pageserver,
        "pageservers[0].node_id",
        pageservers=[{"node_id": "2\n", "libpq_url": PS_URL}],
    ),
    Case("num-timeout-zero", pageserver_info, "timeout", timeout=0),
    Case("num-retries-negative", tenant_location, "retries", retries=-1),
    Case("num-retries-1e30", tenant_location, "retries", retries=1e30),
    Case("num-retries-boolean", storcon_tenant_policy, "retries", retries=True),
    Case("num-flush-ms-1e13", tenant_location, "flush_ms", mode="AttachedStale", flush_ms=1e13),
    Case("num-flush-ms-negative", tenant_location, "flush_ms", flush_ms=-1),
    Case("num-generation-boolean", tenant_location, "generation", generation=True),
    Case("num-generation-above-u32", tenant_location, "generation", generation=1 << 32),
    Case("num-pg-version-boolean", timeline, "pg_version", ancestor_timeline_id=None, pg_version=True),
    Case("num-pg-version-zero", timeline, "pg_version", ancestor_timeline_id=None, pg_version=0),
    Case("num-node-id-boolean", tenant_generation, "node_id", node_id=True),
    Case("num-node-id-negative", storcon_node_info, "node_id", node_id=-1),
    Case("num-node-id-above-u64", tenant_generation, "node_id", node_id=1 << 64),
    Case("num-wait-timeout-negative", tenant_location, "wait_timeout", wait_timeout=-1),
    Case("num-wait-timeout-nan", timeline, "wait_timeout", wait_timeout="nan"),
    Case("num-download-timeout-negative", secondary_download, "download_timeout", download_timeout=-1),
    Case("num-wait-ms-huge", secondary_download, "wait_ms", wait_ms=1e13),
    Case("num-deadline-inf", timeline_catchup, "deadline", deadline="inf"),
    Case("num-poll-interval-negative", compute_pageserver, "poll_interval", poll_interval=-1),
    Case("num-shard-stripe-above-u32", tenant_location, "shard_stripe_size", shard_stripe_size=1 << 32),
    Case("num-stripe-zero", compute_pageserver, "stripe_size", shard_count=1, stripe_size=0),
    Case("num-shard-count-256", compute_pageserver, "shard_count", shard_count=256),
    Case("num-shard-number-boolean", tenant_location, "shard_number", shard_number=True),
    Case(
        "num-pageserver-node-boolean",
        compute_pageserver,
        "pageservers[0].node_id",
        pageservers=[{"node_id": True, "libpq_url": PS_URL}],
    ),
    # ---- enums ---------------------------------------------------------------------------------------------
    Case("enum-mode-case", tenant_location, "mode", mode="attachedsingle"),
    Case("enum-scheduling-case", storcon_tenant_policy, "scheduling", scheduling="stop"),
    Case("enum-background-ops", tenant_config, "background_ops", background_ops="paused"),
    Case("enum-state", timeline, "state", state="deleted"),
    Case("enum-prefer-protocol", compute_pageserver, "prefer_protocol", prefer_protocol="http"),
    # ---- combinations --------------------------------------------------------------------------------------
    Case("combo-generation-secondary", tenant_location, "generation", mode="Secondary"),
    Case("combo-secondary-conf-attached", tenant_location, "secondary_conf", secondary_conf={"warm": True}),
    Case("combo-shard-number-mismatch", tenant_location, "shard_number", shard_number=1),
    Case("combo-targets-and-source", timeline_catchup, "source_api_url", source_api_url="http://127.0.0.1:1"),
    Case("combo-spec-and-path", compute_pageserver, "spec_path", spec_path="/tmp/spec.json"),
    Case(
        "combo-too-many-pageservers",
        compute_pageserver,
        "pageservers",
        shard_count=0,
        pageservers=[{"libpq_url": PS_URL}] * 2,
    ),
    Case("combo-tenant-id-override", tenant_config, "overrides", overrides={"tenant_id": TENANT_ID}),
    # ---- sizes ---------------------------------------------------------------------------------------------
    Case("size-id-10mb", tenant_info, "tenant_shard_id", tenant_shard_id="a" * MB10),
    Case("size-url-10mb", tenant_info, "api_url", api_url="http://" + "a" * MB10),
    Case("size-duration-10mb", tenant_config, "overrides", overrides={"gc_period": "1" * MB10 + "h"}),
    Case(
        "size-tenant-conf-value-10mb",
        tenant_location,
        "tenant_conf",
        tenant_conf={"image_creation_threshold": "x" * MB10},
    ),
    Case("size-overrides-value-10mb", tenant_config, "overrides", overrides={"some_key": "x" * MB10}),
    Case("size-token-10mb", tenant_info, "api_token", api_token="t" * MB10),
    Case("size-remove-list", tenant_config, "remove", remove=["gc_period"] * 100_000),
    Case(
        "size-safekeeper-list",
        safekeeper_timeline_info,
        "safekeeper_urls",
        safekeeper_urls=["http://127.0.0.1:1"] * 5000,
    ),
    Case("size-mode-10mb", tenant_location, "mode", mode="A" * MB10),
    # ---- types ---------------------------------------------------------------------------------------------
    Case("type-pageservers-string", compute_pageserver, "pageservers", pageservers=PS_URL),
    Case("type-pageservers-strings", compute_pageserver, "pageservers", pageservers=[PS_URL]),
    Case("type-tenant-conf-list", tenant_location, "tenant_conf", tenant_conf=["gc_period"]),
    Case("type-duration-dict", tenant_location, "tenant_conf.gc_period", tenant_conf={"gc_period": {"secs": 1}}),
    Case(
        "type-warm-text", tenant_location, "warm", mode="Secondary", generation=None, secondary_conf={"warm": "maybe"}
    ),
    Case("type-target-lsns-list", timeline_catchup, "target_lsns", target_lsns=["0/10"]),
    Case("type-tenant-id-list", storcon_tenant_info, "tenant_id", tenant_id=[TENANT_ID]),
    Case("type-generation-text", tenant_location, "generation", generation="five"),
    Case("type-node-id-float", storcon_node_info, "node_id", node_id=1.5),
    Case("type-conf-nan", tenant_location, "tenant_conf", tenant_conf={"checkpoint_distance": float("nan")}),
    # ---- encodings -----------------------------------------------------------------------------------------
    Case("enc-arabic-digit-duration", tenant_config, "overrides.gc_period", overrides={"gc_period": "\u0661h"}),
    Case("enc-fullwidth-unit", tenant_config, "overrides.gc_period", overrides={"gc_period": "1\uff48"}),
    Case("enc-duration-newline", tenant_config, "overrides.gc_period", overrides={"gc_period": "1h\n"}),
    Case(
        "enc-duration-leading-space",
        tenant_location,
        "tenant_conf.pitr_interval",
        tenant_conf={"pitr_interval": " 7days"},
    ),
    Case("enc-fullwidth-id", storcon_tenant_policy, "tenant_id", tenant_id="\uff11" * 32),
    Case(
        "enc-zero-width-id", tenant_info, "tenant_shard_id", tenant_shard_id=TENANT_ID[:16] + "\u200b" + TENANT_ID[16:]
    ),
    Case("enc-combining-id", timeline, "timeline_id", timeline_id=TIMELINE_ID_2[:31] + "a\u0301"),
    Case("enc-arabic-digit-lsn", timeline, "ancestor_start_lsn", ancestor_start_lsn="\u0660/\u0661"),
    Case("enc-zero-width-url", tenant_info, "api_url", api_url="http://127.0.0.1\u200b:9898"),
    Case("enc-rtl-override-url", pageserver_info, "api_url", api_url="http://ps\u202e1.internal:9898"),
    Case("enc-idn-host", pageserver_info, "api_url", api_url="http://\u043f\u0441.example:9898"),
    Case("enc-nul-override-key", tenant_config, "overrides", overrides={"gc\x00period": "1h"}),
    Case("enc-nul-token", tenant_info, "api_token", api_token="tok\x00en"),
]

# ---- storcon_node's addresses: every port and host field, each bad in the same ways ---------------------------
NODE_PORT_FIELDS = ("listen_http_port", "listen_https_port", "listen_pg_port", "listen_grpc_port")
NODE_HOST_FIELDS = ("listen_http_addr", "listen_pg_addr", "listen_grpc_addr")
BAD_PORTS = {
    "zero": 0,
    "65536": 65536,
    "boolean": True,
    "newline": "80\n",
    "negative": -1,
    "arabic-digits": "\u0668\u0660",
}
BAD_HOSTS = {
    "space": "ps2 .internal",
    "nul": "ps2\x00.internal",
    "300-chars": "a" * 300,
    "url": "http://ps2.internal:9898",
    "with-port": "ps2.internal:9898",
    "newline": "ps2.internal\n",
    "label-64": "a" * 64 + ".internal",
    "empty": "",
    "bare-ipv6": "fd00::4",
    "ipv6-zone": "[fe80::1%eth0]",
    "bracketed-name": "[ps2.internal]",
}
BAD_ZONES = {"space": "us east-1b", "nul": "az\x00a", "300-chars": "a" * 300, "newline": "az-a\n", "empty": ""}
CASES += [
    Case(f"node-{field}-{kind}", storcon_node, field, **{field: value})
    for field in NODE_PORT_FIELDS
    for kind, value in BAD_PORTS.items()
]
CASES += [
    Case(f"node-{field}-{kind}", storcon_node, field, **{field: value})
    for field in NODE_HOST_FIELDS
    for kind, value in BAD_HOSTS.items()
]
CASES += [
    Case(f"node-availability_zone_id-{kind}", storcon_node, "availability_zone_id", availability_zone_id=value)
    for kind, value in BAD_ZONES.items()
]
CASES += [
    Case("node-id-boolean", storcon_node, "node_id", node_id=True),
    Case("node-id-newline", storcon_node, "node_id", node_id="2\n"),
    Case("node-wait-timeout-nan", storcon_node, "wait_timeout", wait_available=True, wait_timeout="nan"),
]


def run_case(case, fake_api, run_module, monkeypatch):
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    fake_api.fallback = lenient_fleet
    args = {key: value for key, value in base_args(fake_api, case.module, **case.args).items() if value is not None}
    return run_module(case.module, args)


def test_there_are_enough_cases():
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input_fails_clearly_before_any_request(fake_api, run_module, monkeypatch, case):
    run = run_case(case, fake_api, run_module, monkeypatch)  # a traceback would escape run_module and fail here
    assert run.failed, f"{case.id}: accepted: {str(run.result)[:500]}"
    message = run["msg"]
    assert case.field in message, f"{case.id}: message does not name {case.field}: {message[:500]}"
    assert len(message) < MAX_MESSAGE, f"{case.id}: message of {len(message)} characters"
    assert not run.changed
    assert fake_api.mutating_requests == [], [(r.method, r.path) for r in fake_api.mutating_requests]
    assert fake_api.requests == [], [(r.method, r.path) for r in fake_api.requests]
    assert SECRET_TOKEN not in run.raw
    assert "s3cr3t-pw" not in message and "s3cr3t-pw" not in str(run.get("url"))


@EACH_MODULE
def test_base_arguments_reach_the_server(fake_api, run_module, module):
    """The fleet accepts the base arguments, so each failure above comes from the one hostile option."""
    fake_api.fallback = lenient_fleet
    run = run_module(module, base_args(fake_api, module))
    if module is safekeeper_timeline_info:  # the fleet's timeline route is the pageserver's 404
        assert run.failed and "quorum needs 1" in run["msg"]
    elif module is timeline_catchup:  # the fleet's timeline is at 0/16960E8, past the target
        assert not run.failed and run["reached"], run.result
    else:
        assert not run.failed, run.result
    assert bool(fake_api.mutating_requests) == (module in MUTATING), [(r.method, r.path) for r in fake_api.requests]


# ---- the invocation Ansible echoes at -vvv ---------------------------------------------------------------------

CANARIES = {option: f"canary-{option}-9d1e" for option in ("api_token", "source_api_token", "safekeeper_api_token")}


def vvv(args: dict) -> dict:
    """What ansible-playbook -vvv asks of a module: its invocation (module_args) in the result."""
    if "inject_invocation" in PASS_VARS:  # ansible-core >= 2.20 adds it on request; older cores always
        args["_ansible_inject_invocation"] = True
    return args


def tokens_for(module) -> dict:
    tokens = {"api_token": CANARIES["api_token"]}
    if module is timeline_catchup:
        tokens.update(
            source_api_token=CANARIES["source_api_token"], safekeeper_api_token=CANARIES["safekeeper_api_token"]
        )
    return tokens


@EACH_MODULE
def test_invocation_at_vvv_never_carries_a_token(fake_api, run_module, module):
    fake_api.fallback = lenient_fleet
    tokens = tokens_for(module)
    run = run_module(module, vvv(base_args(fake_api, module, **tokens)))
    module_args = run["invocation"]["module_args"]
    for option, token in tokens.items():
        assert token not in run.raw, f"{option} in the output"
        assert module_args[option] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", option


@EACH_MODULE
def test_a_huge_value_is_cut_in_our_messages_at_vvv(fake_api, run_module, module):
    """Ansible's invocation repeats the arguments as given; what the module itself says is cut."""
    fake_api.fallback = lenient_fleet
    field = next((f for f in ("tenant_shard_id", "tenant_id") if f in BASE[module]), "api_url")
    huge = "f" * (1 << 20) if field != "api_url" else "http://" + "a" * (1 << 20)  # 1 MB: over every cap
    run = run_module(module, vvv(base_args(fake_api, module, **tokens_for(module), **{field: huge})))
    assert run.failed and run["msg"].startswith(field), run["msg"][:300]
    assert len(run["msg"]) < MAX_MESSAGE
    ours = {key: value for key, value in run.result.items() if key != "invocation"}
    assert len(str(ours)) < 20_000, f"{len(str(ours))} characters besides the invocation"
    assert fake_api.requests == []
    assert not any(token in run.raw for token in CANARIES.values())
