"""The circuit breaker and the key pool, on a clock the tests move; and the upstream's
Retry-After that rests a key."""

from __future__ import annotations

import email.utils
import time

from izzi_proxy.health import Breaker, KeyPool
from izzi_proxy.upstream_http import retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = Clock()
    breaker = Breaker(failures=3, open_s=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    breaker.success()  # a success in between starts the count again
    for _ in range(2):
        breaker.failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow() and breaker.retry_in() == 30
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # one probe at a time
    breaker.failure()  # the probe failed: open again, for a full period
    assert breaker.state == "open" and breaker.retry_in() == 30
    clock.now += 30
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()
    assert breaker.view() == {"state": "closed", "consecutive_failures": 0, "retry_in_s": 0.0}


def test_a_probe_that_ends_neither_way_lets_another_in() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, open_s=5, clock=clock)
    breaker.failure()
    clock.now += 5
    assert breaker.allow() and not breaker.allow()
    breaker.release()
    assert breaker.allow()


def test_keys_take_turns_rest_on_their_own_and_are_disabled() -> None:
    clock = Clock()
    pool = KeyPool(["sk-aaaaaaaaaaaaaaaaaaaa1", "sk-bbbbbbbbbbbbbbbbbbbb2", "sk-cccccccccccccccccccc3"], 30, clock)
    picked = [pool.pick().value[-1] for _ in range(6)]  # type: ignore[union-attr]
    assert picked == ["1", "2", "3", "1", "2", "3"]
    first = pool.keys[0]
    pool.cool(first, 7)  # the upstream's Retry-After
    assert [pool.pick().value[-1] for _ in range(4)] == ["2", "3", "2", "3"]  # type: ignore[union-attr]
    pool.disable(pool.keys[1], "HTTP 401")
    assert [pool.pick().value[-1] for _ in range(2)] == ["3", "3"]  # type: ignore[union-attr]
    pool.cool(pool.keys[2], None)  # no Retry-After: the configured rest
    assert pool.pick() is None and pool.ready_in() == 7
    clock.now += 7
    assert pool.pick() is first
    views = pool.view()
    assert [v["state"] for v in views] == ["ready", "disabled", "cooling"]
    assert views[1]["disabled_because"] == "HTTP 401" and views[2]["cooling_for_s"] == 23
    assert all("aaaaaaaaaaaa" not in v["key"] for v in views) and views[0]["key"] == "sk-a…aaa1"
    pool.disable(first, "HTTP 403")
    pool.disable(pool.keys[2], "HTTP 401")
    assert pool.pick() is None and pool.ready_in() is None


def test_an_upstream_without_a_key_has_one_keyless_slot() -> None:
    pool = KeyPool([], 30)
    key = pool.pick()
    assert key is not None and key.value is None and pool.view()[0]["key"] == "(none)"


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after("7") == 7.0 and retry_after("0.5") == 0.5
    assert retry_after(None) is None and retry_after("") is None and retry_after("soon") is None
    assert retry_after("-3") == 0.0 and retry_after("99999") == 3600.0 and retry_after("nan") is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after(when) or 0) <= 30
