"""Each limit with a controlled clock, on both backends: in-process, and a real Redis over
a real connection (``IZZI_TEST_REDIS_URL``, default 127.0.0.1:6379 database 15)."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime

import pytest

from izzi_proxy.limiter import Limits, open_limiter, utc_day

REDIS_URL = os.environ.get("IZZI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC).timestamp()
TTL = 30.0


@pytest.fixture(params=["memory", "redis"])
async def limiter(request):
    limiter = await open_limiter("memory://" if request.param == "memory" else REDIS_URL)
    if request.param == "redis":
        await limiter._redis.ping()  # a missing Redis fails here, loudly: nothing skips
    yield limiter
    await limiter.aclose()


@pytest.fixture
def account() -> str:
    return "test-" + secrets.token_hex(6)  # fresh state on a shared Redis


def lease() -> str:
    return secrets.token_hex(4)


async def test_requests_per_minute_gcra(limiter, account) -> None:
    limits = Limits(rpm=60, concurrent=1000, daily=10_000)
    for i in range(60):  # a whole minute's worth may come at once
        d = await limiter.admit(account, limits, lease(), T0, TTL)
        assert d.allowed and d.remaining == 59 - i
    refused = await limiter.admit(account, limits, lease(), T0, TTL)
    assert (refused.allowed, refused.reason, refused.remaining) == (False, "rpm", 0)
    assert refused.retry_after_s == pytest.approx(1.0, abs=0.01)
    assert refused.reset_at == pytest.approx(T0 + 60, abs=0.01)
    assert not (await limiter.admit(account, limits, lease(), T0 + 0.9, TTL)).allowed
    later = await limiter.admit(account, limits, lease(), T0 + 1.0, TTL)  # one refilled
    assert later.allowed and later.remaining == 0
    rested = await limiter.peek(account, limits, T0 + 61)
    assert rested.remaining == 60  # a full bucket again


async def test_requests_stamped_out_of_order_are_not_refused_for_it(limiter, account) -> None:
    """Two processes stamp requests with their own clock; they may reach the limiter in the
    other order. A full minute's worth still comes at once."""
    limits = Limits(rpm=2, concurrent=1000, daily=10_000)
    assert (await limiter.admit(account, limits, lease(), T0 + 0.005, TTL)).allowed
    assert (await limiter.admit(account, limits, lease(), T0, TTL)).allowed  # stamped 5 ms before the first
    assert (await limiter.admit(account, limits, lease(), T0 + 0.01, TTL)).reason == "rpm"


async def test_concurrency_leases(limiter, account) -> None:
    limits = Limits(rpm=1000, concurrent=2, daily=10_000)
    a = await limiter.admit(account, limits, "a", T0, TTL)
    b = await limiter.admit(account, limits, "b", T0, TTL)
    assert a.allowed and b.allowed and b.in_flight == 2
    refused = await limiter.admit(account, limits, "c", T0, TTL)
    assert (refused.allowed, refused.reason) == (False, "concurrent")
    assert 0 < refused.retry_after_s <= 1
    await limiter.release(account, "a")
    assert (await limiter.admit(account, limits, "c", T0 + 1, TTL)).allowed
    # a lease is renewed while its request runs, and expires by itself when nobody renews it
    await limiter.renew(account, "b", T0 + 20, TTL)
    at_40 = await limiter.peek(account, limits, T0 + 40)
    assert at_40.in_flight == 1  # "c" expired at 31; "b" renewed until 50
    assert (await limiter.admit(account, limits, "d", T0 + 40, TTL)).allowed


async def test_a_refusal_consumes_nothing(limiter, account) -> None:
    limits = Limits(rpm=5, concurrent=1, daily=10)
    assert (await limiter.admit(account, limits, "a", T0, TTL)).allowed
    for _ in range(3):
        assert (await limiter.admit(account, limits, lease(), T0, TTL)).reason == "concurrent"
    state = await limiter.peek(account, limits, T0)
    assert (state.remaining, state.used_today) == (4, 1)


async def test_daily_quota_resets_at_utc_midnight(limiter, account) -> None:
    limits = Limits(rpm=1000, concurrent=1000, daily=3)
    for _ in range(3):
        assert (await limiter.admit(account, limits, lease(), T0, TTL)).allowed
    refused = await limiter.admit(account, limits, lease(), T0, TTL)
    assert (refused.allowed, refused.reason, refused.used_today) == (False, "daily", 3)
    assert refused.retry_after_s == pytest.approx(14 * 3600)  # until 00:00 UTC
    assert (await limiter.admit(account, limits, lease(), T0 + 14 * 3600, TTL)).allowed


async def test_ip_blocking(limiter, account) -> None:
    ip, other = f"203.0.113.{secrets.randbelow(250)}", f"198.51.100.{secrets.randbelow(250)}"
    ip += f"-{account}"  # unique on a shared Redis
    limits = Limits(rpm=1000, concurrent=1000, daily=10_000)
    for i in range(4):
        assert await limiter.auth_failed(ip, T0 + i, 5, 600, 900) == 0
    assert await limiter.auth_failed(other, T0, 5, 600, 900) == 0
    assert await limiter.auth_failed(ip, T0 + 5, 5, 600, 900) == pytest.approx(900)
    blocked = await limiter.admit(account, limits, lease(), T0 + 10, TTL, ip=ip)
    assert (blocked.allowed, blocked.reason) == (False, "ip")
    assert (await limiter.peek(account, limits, T0 + 10, ip=ip)).reason == "ip"
    assert (await limiter.admit(account, limits, lease(), T0 + 10, TTL, ip=other)).allowed


async def test_old_failures_fall_out_of_the_window(limiter) -> None:
    ip = "192.0.2.1-" + secrets.token_hex(4)
    for i in range(4):
        await limiter.auth_failed(ip, T0 + i, 5, 60, 900)
    assert await limiter.auth_failed(ip, T0 + 120, 5, 60, 900) == 0  # the first four are stale


async def test_block_expires(limiter, account) -> None:
    """On Redis the block expires by real time (a key TTL); in memory by the clock given."""
    ip = "192.0.2.2-" + secrets.token_hex(4)
    limits = Limits(rpm=1000, concurrent=1000, daily=10_000)
    assert await limiter.auth_failed(ip, T0, 1, 60, 0.2) > 0
    import asyncio

    await asyncio.sleep(0.25)
    assert (await limiter.admit(account, limits, lease(), T0 + 0.25, TTL, ip=ip)).allowed


def test_the_day_turns_at_midnight_utc() -> None:
    midnight = 1_796_256_000.0  # 2026-12-03T00:00:00Z
    assert utc_day(midnight - 0.001) == "20261202"
    assert utc_day(midnight) == utc_day(midnight + 86399.999) == "20261203"
    assert utc_day(midnight + 86400) == "20261204"
