"""Helpers shared by the neonsim tests: liveness waits, the compute workload API of a live fleet, in-process
nodes (`free_port`, `serve`) for the tests that run a node's apps inside pytest instead of as a process, and a
plain JSON server (`json_server`) standing in for a process outside the fleet."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import requests
from aiohttp import web

from neonsim._server import Node
from neonsim.topology import free_ports

VERIFY_TIMEOUT_MS = 15000


def wait_for(predicate, timeout=60.0, what="condition", interval=0.1):
    """Liveness wait (not a timing assertion): fails only if the state is never reached."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def report(sim, name="compute1") -> dict:
    r = requests.get(sim.url(name) + "/sim/workload", headers=sim.headers("compute"), timeout=10, verify=sim.verify)
    r.raise_for_status()
    return r.json()


def workload(sim, action, name="compute1", **kw) -> dict:
    r = requests.post(
        sim.url(name) + "/sim/workload",
        json={"action": action, **kw},
        headers=sim.headers("compute"),
        timeout=60,
        verify=sim.verify,
    )
    r.raise_for_status()
    return r.json()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_ports(1)[0]


@contextlib.asynccontextmanager
async def serve(node: Node) -> AsyncIterator[Node]:
    """Serve a node's apps on 127.0.0.1 inside the test's event loop, started and ready as `python -m neonsim.node`
    would have it (plain HTTP), then stop it and close its context."""
    runners = []
    for port, app in node.apps().items():
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    node.ctx.ready = True
    node.ctx.node_impl = node
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
        for runner in runners:
            await runner.cleanup()
        await node.ctx.close()


@contextlib.contextmanager
def json_server(answer: Callable[[str], tuple[int, dict]]) -> Iterator[int]:
    """A plain HTTP server on 127.0.0.1 answering every GET with ``answer(path)`` -> (status, JSON body), in a
    thread; yields its port and stops it afterwards."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            status, payload = answer(self.path)
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
