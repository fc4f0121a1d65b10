"""The failure policy when the shared limiter cannot answer: open admits and says so,
closed refuses with 503, for the call that failed only; a backend that fails several calls
in a row is skipped for a moment (no request waits on a dead one), and limits come back
by themselves; failed authentications are counted in process meanwhile."""

from __future__ import annotations

import pytest

from izzi_proxy.errors import LimiterUnavailable
from izzi_proxy.limiter import LimiterBusy, Limits
from izzi_proxy.limiter import guard as guard_module
from izzi_proxy.limiter.guard import FAILURES_TO_TRIP, GuardedLimiter
from izzi_proxy.limiter.memory import MemoryLimiter

LIMITS = Limits(rpm=2, concurrent=5, daily=100)


class Flaky(MemoryLimiter):
    def __init__(self) -> None:
        super().__init__()
        self.failure: Exception | None = None
        self.calls = 0

    async def admit(self, *args, **kwargs):
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return await super().admit(*args, **kwargs)

    async def auth_failed(self, *args, **kwargs):
        if self.failure is not None:
            raise self.failure
        return await super().auth_failed(*args, **kwargs)


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(guard_module.time, "monotonic", lambda: now[0])
    return now


async def test_open_policy_admits_and_says_so(clock, caplog) -> None:
    backend = Flaky()
    limiter = GuardedLimiter(backend, "open")
    backend.failure = ConnectionError("Redis is gone")
    for _ in range(FAILURES_TO_TRIP):  # each failing call gets the policy, and the backend is tried each time
        first = await limiter.admit("a", LIMITS, "l1", 0.0, 30)
        assert first.allowed and first.degraded and first.lease is None
    assert backend.calls == FAILURES_TO_TRIP and "could not answer" in caplog.text
    for _ in range(5):  # down now: within the back-off the backend is not even tried
        assert (await limiter.admit("a", LIMITS, "l", 0.0, 30)).degraded
    assert backend.calls == FAILURES_TO_TRIP
    backend.failure = None
    clock[0] += guard_module.BACKOFF_S + 0.1
    back = await limiter.admit("a", LIMITS, "l2", 0.0, 30)
    assert back.allowed and not back.degraded  # limits are back, counted again
    assert (await limiter.admit("a", LIMITS, "l3", 0.0, 30)).allowed
    assert (await limiter.admit("a", LIMITS, "l4", 0.0, 30)).reason == "rpm"


@pytest.mark.parametrize("failure", [LimiterBusy("No connection available."), TimeoutError("one slow command")])
async def test_one_failing_call_degrades_that_call_only(clock, failure: Exception) -> None:
    backend = Flaky()
    limiter = GuardedLimiter(backend, "open")
    backend.failure = failure
    assert (await limiter.admit("a", LIMITS, "l1", 0.0, 30)).degraded
    backend.failure = None
    after = await limiter.admit("a", LIMITS, "l2", 0.0, 30)  # the very next call is checked
    assert after.allowed and not after.degraded and backend.calls == 2


async def test_a_busy_pool_never_takes_the_backend_for_down(clock) -> None:
    backend = Flaky()
    limiter = GuardedLimiter(backend, "open")
    backend.failure = LimiterBusy("No connection available.")
    for _ in range(10 * FAILURES_TO_TRIP):
        await limiter.admit("a", LIMITS, "l", 0.0, 30)
    assert not limiter.degraded and backend.calls == 10 * FAILURES_TO_TRIP


async def test_closed_policy_refuses_with_503(clock) -> None:
    backend = Flaky()
    backend.failure = ConnectionError("Redis is gone")
    limiter = GuardedLimiter(backend, "closed")
    with pytest.raises(LimiterUnavailable) as caught:
        await limiter.admit("a", LIMITS, "l", 0.0, 30)
    assert caught.value.status == 503 and caught.value.headers()["Retry-After"] == "1"


async def test_failed_authentications_are_counted_in_process_while_the_backend_cannot(clock) -> None:
    backend = Flaky()
    backend.failure = ConnectionError("Redis is gone")
    limiter = GuardedLimiter(backend, "open")
    blocked = [await limiter.auth_failed("10.0.0.9", 100.0, 3, 600, 900) for _ in range(3)]
    assert blocked[:2] == [0.0, 0.0] and blocked[2] == 900
