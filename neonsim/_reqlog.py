"""Per-node request log: DIR/requests/<name>.jsonl, one JSON object per request (contracts §5.1).

Each line is flushed as soon as it is written so tests can read the file while the fleet runs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POSTs that only read: contracts §5.1 names these; a node may add more through make_http_app.
DEFAULT_READ_ONLY_POSTS = (r"/debug/v1/inspect$", r"/wait_lsn$")


def is_mutating(method: str, path: str, read_only_posts=DEFAULT_READ_ONLY_POSTS) -> bool:
    if method.upper() not in MUTATING_METHODS:
        return False
    route = path[:-1] if len(path) > 1 and path.endswith("/") else path  # `/wait_lsn/` reaches `/wait_lsn`
    return not (method.upper() == "POST" and any(re.search(rx, route) for rx in read_only_posts))


def is_sim_path(path: str) -> bool:
    return path.startswith("/sim/") or path == "/sim"


class RequestLog:
    """Append-only JSONL writer; one per node process (both of its ports share it)."""

    def __init__(self, path: str | Path, node: str, read_only_posts=DEFAULT_READ_ONLY_POSTS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.read_only_posts = tuple(read_only_posts)
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the node

    def record(self, method: str, path: str, query: str, status: int, duration_ms: float, **extra) -> dict:
        entry = {
            "ts": round(time.time(), 6),
            "node": self.node,
            "method": method,
            "path": path,
            "query": query,
            "status": status,
            "mutating": is_mutating(method, path, self.read_only_posts),
            "sim": is_sim_path(path),
            "duration_ms": round(duration_ms, 3),
            **extra,
        }
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        return entry

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_request_log(path: str | Path) -> list[dict]:
    """All complete lines of a request log (a partially written last line is skipped)."""
    entries: list[dict] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return entries
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries
