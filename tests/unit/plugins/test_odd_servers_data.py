"""Answers of servers that are not what the modules expect (used by test_odd_servers)."""

from __future__ import annotations

from ansible_collections.neonops.storage.tests.unit.fake_api import CannedResponse

# 200 answers whose body is not the JSON any route returns.
BODIES = {
    "html": CannedResponse(200, text="<!DOCTYPE html><html><body>It works!</body></html>"),
    "text": CannedResponse(200, text="OK"),
    "json-array-of-numbers": CannedResponse(200, [1, 2]),
    "json-string": CannedResponse(200, "ok"),
    "json-number": CannedResponse(200, 42),
}

# 404 answers for every path from something that is not the service.
NOT_FOUND_PAGES = {
    # python -m http.server, nginx, ... on the port
    "html": CannedResponse(404, text="<html><head><title>404 Not Found</title></head><body>Not Found</body></html>"),
    "empty": CannedResponse(404, text=""),
    # another JSON API (FastAPI's default 404)
    "other-json": CannedResponse(404, {"detail": "Not Found"}),
    # a Neon service without this route: the shared router's own answer
    "router": CannedResponse(404, {"msg": "page not found"}),
}
