"""Topology YAML → fleet.json (contracts §5.1).

A topology names the nodes and tenants; `resolve()` fills in ports (free on 127.0.0.1), node ids, tenant and
timeline ids (deterministic from `seed` when not given) and shard placement. Every group may be empty or
absent (a lone storage controller is a valid fleet). Shape::

    seed: 1                       # id generator seed
    auth: false                   # JWT auth on every node (`up --auth` forces it on)
    tls: false                    # every node's API port serves HTTPS with a fleet CA (`up --tls` forces it on)
    s3: {bucket: neon-sim, region: us-east-1}
    prefix_in_bucket: pageserver/ # default for every pageserver; a pageserver may override it
    storage_controller: {name: storcon, heartbeat_interval_s: 5, offline_after_s: 30}   # or null for none
    pageservers:  [{name: ps1, az: az-a, disk_capacity_bytes: N, prefix_in_bucket: ...}, ...]  # or a count
    safekeepers:  [{name: sk1, az: az-a}, ...]                                                # or a count
    tenant_defaults: {checkpoint_distance: 65536, ...}    # merged over the scaled-down defaults
    tenants:
      - name: branched
        tenant_id: <32 hex>        # optional
        shard_count: 0             # 0 = unsharded; N = N shards
        stripe_size: 2048
        pageservers: [ps1]         # optional: one per shard (default round-robin over pageservers)
        tenant_conf: {}
        timelines:                 # optional; default one timeline named main
          - {name: main}
          - {name: child, parent: main, ancestor_lsn: null}   # null: branch at the parent's last record
    synthetic: {count: 1000, size_bytes_range: [1048576, 67108864], layers: 8}   # scale-test tenants
    computes:
      - {name: compute1, tenant: plain, timeline: main, workload: {enabled: true, write_rate: 20}}
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import yaml

from neonsim import _tls

TOPOLOGY_DIR = Path(__file__).parent / "topologies"

DEFAULT_TENANT_DEFAULTS = {
    "checkpoint_distance": 65536,
    "checkpoint_timeout": "2s",
    "compaction_period": "2s",
    "compaction_threshold": 4,
    "gc_period": "5s",
    "gc_horizon": 65536,
    "pitr_interval": "0s",
    "lsn_lease_length": "0s",
    "heatmap_period": "0s",
}
DEFAULT_WORKLOAD = {"enabled": False, "write_rate": 20, "read_rate": 20, "keys": 200}
DEFAULT_DISK_CAPACITY = 10 * 1024**3
DEFAULT_STRIPE_SIZE = 2048
SAFEKEEPER_ID_BASE = 100


class TopologyError(ValueError):
    pass


def find_topology(name_or_path: str | Path) -> Path:
    """A path, or the name of a bundled topology (`default`, `small`, with or without `.yml`)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    for candidate in (TOPOLOGY_DIR / f"{name_or_path}.yml", TOPOLOGY_DIR / str(name_or_path)):
        if candidate.exists():
            return candidate
    raise TopologyError(f"topology not found: {name_or_path}")


def load_topology(name_or_path: str | Path) -> dict:
    data = yaml.safe_load(find_topology(name_or_path).read_text()) or {}
    if not isinstance(data, dict):
        raise TopologyError("topology must be a YAML mapping")
    return data


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all sockets held open until every port is picked)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _hex_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _node_list(value, prefix: str) -> list[dict]:
    """Accept a list of node dicts, a count, or nothing."""
    if value is None:
        return []
    if isinstance(value, int):
        return [{"name": f"{prefix}{i + 1}"} for i in range(value)]
    if not isinstance(value, list):
        raise TopologyError(f"{prefix} group must be a list or a count")
    out = []
    for i, item in enumerate(value):
        item = dict(item or {})
        item.setdefault("name", f"{prefix}{i + 1}")
        out.append(item)
    return out


def _check_hex32(value, what: str) -> str:
    text = str(value).lower()
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise TopologyError(f"{what} must be 32 hex characters, got {value!r}")
    return text


def resolve(topology: dict, directory: str | Path, auth: bool | None = None, tls: bool | None = None) -> dict:
    """The fleet.json document for a topology; ports are freshly picked. `auth`/`tls` override the topology's."""
    directory = Path(directory).resolve()
    rng = random.Random(topology.get("seed", 1))
    azs = list(topology.get("availability_zones") or ["az-a", "az-b"])
    default_prefix = topology.get("prefix_in_bucket", "pageserver/")
    auth_enabled = bool(topology.get("auth", False)) if auth is None else bool(auth)
    tls_enabled = bool(topology.get("tls", False)) if tls is None else bool(tls)

    storcon_spec = topology.get("storage_controller", {"name": "storcon"})
    pageservers = _node_list(topology.get("pageservers"), "ps")
    safekeepers = _node_list(topology.get("safekeepers"), "sk")
    computes = _node_list(topology.get("computes"), "compute")
    names = [n["name"] for n in pageservers + safekeepers + computes]
    if storcon_spec is not None:
        names.append(storcon_spec.get("name", "storcon"))
    if len(set(names)) != len(names):
        raise TopologyError(f"node names must be unique: {names}")
    if pageservers and storcon_spec is None:
        raise TopologyError("pageservers need a storage controller (their control_plane_api)")

    ports = iter(free_ports(2 + 1 + 2 * len(pageservers) + 2 * len(safekeepers) + len(computes)))
    s3 = topology.get("s3") or {}
    fleet = {
        "dir": str(directory),
        "seed": topology.get("seed", 1),
        "auth": {
            "enabled": auth_enabled,
            "public_key_pem_path": str(directory / "auth_public.pem"),
            "private_key_pem_path": str(directory / "auth_private.pem"),
        },
        "tls": _tls.tls_settings(directory, tls_enabled),
        "s3": {
            "moto_port": next(ports),
            "proxy_port": next(ports),
            "bucket": s3.get("bucket", "neon-sim"),
            "region": s3.get("region", "us-east-1"),
            "access_key": "testing",
            "secret_key": "testing",
        },
    }
    fleet["s3"]["moto_url"] = f"http://127.0.0.1:{fleet['s3']['moto_port']}"
    fleet["s3"]["endpoint_url"] = f"http://127.0.0.1:{fleet['s3']['proxy_port']}"
    storcon_port = next(ports)
    if storcon_spec is not None:
        fleet["storage_controller"] = {
            "name": storcon_spec.get("name", "storcon"),
            "http_port": storcon_port,
            "heartbeat_interval_s": float(storcon_spec.get("heartbeat_interval_s", 5.0)),
            "offline_after_s": float(storcon_spec.get("offline_after_s", 30.0)),
        }
    else:
        fleet["storage_controller"] = None

    fleet["pageservers"] = []
    for i, ps in enumerate(pageservers):
        fleet["pageservers"].append(
            {
                "name": ps["name"],
                "node_id": int(ps.get("node_id", i + 1)),
                "http_port": next(ports),
                "pg_port": next(ports),
                "az": ps.get("az", azs[i % len(azs)]),
                "prefix_in_bucket": ps.get("prefix_in_bucket", default_prefix),
                "disk_capacity_bytes": int(ps.get("disk_capacity_bytes", DEFAULT_DISK_CAPACITY)),
            }
        )
    fleet["safekeepers"] = []
    for i, sk in enumerate(safekeepers):
        fleet["safekeepers"].append(
            {
                "name": sk["name"],
                "node_id": int(sk.get("node_id", SAFEKEEPER_ID_BASE + i + 1)),
                "http_port": next(ports),
                "pg_port": next(ports),
                "az": sk.get("az", azs[i % len(azs)]),
            }
        )
    ids = [n["node_id"] for n in fleet["pageservers"] + fleet["safekeepers"]]
    if len(set(ids)) != len(ids):
        raise TopologyError(f"node ids must be unique: {ids}")

    fleet["tenant_defaults"] = {**DEFAULT_TENANT_DEFAULTS, **(topology.get("tenant_defaults") or {})}
    fleet["tenants"] = _resolve_tenants(topology, fleet, rng)
    fleet["computes"] = _resolve_computes(computes, fleet, ports, directory)
    return fleet


def _resolve_tenants(topology: dict, fleet: dict, rng: random.Random) -> list[dict]:
    ps_names = [p["name"] for p in fleet["pageservers"]]
    tenants = []
    placement_cursor = 0
    for i, spec in enumerate(topology.get("tenants") or []):
        spec = dict(spec or {})
        name = spec.get("name", f"tenant{i + 1}")
        tenant_id = _check_hex32(spec["tenant_id"], f"tenant {name} tenant_id") if "tenant_id" in spec else _hex_id(rng)
        shard_count = int(spec.get("shard_count", 0))
        if not 0 <= shard_count <= 255:
            raise TopologyError(f"tenant {name}: invalid shard_count {shard_count}")
        if not ps_names:
            raise TopologyError(f"tenant {name} needs at least one pageserver")
        placement = spec.get("pageservers")
        n_shards = max(1, shard_count)
        if placement is None:
            placement = [ps_names[(placement_cursor + k) % len(ps_names)] for k in range(n_shards)]
            placement_cursor += n_shards
        if len(placement) != n_shards or any(p not in ps_names for p in placement):
            raise TopologyError(f"tenant {name}: pageservers must list {n_shards} known pageserver(s)")
        timelines = []
        by_name: dict[str, str] = {}
        for j, tl in enumerate(spec.get("timelines") or [{"name": "main"}]):
            tl = dict(tl or {})
            tl_name = tl.get("name", f"timeline{j + 1}")
            timeline_id = (
                _check_hex32(tl["timeline_id"], f"timeline {tl_name}") if "timeline_id" in tl else _hex_id(rng)
            )
            parent = tl.get("parent")
            if parent is not None and parent not in by_name:
                raise TopologyError(f"tenant {name}: timeline {tl_name} has unknown parent {parent}")
            entry = {
                "name": tl_name,
                "timeline_id": timeline_id,
                "ancestor_timeline_id": by_name[parent] if parent is not None else None,
                "ancestor_lsn": tl.get("ancestor_lsn") if parent is not None else None,
            }
            by_name[tl_name] = timeline_id
            timelines.append(entry)
        tenants.append(
            {
                "name": name,
                "tenant_id": tenant_id,
                "shard_count": shard_count,
                "stripe_size": int(spec.get("stripe_size", DEFAULT_STRIPE_SIZE)),
                "pageservers": placement,
                "timelines": timelines,
                "tenant_conf": dict(spec.get("tenant_conf") or {}),
                "synthetic": None,
            }
        )
    synthetic = topology.get("synthetic")
    if synthetic:
        low, high = synthetic.get("size_bytes_range", [1024 * 1024, 64 * 1024 * 1024])
        layers = int(synthetic.get("layers", 8))
        for k in range(int(synthetic.get("count", 0))):
            if not ps_names:
                raise TopologyError("synthetic tenants need at least one pageserver")
            tenants.append(
                {
                    "name": f"synthetic{k + 1}",
                    "tenant_id": _hex_id(rng),
                    "shard_count": 0,
                    "stripe_size": DEFAULT_STRIPE_SIZE,
                    "pageservers": [ps_names[placement_cursor % len(ps_names)]],
                    "timelines": [
                        {
                            "name": "main",
                            "timeline_id": _hex_id(rng),
                            "ancestor_timeline_id": None,
                            "ancestor_lsn": None,
                        }
                    ],
                    "tenant_conf": {},
                    "synthetic": {"physical_size_bytes": rng.randint(int(low), int(high)), "layers": layers},
                }
            )
            placement_cursor += 1
    ids = [t["tenant_id"] for t in tenants]
    if len(set(ids)) != len(ids):
        raise TopologyError("tenant ids must be unique")
    return tenants


def _resolve_computes(computes: list[dict], fleet: dict, ports, directory: Path) -> list[dict]:
    by_name = {t["name"]: t for t in fleet["tenants"]}
    out = []
    for i, spec in enumerate(computes):
        tenant_name = spec.get("tenant")
        if tenant_name not in by_name:
            raise TopologyError(f"compute {spec['name']}: unknown tenant {tenant_name!r}")
        tenant = by_name[tenant_name]
        timeline_name = spec.get("timeline", tenant["timelines"][0]["name"])
        timeline = next((t for t in tenant["timelines"] if t["name"] == timeline_name), None)
        if timeline is None:
            raise TopologyError(f"compute {spec['name']}: unknown timeline {timeline_name!r}")
        name = spec["name"]
        out.append(
            {
                "name": name,
                "compute_id": spec.get("compute_id", f"compute-{i + 1}"),
                "http_port": next(ports),
                "tenant_id": tenant["tenant_id"],
                "timeline_id": timeline["timeline_id"],
                "shard_count": tenant["shard_count"],
                "stripe_size": tenant["stripe_size"] if tenant["shard_count"] else None,
                "pageserver": tenant["pageservers"][0],
                "pgdata": str(directory / name / "pgdata"),
                "spec_path": str(directory / name / "spec.json"),
                "workload": {**DEFAULT_WORKLOAD, **(spec.get("workload") or {})},
            }
        )
    return out
