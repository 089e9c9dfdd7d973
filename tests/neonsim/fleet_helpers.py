"""Helpers shared by the live-fleet tests: liveness waits and the compute workload API."""

from __future__ import annotations

import time

import requests

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
