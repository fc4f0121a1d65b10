"""The limiter: requests per minute, requests in flight, requests per day, and failed
authentications per IP, behind one narrow interface.

Backends: ``memory.py`` (one process, the default) and ``redis.py`` (several processes
sharing one Redis; each check-and-consume is one atomic Lua script, one round trip).
``limiter_url`` picks one: ``memory://`` or ``redis://host:6379/0``.

**Requests per minute: GCRA** (the generic cell rate algorithm, a token bucket kept as one
timestamp). A plan's whole minute may come at once, then requests refill evenly, one every
60/rpm seconds. It needs one value per account (a sliding log needs one per request), its
answer gives ``remaining`` and the time the bucket is full again exactly, and it has no
window edge at which twice the limit could pass.

**In flight:** a lease per request, held until its answer (or stream) ends, renewed while it
runs, and expiring by itself ``lease_ttl_s`` after its last renewal if the process holding
it dies. **Per day:** a counter per UTC day. Nothing is consumed unless all three pass.

Times are passed in (``now``, seconds since the epoch) so tests control the clock; several
gateway hosts sharing Redis need synchronised clocks (NTP), as any distributed limiter does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

Reason = Literal["ip", "rpm", "concurrent", "daily"]


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int
    concurrent: int
    daily: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The limiter's answer for one request (also what a peek reports)."""

    allowed: bool
    reason: Reason | None  # what refused it
    retry_after_s: float  # when refused: how long until it could pass
    remaining: int  # requests left in the per-minute bucket
    reset_at: float  # when the per-minute bucket is full again (epoch seconds)
    in_flight: int  # leases held (this one included when allowed)
    used_today: int
    lease: str | None = None
    degraded: bool = False  # the shared limiter was unreachable and the policy admitted it


class Limiter(Protocol):
    async def admit(
        self, account: str, limits: Limits, lease_id: str, now: float, lease_ttl_s: float, ip: str | None = None
    ) -> Decision:
        """Refuse a blocked ``ip``; else check all three limits and, only if all pass,
        consume one of each. One atomic step (one Redis round trip)."""

    async def peek(self, account: str, limits: Limits, now: float, ip: str | None = None) -> Decision:
        """Where the account stands (and whether ``ip`` is blocked), consuming nothing."""

    async def renew(self, account: str, lease_id: str, now: float, lease_ttl_s: float) -> None: ...
    async def release(self, account: str, lease_id: str) -> None: ...

    async def auth_failed(self, ip: str, now: float, max_failures: int, window_s: float, block_s: float) -> float:
        """Count a failed authentication from ``ip``; seconds it is now blocked (0: not)."""

    async def ping(self) -> None:
        """One round trip to the shared store (``/readyz``); raises if it cannot be made."""

    async def aclose(self) -> None: ...


def next_utc_midnight(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).date()
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC).timestamp()


def utc_day(now: float) -> str:
    """The UTC day of a timestamp, ``YYYYMMDD`` (POSIX days are 86,400 s: the day number
    names it, so formatting runs once a day, not once per request)."""
    return _day_name(int(now // 86400))


@functools.lru_cache(maxsize=4)
def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y%m%d")


def gcra(tat: float, now: float, rpm: int) -> tuple[bool, float, float, int]:
    """One GCRA step: (allowed, new theoretical arrival time, retry after, remaining)."""
    interval = 60.0 / rpm
    start = max(tat, now)
    if start - now > (rpm - 1) * interval + 1e-9:
        retry = start - now - (rpm - 1) * interval
        return False, tat, retry, 0
    new_tat = start + interval
    return True, new_tat, 0.0, max(0, math.floor((rpm * interval - (new_tat - now)) / interval + 1e-9))


def gcra_peek(tat: float, now: float, rpm: int) -> int:
    interval = 60.0 / rpm
    return max(0, math.floor((rpm * interval - (max(tat, now) - now)) / interval + 1e-9))


class LimiterBusy(Exception):
    """The shared limiter is healthy but every pooled connection stayed busy for the whole
    bounded wait: this call gets the failure policy; it says nothing about the backend."""


async def open_limiter(url: str, pool_size: int = 64, pool_timeout_s: float = 1.0) -> Limiter:
    if url.startswith("memory://"):
        from izzi_proxy.limiter.memory import MemoryLimiter

        return MemoryLimiter()
    if url.startswith(("redis://", "rediss://")):
        from izzi_proxy.limiter.redis import RedisLimiter

        return await RedisLimiter.open(url, pool_size, pool_timeout_s)
    raise ValueError(f"no limiter backend for {url!r}")
