"""Fault injection state for one node's HTTP port (`POST/DELETE /sim/fault`).

A fault applies to requests whose path, or "METHOD path", matches the `routes` regex (re.search; default: all).
`/sim/*` routes are never faulted so a test can always clear a fault. Effects, in order:
freeze (hang until the fault is cleared), latency_ms (added delay), then an error response: with `status`
alone every matching request fails with it; with `error_rate` a random fraction fails (status default 503).
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field


class FaultSpecError(ValueError):
    pass


@dataclass
class FaultSpec:
    latency_ms: float = 0.0
    error_rate: float | None = None
    status: int | None = None
    routes: str | None = None
    freeze: bool = False
    _pattern: re.Pattern | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, body: dict) -> FaultSpec:
        if not isinstance(body, dict):
            raise FaultSpecError("fault body must be a JSON object")
        unknown = set(body) - {"latency_ms", "error_rate", "status", "routes", "freeze"}
        if unknown:
            raise FaultSpecError(f"unknown fault fields: {sorted(unknown)}")
        try:
            spec = cls(
                latency_ms=float(body.get("latency_ms") or 0),
                error_rate=None if body.get("error_rate") is None else float(body["error_rate"]),
                status=None if body.get("status") is None else int(body["status"]),
                routes=body.get("routes") or None,
                freeze=bool(body.get("freeze", False)),
            )
        except (TypeError, ValueError) as exc:
            raise FaultSpecError(f"invalid fault field: {exc}") from exc
        if spec.error_rate is not None and not 0.0 <= spec.error_rate <= 1.0:
            raise FaultSpecError("error_rate must be within [0, 1]")
        if spec.status is not None and not 100 <= spec.status <= 599:
            raise FaultSpecError("status must be an HTTP status code")
        if spec.latency_ms < 0:
            raise FaultSpecError("latency_ms must be >= 0")
        try:
            spec._pattern = re.compile(spec.routes) if spec.routes else None
        except re.error as exc:
            raise FaultSpecError(f"invalid routes regex: {exc}") from exc
        return spec

    def to_json(self) -> dict:
        return {
            "latency_ms": self.latency_ms,
            "error_rate": self.error_rate,
            "status": self.status,
            "routes": self.routes,
            "freeze": self.freeze,
        }

    def matches(self, method: str, path: str) -> bool:
        if self._pattern is None:
            return True
        return bool(self._pattern.search(path) or self._pattern.search(f"{method} {path}"))

    def error_status(self, rng: random.Random) -> int | None:
        """The status to fail this request with, or None to let it through."""
        if self.error_rate is not None:
            return (self.status or 503) if rng.random() < self.error_rate else None
        return self.status


class FaultState:
    """The node's current fault; replaced wholesale by each POST /sim/fault."""

    def __init__(self, seed: int | None = None):
        self.spec: FaultSpec | None = None
        self._cleared = asyncio.Event()
        self._cleared.set()
        self.rng = random.Random(seed)
        self.injected = 0

    def set(self, spec: FaultSpec) -> None:
        # Requests frozen by the previous fault stay frozen only if the new one freezes too.
        if spec.freeze:
            self._cleared.clear()
        else:
            self._cleared.set()
        self.spec = spec

    def clear(self) -> None:
        self.spec = None
        self._cleared.set()

    def to_json(self) -> dict:
        return {
            "active": self.spec is not None,
            "fault": self.spec.to_json() if self.spec else None,
            "injected": self.injected,
        }

    async def apply(self, method: str, path: str) -> int | None:
        """Run the fault for a request: may hang or sleep; returns an error status to answer with, or None."""
        spec = self.spec
        if spec is None or path.startswith("/sim/") or not spec.matches(method, path):
            return None
        if spec.freeze:
            await self._cleared.wait()
            spec = self.spec
            if spec is None or not spec.matches(method, path):
                return None
        if spec.latency_ms:
            await asyncio.sleep(spec.latency_ms / 1000.0)
        status = spec.error_status(self.rng)
        if status is not None:
            self.injected += 1
        return status
