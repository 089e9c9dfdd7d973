"""neonsim's pageserver as a stand-alone "binary": `python -m neonsim pageserver -D WORKDIR` (or `--config FILE`).

Reads an upstream-shaped `pageserver.toml` (the keys of `ConfigToml` in neondatabase/neon
`libs/pageserver_api/src/config.rs`), plus `identity.toml` and `metadata.json` next to it when present, and runs the
simulated pageserver with that identity, those listen addresses, that remote storage and that control plane. It is what
a host configured by the `neonops.storage.pageserver` role runs in tests, in place of the real binary.

Honoured keys: `id` (or `identity.toml`), `listen_http_addr`, `listen_pg_addr`, `availability_zone`,
`control_plane_api`, `remote_storage.{bucket_name, bucket_region, prefix_in_bucket, endpoint}`, `http_auth_type`
(`Trust` only), `tenant_config` (the tenant defaults: checkpoint_timeout, compaction_period, ...). S3 credentials
come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` as for the real binary.
The disk capacity behind `/v1/utilization` is the real file system of the work directory (statvfs), as upstream.
Refused with a clear error (the sim has no such listener or key handling): `listen_https_addr`, `NeonJWT` auth.
Accepted and ignored: `broker_endpoint`, `pg_auth_type`, `auth_validation_public_key_path`, `ssl_*`,
`disk_usage_based_eviction`, `control_plane_api_token` and every other tuning key.

WAL: upstream finds the safekeepers of each timeline through the storage broker (`broker_endpoint`); neonsim has no
broker, so the binary reads the safekeepers of a running neonsim fleet from `$NEONSIM_SAFEKEEPERS_FROM` (that fleet's
directory, its fleet.json) when set. Without it the binary ingests no WAL (a tenant attaches but never catches up).

Like upstream, `metadata.json` present means re-attach carries `register` (the node registers itself); absent, the
storage controller must already know the node (`POST /control/v1/node`), and re-attach is retried until it does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tomllib
from pathlib import Path

from neonsim import node as node_mod

NAME = "pageserver"


class ConfigError(ValueError):
    """pageserver.toml cannot be run: the message names the key and the value."""


def _split_addr(value, key: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{key} must be 'host:port', got {value!r}")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{key} must be 'host:port', got {value!r}") from None
    if not 0 < number < 65536:
        raise ConfigError(f"{key}: port out of range in {value!r}")
    return host, number


def load_config(workdir: Path, config_path: Path) -> dict:
    try:
        config = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {config_path}: {exc}") from None
    identity = workdir / "identity.toml"
    if "id" not in config and identity.is_file():
        config["id"] = tomllib.loads(identity.read_text()).get("id")
    return config


def fleet_from_config(workdir: Path, config: dict, metadata: dict | None) -> dict:
    """The one-node fleet document `neonsim.node.serve` runs (contracts §5.1 shape) for this pageserver.toml."""
    node_id = config.get("id")
    if not isinstance(node_id, int) or isinstance(node_id, bool) or node_id <= 0:
        raise ConfigError(f"id must be a positive integer, got {node_id!r}")
    if config.get("listen_https_addr"):
        raise ConfigError("listen_https_addr: neonsim's pageserver binary serves no HTTPS listener")
    auth_type = config.get("http_auth_type", "Trust")
    if auth_type != "Trust":
        raise ConfigError(f"http_auth_type {auth_type!r}: neonsim's pageserver binary runs with Trust only")
    api = config.get("control_plane_api")
    if not isinstance(api, str) or not api.startswith(("http://", "https://")):
        # Upstream refuses to start without it (the generation authority): neondatabase/neon pageserver/src/config.rs
        raise ConfigError(f"control_plane_api must be an http(s) URL, got {api!r}")
    http_host, http_port = _split_addr(config.get("listen_http_addr", "127.0.0.1:9898"), "listen_http_addr")
    pg_host, pg_port = _split_addr(config.get("listen_pg_addr", "127.0.0.1:64000"), "listen_pg_addr")
    remote = config.get("remote_storage")
    if not isinstance(remote, dict) or not remote.get("bucket_name"):
        raise ConfigError(f"remote_storage must name a bucket_name, got {remote!r}")
    az = config.get("availability_zone") or (metadata or {}).get("availability_zone_id")
    if not az:
        raise ConfigError("availability_zone (or metadata.json availability_zone_id) is required")
    stat = os.statvfs(workdir)
    entry = {
        "name": NAME,
        "node_id": node_id,
        "http_host": http_host,
        "http_port": http_port,
        "pg_host": pg_host,
        "pg_port": pg_port,
        "az": az,
        "prefix_in_bucket": remote.get("prefix_in_bucket", ""),
        "disk_capacity_bytes": stat.f_blocks * stat.f_frsize,
        "control_plane_api": api,
        "self_register": metadata is not None,
        "metadata": metadata,
    }
    return {
        "dir": str(workdir),
        "auth": {"enabled": False, "public_key_pem_path": None, "private_key_pem_path": None},
        "tls": {"enabled": False, "ca_path": None, "cert_dir": None},
        "s3": {
            "endpoint_url": remote.get("endpoint"),
            "bucket": remote["bucket_name"],
            "region": remote.get("bucket_region", "us-east-1"),
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        },
        "storage_controller": None,
        "pageservers": [entry],
        "safekeepers": broker_safekeepers(),
        "computes": [],
        "tenants": [],
        # [tenant_config]: the pageserver-wide tenant defaults (upstream ConfigToml.tenant_config in
        # libs/pageserver_api/src/config.rs); upstream's defaults fill in the rest.
        "tenant_defaults": tenant_defaults(config),
    }


def tenant_defaults(config: dict) -> dict:
    table = config.get("tenant_config") or {}
    if not isinstance(table, dict):
        raise ConfigError(f"tenant_config must be a table, got {table!r}")
    return dict(table)


def broker_safekeepers() -> list[dict]:
    """The safekeepers the storage broker would announce: those of the fleet in $NEONSIM_SAFEKEEPERS_FROM."""
    fleet_dir = os.environ.get("NEONSIM_SAFEKEEPERS_FROM")
    if not fleet_dir:
        return []
    path = Path(fleet_dir) / "fleet.json"
    try:
        safekeepers = json.loads(path.read_text()).get("safekeepers") or []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"NEONSIM_SAFEKEEPERS_FROM: cannot read {path}: {exc}") from None
    return list(safekeepers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m neonsim pageserver", description=__doc__.split("\n")[0])
    parser.add_argument("-D", "--workdir", help="directory holding pageserver.toml (upstream's -D)")
    parser.add_argument("-c", "--config", help="pageserver.toml path (default WORKDIR/pageserver.toml)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.workdir and not args.config:
        print("error: give -D WORKDIR or --config FILE", file=sys.stderr)
        return 2
    config_path = Path(args.config) if args.config else Path(args.workdir) / "pageserver.toml"
    workdir = Path(args.workdir).resolve() if args.workdir else config_path.resolve().parent
    metadata_path = workdir / "metadata.json"
    try:
        config = load_config(workdir, config_path)
        metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else None
        fleet = fleet_from_config(workdir, config, metadata)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s {NAME} %(name)s: %(message)s", stream=sys.stderr
    )
    (workdir / "requests").mkdir(exist_ok=True)
    return asyncio.run(node_mod.serve(str(workdir), NAME, fleet=fleet))
