"""S3 fault proxy: an aiohttp reverse proxy in front of moto (`python -m neonsim.s3proxy --dir DIR`).

fleet.json `s3.endpoint_url` points here, so pageservers and the collection both see its faults.
`POST /sim/fault` {"routes": "<regex on 'METHOD /bucket/key?query'>", "error_rate": F (answer 503 SlowDown),
"status": N (the error status instead of 503), "latency_ms": N, "drop_rate": F (close the connection without
an answer)}; `DELETE /sim/fault`; `GET /sim/health`; `GET /sim/stats` (request and fault counters).
Requests are logged to DIR/s3proxy/requests.jsonl (not DIR/requests/: S3 traffic is not a node API), each with its
`user_agent` (the collection's modules send amazon.aws's "Ansible/..." one, pageservers plain botocore's), so a test
can tell the collection's requests from the fleet's own; `SimFleet.s3_request_log()` reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from neonsim._reqlog import RequestLog

log = logging.getLogger("neonsim.s3proxy")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
FAULT_FIELDS = {"routes", "error_rate", "status", "latency_ms", "drop_rate"}
S3_ERROR_CODES = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}


def s3_error(status: int) -> web.Response:
    code, message = S3_ERROR_CODES.get(status, ("InjectedFault", f"injected fault (status {status})"))
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


class S3Proxy:
    def __init__(self, moto_url: str, log_path: Path | None = None, seed: int | None = None):
        self.moto_url = moto_url.rstrip("/")
        self.fault: dict | None = None
        self._pattern: re.Pattern | None = None
        self.rng = random.Random(seed)
        self.stats = {"requests": 0, "errors_injected": 0, "dropped": 0, "upstream_errors": 0}
        self.reqlog = RequestLog(log_path, "s3proxy") if log_path else None
        self.session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_post("/sim/fault", self.set_fault)
        app.router.add_delete("/sim/fault", self.clear_fault)
        app.router.add_get("/sim/fault", self.get_fault)
        app.router.add_get("/sim/health", self.health)
        app.router.add_get("/sim/stats", self.get_stats)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, app) -> None:
        # auto_decompress off: bodies pass through byte for byte.
        self.session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=120))

    async def _close(self, app) -> None:
        if self.session is not None:
            await self.session.close()

    async def set_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict) or set(body) - FAULT_FIELDS:
                raise ValueError(f"fault fields are {sorted(FAULT_FIELDS)}")
            pattern = re.compile(body["routes"]) if body.get("routes") else None
            for rate in ("error_rate", "drop_rate"):
                if body.get(rate) is not None and not 0 <= float(body[rate]) <= 1:
                    raise ValueError(f"{rate} must be within [0, 1]")
        except (ValueError, re.error, json.JSONDecodeError) as exc:
            return web.json_response({"msg": str(exc)}, status=400)
        self.fault, self._pattern = body, pattern
        log.warning("fault set: %s", body)
        return web.json_response({"active": True, "fault": body})

    async def clear_fault(self, request: web.Request) -> web.Response:
        self.fault, self._pattern = None, None
        log.warning("fault cleared")
        return web.json_response({"active": False, "fault": None})

    async def get_fault(self, request: web.Request) -> web.Response:
        return web.json_response({"active": self.fault is not None, "fault": self.fault})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": "s3proxy", "kind": "s3proxy", "status": "ok", "moto_url": self.moto_url, "pid": os.getpid()}
        )

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    def _matches(self, request: web.Request) -> bool:
        if self.fault is None:
            return False
        if self._pattern is None:
            return True
        target = f"{request.method} {request.path_qs}"
        return bool(self._pattern.search(target))

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        self.stats["requests"] += 1
        status = 502
        try:
            response = await self._proxy(request)
            status = response.status
            return response
        finally:
            if self.reqlog is not None:
                self.reqlog.record(
                    request.method,
                    request.path,
                    request.query_string,
                    status,
                    (time.monotonic() - started) * 1000,
                    user_agent=request.headers.get("User-Agent", "")[:300],
                )

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        fault = self.fault if self._matches(request) else None
        if fault is not None:
            if fault.get("latency_ms"):
                await asyncio.sleep(float(fault["latency_ms"]) / 1000.0)
            if fault.get("drop_rate") and self.rng.random() < float(fault["drop_rate"]):
                self.stats["dropped"] += 1
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=499)  # never reaches the client
            error_rate = fault.get("error_rate")
            status = fault.get("status")
            if (error_rate is not None and self.rng.random() < float(error_rate)) or (
                error_rate is None and status is not None
            ):
                self.stats["errors_injected"] += 1
                return s3_error(int(status or 503))
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        assert self.session is not None, "the proxy serves only between start() and stop()"
        try:
            async with self.session.request(
                request.method, self.moto_url + request.path_qs, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                response = web.Response(status=upstream.status, body=payload if payload else None, headers=out_headers)
                if request.method == "HEAD" and "Content-Length" in upstream.headers:
                    response.headers["Content-Length"] = upstream.headers["Content-Length"]
                return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats["upstream_errors"] += 1
            log.warning("moto unreachable: %s", exc)
            return s3_error(503)


async def serve(directory: str) -> None:
    fleet = json.loads((Path(directory) / "fleet.json").read_text())
    s3 = fleet["s3"]
    proxy = S3Proxy(s3["moto_url"], Path(directory) / "s3proxy" / "requests.jsonl", seed=fleet.get("seed"))
    runner = web.AppRunner(proxy.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(s3["proxy_port"]), reuse_address=True).start()
    log.info("s3proxy on 127.0.0.1:%s → %s", s3["proxy_port"], s3["moto_url"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neonsim.s3proxy")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s s3proxy: %(message)s", stream=sys.stderr)
    asyncio.run(serve(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
