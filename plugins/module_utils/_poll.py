# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Poll until a condition holds or a deadline passes. Internal to neonops.storage; may change in any release.

The one poll loop of the collection: the runbook engine and every module that waits (tenant_location,
timeline, timeline_catchup, secondary_download, compute_pageserver) use it, so sleep, backoff and deadline
behave the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# First sleep and ceiling between polls: the storage controller's own reconcilers poll about every 500 ms.
FIRST_SLEEP = 0.05
MAX_SLEEP = 0.5


class PollTimeout(Exception):
    """The deadline passed; ``last`` is the last value the probe returned."""

    def __init__(self, what: str, seconds: float, last: Any = None):
        self.what = what
        self.seconds = seconds
        self.last = last
        super().__init__(f"{what}: not reached within {seconds:g} s")


def backoff(attempt: int, first: float = FIRST_SLEEP, ceiling: float = MAX_SLEEP) -> float:
    # The exponent is capped: a poll of many minutes makes thousands of attempts, and 2**1024 is not a float.
    return min(first * (2 ** min(attempt, 30)), ceiling)


def poll(
    probe: Callable[[], tuple[bool, Any]],
    seconds: float,
    what: str,
    ceiling: float = MAX_SLEEP,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[Any, int], Any] | None = None,
) -> Any:
    """Call ``probe()`` until it returns ``(True, value)``; return ``value``.

    ``probe`` returns ``(done, value)``; on the deadline ``PollTimeout`` carries the last value. The probe runs at
    least once, even with ``seconds`` 0 or less. Between probes it sleeps ``backoff(attempt)``, at most ``ceiling``
    (0: no pause, for a probe that waits on the server itself) and never past the deadline. ``on_retry(value,
    attempt)`` is called before each pause, only when another probe follows (e.g. to warn that a busy answer is
    retried).
    """
    deadline = clock() + max(0.0, seconds)
    attempt = 0
    while True:
        done, value = probe()
        if done:
            return value
        remaining = deadline - clock()
        if remaining <= 0:
            raise PollTimeout(what, seconds, value)
        if on_retry is not None:
            on_retry(value, attempt)
        sleep(min(backoff(attempt, ceiling=ceiling), remaining))
        attempt += 1
