"""`python -m neonsim` command line: up, down, status, kill, start, fault, set-prefix, add-pageserver, pageserver,
check."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from neonsim import fleet as fleet_mod


def _cmd_up(args) -> int:
    fleet = fleet_mod.up(args.topology, args.dir, auth=True if args.auth else None, tls=True if args.tls else None)
    print(f"fleet up in {fleet['dir']}: inventory {fleet['dir']}/inventory.yml")
    if fleet["tls"]["enabled"]:
        print(f"node APIs serve HTTPS; CA certificate {fleet['tls']['ca_path']}")
    return 0


def _cmd_down(args) -> int:
    names = fleet_mod.down(args.dir)
    print(f"stopped {len(names)} processes: {', '.join(names) or '-'}")
    return 0


def _cmd_status(args) -> int:
    rows = fleet_mod.status(args.dir)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        header = f"{'node':<12} {'kind':<11} {'pid':>8} {'alive':<6} {'port':>6} health"
        print(header)
        for r in rows:
            pid = r["pid"] or "-"
            print(f"{r['name']:<12} {r['kind']:<11} {pid:>8} {str(r['alive']):<6} {r['port']:>6} {r['health']}")
    return 0 if all(r["alive"] and r["health"] == "200" for r in rows) else 1


def _cmd_kill(args) -> int:
    pid = fleet_mod.kill(args.dir, args.node)
    print(f"killed {args.node} (pid {pid})")
    return 0


def _cmd_start(args) -> int:
    pid = fleet_mod.start(args.dir, args.node)
    print(f"started {args.node} (pid {pid})")
    return 0


def _cmd_fault(args) -> int:
    if args.clear:
        spec = None
    else:
        spec = {
            "latency_ms": args.latency_ms,
            "error_rate": args.error_rate,
            "status": args.status,
            "routes": args.routes,
        }
        if args.node == "s3proxy":
            spec["drop_rate"] = args.drop_rate
        else:
            spec["freeze"] = args.freeze
        spec = {k: v for k, v in spec.items() if v not in (None, False)}
    print(json.dumps(fleet_mod.fault(args.dir, args.node, spec)))
    return 0


def _cmd_set_prefix(args) -> int:
    entry = fleet_mod.set_pageserver_prefix(args.dir, args.node, args.prefix_in_bucket)
    print(f"{args.node} restarted with prefix_in_bucket {entry['prefix_in_bucket']!r}")
    return 0


def _cmd_add_pageserver(args) -> int:
    entry = fleet_mod.add_pageserver(
        args.dir,
        args.name,
        node_id=args.node_id,
        az=args.az,
        disk_capacity_bytes=args.disk_capacity_bytes,
        prefix_in_bucket=args.prefix_in_bucket,
        register=args.register,
    )
    print(json.dumps(entry))
    return 0


def _cmd_check(args) -> int:
    try:
        checker = importlib.import_module("neonsim.checker")
    except ImportError as exc:
        print(f"neonsim.checker is not available: {exc}", file=sys.stderr)
        return 2
    if hasattr(checker, "main"):
        return int(checker.main(["--dir", args.dir]) or 0)
    report = checker.check(args.dir)
    print(json.dumps(report, indent=2, default=str))
    ok = report.get("ok", True) if isinstance(report, dict) else bool(report)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m neonsim", description="Simulated Neon storage fleet")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start a fleet from a topology and bootstrap it")
    p.add_argument("--topology", default="default", help="topology YAML path or bundled name (default, small)")
    p.add_argument("--dir", required=True)
    p.add_argument("--auth", action="store_true", help="enable JWT auth on every node")
    p.add_argument("--tls", action="store_true", help="serve every node's API over HTTPS (fleet CA in DIR/tls/)")
    p.set_defaults(func=_cmd_up)

    p = sub.add_parser("down", help="stop every process of the fleet")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=_cmd_down)

    p = sub.add_parser("status", help="table of processes and their health")
    p.add_argument("--dir", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("kill", help="SIGKILL one node (a crash)")
    p.add_argument("node")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=_cmd_kill)

    p = sub.add_parser("start", help="restart one node with its fleet.json config")
    p.add_argument("node")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=_cmd_start)

    p = sub.add_parser("fault", help="inject or clear a fault on a node (or s3proxy)")
    p.add_argument("node")
    p.add_argument("--dir", required=True)
    p.add_argument("--latency-ms", type=float)
    p.add_argument("--error-rate", type=float)
    p.add_argument("--status", type=int)
    p.add_argument("--routes", help="regex matched against the path or 'METHOD path' (s3proxy: 'METHOD /bucket/key')")
    p.add_argument("--freeze", action="store_true", help="hang matching requests until cleared")
    p.add_argument("--drop-rate", type=float, help="s3proxy only: fraction of connections dropped")
    p.add_argument("--clear", action="store_true")
    p.set_defaults(func=_cmd_fault)

    p = sub.add_parser("set-prefix", help="reconfigure a pageserver's prefix_in_bucket and restart it")
    p.add_argument("node")
    p.add_argument("prefix_in_bucket")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=_cmd_set_prefix)

    p = sub.add_parser("add-pageserver", help="add a pageserver to a running fleet (fleet.json, inventory.yml)")
    p.add_argument("name")
    p.add_argument("--dir", required=True)
    p.add_argument("--node-id", type=int, help="default: the highest pageserver id + 1")
    p.add_argument("--az", help="availability zone (default: the last pageserver's)")
    p.add_argument("--disk-capacity-bytes", type=int, help="its disk size behind /v1/utilization (default 10 GiB)")
    p.add_argument("--prefix-in-bucket", help="remote_storage prefix_in_bucket (default: the fleet's)")
    p.add_argument(
        "--register",
        action="store_true",
        help="register itself through re-attach (metadata.json); default: left to the caller (POST /control/v1/node)",
    )
    p.set_defaults(func=_cmd_add_pageserver)

    p = sub.add_parser("pageserver", help="run a pageserver from an upstream-shaped pageserver.toml (-D WORKDIR)")
    p.add_argument("-D", "--workdir", help="directory holding pageserver.toml (handled by neonsim.pageserver_binary)")
    p.add_argument("-c", "--config", help="pageserver.toml path")

    p = sub.add_parser("check", help="run the consistency checker")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pageserver"]:
        # The binary stand-in takes upstream's own flags (-D WORKDIR), not this parser's.
        from neonsim import pageserver_binary

        return pageserver_binary.main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except fleet_mod.FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
