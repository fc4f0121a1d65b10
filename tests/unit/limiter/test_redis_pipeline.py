"""The Redis limiter sends the calls of one event-loop turn as one pipeline: each call still
gets its own answer, scripts Redis has forgotten are loaded again, and a pipeline that
fails fails each of its calls (real Redis, ``IZZI_TEST_REDIS_URL``)."""

from __future__ import annotations

import asyncio
import secrets
import socket

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from izzi_proxy.limiter import Limits, open_limiter
from izzi_proxy.limiter.guard import GuardedLimiter
from izzi_proxy.limiter.leases import LeaseKeeper
from izzi_proxy.limiter.redis import RedisLimiter

from .test_limiters import REDIS_URL, T0, TTL


@pytest.fixture
async def redis_limiter():
    limiter = await open_limiter(REDIS_URL)
    assert isinstance(limiter, RedisLimiter)
    await limiter.ping()  # a missing Redis fails here, loudly
    yield limiter
    await limiter.aclose()


def count_round_trips(limiter: RedisLimiter) -> list[int]:
    """The number of commands in each round trip the limiter makes from now on."""
    sizes: list[int] = []
    execute = limiter._pipe._execute

    async def counted(commands):
        sizes.append(len(commands))
        return await execute(commands)

    limiter._pipe._execute = counted
    return sizes


async def test_calls_of_one_turn_share_a_round_trip_and_each_gets_its_answer(redis_limiter) -> None:
    account = "pipe-" + secrets.token_hex(6)
    limits = Limits(rpm=10, concurrent=1000, daily=10_000)
    sizes = count_round_trips(redis_limiter)
    decisions = await asyncio.gather(*(redis_limiter.admit(account, limits, f"l{i}", T0, TTL) for i in range(30)))
    assert sizes == [30]
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10  # the script ran once per call, in order, atomically
    assert sorted(d.remaining for d in allowed) == list(range(10))
    assert all(d.reason == "rpm" for d in decisions if not d.allowed)
    # a release and a peek in the same turn: one round trip, both answered
    released, state = await asyncio.gather(
        redis_limiter.release(account, "l0"), redis_limiter.peek(account, limits, T0)
    )
    assert sizes == [30, 2]
    assert released is None and state.remaining == 0


async def test_scripts_redis_forgot_are_loaded_again_alone_or_in_a_pipeline(redis_limiter) -> None:
    account = "noscript-" + secrets.token_hex(6)
    limits = Limits(rpm=1000, concurrent=2, daily=10_000)
    await redis_limiter._redis.script_flush()  # as after a restart
    assert (await redis_limiter.admit(account, limits, "a", T0, TTL)).allowed  # alone
    await redis_limiter._redis.script_flush()
    sizes = count_round_trips(redis_limiter)
    # the release is no script: it went through the first time, and is not sent again
    _, b, c = await asyncio.gather(
        redis_limiter.release(account, "a"),
        redis_limiter.admit(account, limits, "b", T0, TTL),
        redis_limiter.admit(account, limits, "c", T0, TTL),
    )
    assert sizes == [3, 2]  # the two admissions again, once their script was loaded
    assert b.allowed and c.allowed and c.in_flight == 2
    assert (await redis_limiter.admit(account, limits, "d", T0, TTL)).reason == "concurrent"


async def test_a_failed_pipeline_fails_each_of_its_calls_at_once() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    limiter = await open_limiter(f"redis://127.0.0.1:{port}/0")
    limits = Limits(rpm=1000, concurrent=1000, daily=10_000)
    try:
        async with asyncio.timeout(5):
            results = await asyncio.gather(
                *(limiter.admit("gone", limits, f"l{i}", T0, TTL) for i in range(5)),
                limiter.release("gone", "x"),
                return_exceptions=True,
            )
    finally:
        await limiter.aclose()
    assert len(results) == 6 and all(isinstance(r, RedisConnectionError) for r in results), results


async def test_the_lease_keeper_renews_every_lease_in_one_round_trip(redis_limiter) -> None:
    account = "renew-" + secrets.token_hex(6)
    limits = Limits(rpm=1000, concurrent=100, daily=10_000)
    keeper = LeaseKeeper(GuardedLimiter(redis_limiter, "open"), TTL)
    for _ in range(40):
        lease_id = keeper.new_id()
        assert (await redis_limiter.admit(account, limits, lease_id, T0, TTL)).allowed
        keeper.hold(account, lease_id)
    sizes = count_round_trips(redis_limiter)
    await keeper.renew_all(T0 + 20)
    assert sizes == [40]
    # renewed until T0 + 50: all 40 still in flight at T0 + 40, when unrenewed ones would be gone
    assert (await redis_limiter.peek(account, limits, T0 + 40)).in_flight == 40
