"""A canned-response HTTP server on 127.0.0.1 that records every request.

It is a real HTTP endpoint, so the whole client stack (session, headers, TLS settings, urllib3 retries)
runs unmodified in unit tests. Register responses with ``add()``; several ``add()`` calls for the same
route are served in order and the last one repeats. Anything unregistered goes to ``fallback`` when it is
set (a callable taking the RecordedRequest, returning a CannedResponse or ``(status, body)``), else gets the
pageserver's own ``404 {"msg": "page not found"}``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

READ_ONLY_POST_SUFFIXES = ("/wait_lsn", "/debug/v1/inspect")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    headers: dict
    body: object  # parsed JSON, raw text, or None when no body was sent
    raw_body: str

    @property
    def mutating(self) -> bool:
        if self.method in ("GET", "HEAD"):
            return False
        return not (self.method == "POST" and self.path.endswith(READ_ONLY_POST_SUFFIXES))


@dataclass
class CannedResponse:
    status: int = 200
    body: object = None
    text: str | None = None  # sent verbatim instead of JSON when set
    headers: dict = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (a transport error)


@dataclass
class Route:
    method: str
    path: str
    query: dict | None
    responses: list
    handler: object = None  # callable(RecordedRequest) -> CannedResponse | (status, body)
    served: int = 0

    def matches(self, request: RecordedRequest) -> bool:
        if request.method != self.method or request.path != self.path:
            return False
        if self.query is None:
            return True
        return all(request.query.get(k) == str(v) for k, v in self.query.items())

    def next_response(self, request: RecordedRequest) -> CannedResponse:
        self.served += 1
        if self.handler is not None:
            outcome = self.handler(request)
            if isinstance(outcome, CannedResponse):
                return outcome
            status, body = outcome
            return CannedResponse(status, body)
        if len(self.responses) > 1:
            return self.responses.pop(0)
        return self.responses[0]


class FakeAPI:
    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self.routes: list[Route] = []
        self.unmatched: list[RecordedRequest] = []
        self.fallback = None  # callable(RecordedRequest) -> CannedResponse | (status, body), for unmatched requests
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def add(
        self, method, path, body=None, status=200, *, query=None, text=None, headers=None, drop=False, handler=None
    ):
        """Queue a response for ``method path`` (path without query; ``query`` narrows the match)."""
        response = CannedResponse(status, body, text, headers or {}, drop)
        with self._lock:
            for route in self.routes:
                if route.method == method.upper() and route.path == path and route.query == query:
                    if handler is not None:
                        route.handler = handler
                    else:
                        route.responses.append(response)
                    return route
            route = Route(method.upper(), path, query, [response], handler)
            # Routes with a query filter are more specific: try them first.
            self.routes.insert(0, route) if query else self.routes.append(route)
            return route

    def calls(self, method=None, path=None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or r.path == path)
        ]

    @property
    def mutating_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.mutating]

    def _dispatch(self, request: RecordedRequest) -> CannedResponse:
        with self._lock:
            self.requests.append(request)
            for route in self.routes:
                if route.matches(request):
                    return route.next_response(request)
            self.unmatched.append(request)
            fallback = self.fallback
        if fallback is not None:
            outcome = fallback(request)
            return outcome if isinstance(outcome, CannedResponse) else CannedResponse(*outcome)
        return CannedResponse(404, {"msg": "page not found"})

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                request = RecordedRequest(
                    self.command, parts.path, dict(parse_qsl(parts.query)), dict(self.headers), body, raw
                )
                response = api._dispatch(request)
                if response.drop:
                    self.close_connection = True
                    return
                payload = (response.text if response.text is not None else json.dumps(response.body)).encode()
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        return Handler
