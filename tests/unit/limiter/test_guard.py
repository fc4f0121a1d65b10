"""The failure policy when the shared limiter is unreachable: open admits and says so,
closed refuses with 503; neither waits on a dead backend, and both recover by themselves."""

from __future__ import annotations

import pytest

from izzi_proxy.errors import LimiterUnavailable
from izzi_proxy.limiter import Limits
from izzi_proxy.limiter import guard as guard_module
from izzi_proxy.limiter.guard import GuardedLimiter
from izzi_proxy.limiter.memory import MemoryLimiter

LIMITS = Limits(rpm=2, concurrent=5, daily=100)


class Flaky(MemoryLimiter):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def admit(self, *args, **kwargs):
        self.calls += 1
        if self.down:
            raise ConnectionError("Redis is gone")
        return await super().admit(*args, **kwargs)


async def test_open_policy_admits_and_says_so(monkeypatch, caplog) -> None:
    clock = [1000.0]
    monkeypatch.setattr(guard_module.time, "monotonic", lambda: clock[0])
    backend = Flaky()
    limiter = GuardedLimiter(backend, "open")
    backend.down = True
    first = await limiter.admit("a", LIMITS, "l1", 0.0, 30)
    assert first.allowed and first.degraded and first.lease is None
    assert "unreachable" in caplog.text
    calls = backend.calls
    for _ in range(5):  # within the back-off: the backend is not even tried
        assert (await limiter.admit("a", LIMITS, "l", 0.0, 30)).degraded
    assert backend.calls == calls
    backend.down = False
    clock[0] += guard_module.BACKOFF_S + 0.1
    back = await limiter.admit("a", LIMITS, "l2", 0.0, 30)
    assert back.allowed and not back.degraded  # limits are back, counted again
    assert (await limiter.admit("a", LIMITS, "l3", 0.0, 30)).allowed
    assert (await limiter.admit("a", LIMITS, "l4", 0.0, 30)).reason == "rpm"


async def test_closed_policy_refuses_with_503() -> None:
    backend = Flaky()
    backend.down = True
    limiter = GuardedLimiter(backend, "closed")
    with pytest.raises(LimiterUnavailable) as caught:
        await limiter.admit("a", LIMITS, "l", 0.0, 30)
    assert caught.value.status == 503 and caught.value.headers()["Retry-After"] == "1"
