"""One simulated node process: `python -m neonsim.node --dir DIR --name NAME`.

Loads DIR/fleet.json, imports the module for the node's kind (see `neonsim._server` for the plug-in
protocol), serves its apps on 127.0.0.1 (the API port over HTTPS in a TLS fleet), then calls `start()`.
SIGTERM/SIGINT → `stop()` and exit 0; SIGKILL is a crash and only the disk state in DIR/<name>/ survives.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys

from aiohttp import web

from neonsim._server import KIND_MODULES, NodeContext

log = logging.getLogger("neonsim.node")

STOP_TIMEOUT_S = 10.0


async def serve(directory: str, name: str, fleet: dict | None = None) -> int:
    """Run node NAME until SIGTERM; `fleet` replaces DIR/fleet.json (the pageserver binary's stand-in config)."""
    ctx = NodeContext(directory, name, fleet=fleet)
    module = importlib.import_module(KIND_MODULES[ctx.kind])
    node = await module.create_node(ctx)
    ctx.node_impl = node

    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)

    runners = []
    try:
        api_ssl = ctx.server_ssl()
        for port, app in node.apps().items():
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            # Only the management API port speaks TLS; the sim-only pg port stays plain HTTP (contracts §5.6).
            ssl_context = api_ssl if int(port) == int(ctx.node["http_port"]) else None
            # fleet.json nodes listen on 127.0.0.1; the pageserver binary stand-in listens where its config says.
            host_key = "http_host" if int(port) == int(ctx.node["http_port"]) else "pg_host"
            host = ctx.node.get(host_key) or "127.0.0.1"
            site = web.TCPSite(runner, host, int(port), reuse_address=True, ssl_context=ssl_context)
            await site.start()
            runners.append(runner)
            scheme = "https" if ssl_context is not None else "http"
            log.info("%s (%s) listening on %s://%s:%s", name, ctx.kind, scheme, host, port)
        start_task = asyncio.ensure_future(node.start())
        stop_task = asyncio.ensure_future(stop_event.wait())
        done, _ = await asyncio.wait({start_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if start_task in done:
            start_task.result()  # a failed start is fatal: let it raise
            ctx.ready = True
            log.info("%s ready", name)
            await stop_task
        else:
            start_task.cancel()
        log.info("%s stopping", name)
        ctx.ready = False
        ctx.faults.clear()  # release frozen requests so the server can drain
        try:
            await asyncio.wait_for(node.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("%s: stop() did not finish within %ss", name, STOP_TIMEOUT_S)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await ctx.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neonsim.node")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {args.name} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(serve(args.dir, args.name))


if __name__ == "__main__":
    sys.exit(main())
