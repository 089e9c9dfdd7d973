"""Bootstrap a freshly started fleet: bucket, tenants, timelines, safekeeper timelines, computes, workloads.

Runs after every node is healthy, driving the nodes only through their public (and documented sim-only) APIs,
in the order an operator's control plane would: storcon attach-hook → generation; pageserver location_config
AttachedSingle; wait Active; timelines on the pageserver shards; the timeline on every safekeeper; compute
`/configure`; workload start.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import requests
from botocore.config import Config

from neonsim import _auth, _tls
from neonsim.sharding import TenantShardId, shard_index

log = logging.getLogger("neonsim.bootstrap")

ACTIVE_TIMEOUT_S = 30.0
PG_VERSION = 17
BOOTSTRAP_THREADS = 8


class BootstrapError(RuntimeError):
    pass


def create_bucket(fleet: dict) -> None:
    s3 = fleet["s3"]
    client = boto3.client(
        "s3",
        endpoint_url=s3["moto_url"],
        region_name=s3["region"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        config=Config(retries={"max_attempts": 3}),
    )
    try:
        client.head_bucket(Bucket=s3["bucket"])
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=s3["bucket"])


def tenant_shard_ids(tenant: dict) -> list[tuple[str, int]]:
    """[(tenant_shard_id, shard_number)] in shard order."""
    return [(str(sid), sid.shard_number) for sid in TenantShardId.shards_of(tenant["tenant_id"], tenant["shard_count"])]


class _Api:
    """Tiny JSON client with fleet tokens; raises BootstrapError with the server's answer."""

    def __init__(self, fleet: dict):
        self.fleet = fleet
        self.http = requests.Session()
        # verify= on each call: requests lets REQUESTS_CA_BUNDLE override a session-level verify.
        self.verify = _tls.requests_verify(fleet)
        auth = fleet["auth"]
        self.tokens = _auth.service_tokens(auth["private_key_pem_path"]) if auth["enabled"] else {}

    def url(self, entry: dict) -> str:
        """Base URL of a node's API (https:// in a TLS fleet, trusted through the fleet CA)."""
        return _tls.api_url(self.fleet, entry)

    def call(self, method: str, url: str, service: str, body=None, expected=(200,), params=None):
        headers = {"Authorization": f"Bearer {self.tokens[service]}"} if self.tokens else {}
        resp = self.http.request(method, url, json=body, headers=headers, params=params, timeout=60, verify=self.verify)
        if resp.status_code not in expected:
            raise BootstrapError(f"{method} {url}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None


def _ps(fleet: dict, name: str) -> dict:
    return next(p for p in fleet["pageservers"] if p["name"] == name)


def attach_tenant(api: _Api, fleet: dict, tenant: dict) -> dict[str, dict]:
    """Attach every shard, create the timelines; returns {timeline_id: TimelineInfo of shard 0}."""
    storcon = api.url(fleet["storage_controller"])
    shards = tenant_shard_ids(tenant)
    for tsid, number in shards:
        ps = _ps(fleet, tenant["pageservers"][number])
        gen = api.call(
            "POST",
            f"{storcon}/debug/v1/attach-hook",
            "storcon",
            {"tenant_shard_id": tsid, "node_id": ps["node_id"], "stripe_size": tenant["stripe_size"]},
        )["gen"]
        api.call(
            "PUT",
            f"{api.url(ps)}/v1/tenant/{tsid}/location_config",
            "pageserver",
            {
                "mode": "AttachedSingle",
                "generation": gen,
                "secondary_conf": None,
                "shard_number": number,
                "shard_count": tenant["shard_count"],
                "shard_stripe_size": tenant["stripe_size"],
                "tenant_conf": tenant.get("tenant_conf") or {},
            },
        )
    for tsid, number in shards:
        wait_active(api, _ps(fleet, tenant["pageservers"][number]), tsid)
    infos = {}
    for timeline in tenant["timelines"]:
        body = {"new_timeline_id": timeline["timeline_id"], "pg_version": PG_VERSION}
        if timeline["ancestor_timeline_id"]:
            body["ancestor_timeline_id"] = timeline["ancestor_timeline_id"]
            if timeline.get("ancestor_lsn"):
                body["ancestor_start_lsn"] = timeline["ancestor_lsn"]
        # Shard 0 first, as upstream's controller does.
        for tsid, number in shards:
            info = api.call(
                "POST",
                f"{api.url(_ps(fleet, tenant['pageservers'][number]))}/v1/tenant/{tsid}/timeline",
                "pageserver",
                body,
                expected=(200, 201),
            )
            if number == 0:
                infos[timeline["timeline_id"]] = info
    if tenant.get("synthetic"):
        for tsid, number in shards:
            ps = _ps(fleet, tenant["pageservers"][number])
            resp = api.http.post(
                f"{api.url(ps)}/sim/tenant/{tsid}/synthetic",
                json=tenant["synthetic"],
                timeout=60,
                verify=api.verify,
                headers={"Authorization": f"Bearer {api.tokens['pageserver']}"} if api.tokens else {},
            )
            if resp.status_code == 404 and "page not found" in resp.text:
                log.warning("pageserver %s has no /sim/tenant/{tsid}/synthetic yet; synthetic data skipped", ps["name"])
                break
            if resp.status_code != 200:
                raise BootstrapError(f"synthetic data for {tsid}: HTTP {resp.status_code}: {resp.text[:300]}")
    return infos


def wait_active(api: _Api, ps: dict, tsid: str, timeout: float = ACTIVE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        info = api.call("GET", f"{api.url(ps)}/v1/tenant/{tsid}", "pageserver", expected=(200, 404, 503))
        state = (info or {}).get("state") if isinstance(info, dict) else None
        slug = state.get("slug") if isinstance(state, dict) else state
        if slug == "Active":
            return
        if slug == "Broken":
            raise BootstrapError(f"{tsid} on {ps['name']} is Broken: {state}")
        time.sleep(0.1)
    raise BootstrapError(f"{tsid} on {ps['name']} not Active after {timeout}s (last state {state})")


def create_safekeeper_timelines(api: _Api, fleet: dict, tenant: dict, infos: dict[str, dict]) -> None:
    members = [{"id": sk["node_id"], "host": "127.0.0.1", "pg_port": sk["pg_port"]} for sk in fleet["safekeepers"]]
    for timeline in tenant["timelines"]:
        info = infos.get(timeline["timeline_id"]) or {}
        start_lsn = info.get("last_record_lsn") or info.get("initdb_lsn") or "0/0"
        body = {
            "tenant_id": tenant["tenant_id"],
            "timeline_id": timeline["timeline_id"],
            "mconf": {"generation": 1, "members": members, "new_members": None},
            "pg_version": PG_VERSION * 10000,
            "system_id": None,
            "wal_seg_size": None,
            "start_lsn": start_lsn,
            "commit_lsn": None,
        }
        for sk in fleet["safekeepers"]:
            api.call("POST", f"{api.url(sk)}/v1/tenant/timeline", "safekeeper", body, expected=(200, 201))


def compute_spec(fleet: dict, compute: dict) -> dict:
    """ComputeSpec for a compute (upstream `libs/compute_api/src/spec.rs`): pageserver_connection_info plus the
    matching legacy fields."""
    tenant = next(t for t in fleet["tenants"] if t["tenant_id"] == compute["tenant_id"])
    count = tenant["shard_count"]
    shards = {}
    urls = []
    for _, number in tenant_shard_ids(tenant):
        ps = _ps(fleet, tenant["pageservers"][number])
        url = f"postgres://no_user@127.0.0.1:{ps['pg_port']}"
        urls.append(url)
        shards[shard_index(number, count)] = {
            "pageservers": [{"id": ps["node_id"], "libpq_url": url, "grpc_url": None}]
        }
    stripe = tenant["stripe_size"] if count else None
    spec = {
        "format_version": 1.0,
        "cluster": {
            "cluster_id": compute["compute_id"],
            "name": compute["name"],
            "roles": [],
            "databases": [],
            "settings": [],
        },
        "suspend_timeout_seconds": -1,
        "tenant_id": compute["tenant_id"],
        "timeline_id": compute["timeline_id"],
        "mode": "Primary",
        "skip_pg_catalog_updates": True,
        "pageserver_connection_info": {
            "shard_count": count,
            "stripe_size": stripe,
            "shards": shards,
            "prefer_protocol": "libpq",
        },
        "pageserver_connstring": ",".join(urls),
        "shard_stripe_size": stripe,
        "safekeeper_connstrings": [f"127.0.0.1:{sk['pg_port']}" for sk in fleet["safekeepers"]],
        "safekeepers_generation": 1,
    }
    if fleet["auth"]["enabled"]:
        spec["storage_auth_token"] = _auth.mint_token(
            fleet["auth"]["private_key_pem_path"], "tenant", compute["tenant_id"]
        )
    return spec


def compute_ctl_config(fleet: dict) -> dict:
    keys = [_auth.public_jwk(fleet["auth"]["public_key_pem_path"])] if fleet["auth"]["enabled"] else []
    return {"jwks": {"keys": keys}, "tls": None}


def configure_compute(api: _Api, fleet: dict, compute: dict) -> None:
    body = {"spec": compute_spec(fleet, compute), "compute_ctl_config": compute_ctl_config(fleet)}
    api.call("POST", f"{api.url(compute)}/configure", "compute", body)
    workload = compute.get("workload") or {}
    if workload.get("enabled"):
        settings = {k: v for k, v in workload.items() if k != "enabled"}
        api.call("POST", f"{api.url(compute)}/sim/workload", "compute", {"action": "start", **settings})


def bootstrap(fleet: dict) -> None:
    if not fleet.get("tenants") and not fleet.get("computes"):
        return
    api = _Api(fleet)
    started = time.monotonic()
    real = [t for t in fleet["tenants"] if not t.get("synthetic")]
    synthetic = [t for t in fleet["tenants"] if t.get("synthetic")]

    def one(tenant):
        infos = attach_tenant(api, fleet, tenant)
        if not tenant.get("synthetic") and fleet["safekeepers"]:
            create_safekeeper_timelines(api, fleet, tenant, infos)

    for tenant in real:
        one(tenant)
    if synthetic:
        with ThreadPoolExecutor(BOOTSTRAP_THREADS) as pool:
            list(pool.map(one, synthetic))
    for compute in fleet["computes"]:
        configure_compute(api, fleet, compute)
    log.info(
        "bootstrapped %d tenants, %d computes in %.1fs",
        len(fleet["tenants"]),
        len(fleet["computes"]),
        time.monotonic() - started,
    )
