"""The one poll loop (plugins/module_utils/_poll.py), on a fake clock: no test waits for real time."""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils._poll import (
    FIRST_SLEEP,
    MAX_SLEEP,
    PollTimeout,
    backoff,
    poll,
)


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def answers(*values):
    """A probe answering ``values`` in turn (each ``(done, value)``); the last one repeats."""
    calls = []

    def probe():
        calls.append(1)
        return values[min(len(calls), len(values)) - 1]

    probe.calls = calls
    return probe


def test_returns_the_value_of_the_first_done_probe():
    fake = FakeClock()
    probe = answers((False, "a"), (False, "b"), (True, "c"))
    assert poll(probe, 10, "x", sleep=fake.sleep, clock=fake.clock) == "c"
    assert len(probe.calls) == 3
    assert fake.sleeps == [FIRST_SLEEP, FIRST_SLEEP * 2]


def test_backoff_doubles_up_to_the_ceiling_and_never_overflows():
    assert [backoff(a) for a in range(5)] == [0.05, 0.1, 0.2, 0.4, MAX_SLEEP]
    assert backoff(10_000) == MAX_SLEEP
    assert backoff(3, ceiling=0.15) == 0.15


def test_deadline_raises_with_the_last_value_and_never_sleeps_past_it():
    fake = FakeClock()
    probe = answers((False, 1), (False, 2), (False, 3))
    with pytest.raises(PollTimeout) as caught:
        poll(probe, 1.0, "shard Active", sleep=fake.sleep, clock=fake.clock)
    assert caught.value.last == 3
    assert str(caught.value) == "shard Active: not reached within 1 s"
    assert sum(fake.sleeps) == pytest.approx(1.0)  # the last pause is cut to the deadline
    assert max(fake.sleeps) <= MAX_SLEEP


@pytest.mark.parametrize("seconds", [0, -5])
def test_probe_runs_once_with_no_time(seconds):
    fake = FakeClock()
    probe = answers((False, "busy"))
    with pytest.raises(PollTimeout):
        poll(probe, seconds, "x", sleep=fake.sleep, clock=fake.clock)
    assert len(probe.calls) == 1 and fake.sleeps == []


def test_ceiling_zero_means_no_pause():
    """For a probe that waits on the server itself (a long-poll)."""
    fake = FakeClock()
    probe = answers((False, None), (False, None), (True, "ok"))
    fake_sleeps = []

    def sleep(seconds):
        fake_sleeps.append(seconds)

    assert poll(probe, 5, "x", ceiling=0, sleep=sleep, clock=fake.clock) == "ok"
    assert fake_sleeps == [0, 0]


def test_on_retry_only_when_another_probe_follows():
    fake = FakeClock()
    retried = []
    probe = answers((False, "409"), (False, "503"), (False, "409"))
    with pytest.raises(PollTimeout):
        poll(
            probe,
            FIRST_SLEEP * 3,  # room for exactly two pauses
            "x",
            sleep=fake.sleep,
            clock=fake.clock,
            on_retry=lambda value, attempt: retried.append((value, attempt)),
        )
    assert retried == [("409", 0), ("503", 1)]  # not for the third answer: the deadline passed
    assert len(probe.calls) == 3


def test_probe_exceptions_propagate():
    def probe():
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        poll(probe, 10, "x", sleep=lambda s: None)
