"""What happens when the shared limiter cannot answer a call: the configured policy, for
that call.

``open``: the request is admitted, a warning is logged (at most every ``WARN_EVERY_S``) and
the answer says ``x-ratelimit-degraded: true``. ``closed``: 503 ``service_unavailable`` with
Retry-After. A call that fails gets the policy on its own: a busy connection pool
(``LimiterBusy``) or one command that timed out never degrades anyone else's request. Only
a backend that failed ``FAILURES_TO_TRIP`` calls in a row is taken for down: calls then skip
it for ``BACKOFF_S`` (no request waits on a timeout meanwhile), then the next call tries it
again, so limits come back by themselves. While the backend cannot count failed
authentications, this process counts them (``MemoryLimiter``), so IP blocking goes on.
Never silently per-process: a degraded answer says so.
"""

from __future__ import annotations

import logging
import time

from izzi_proxy.errors import LimiterUnavailable
from izzi_proxy.limiter import Decision, Limiter, LimiterBusy, Limits
from izzi_proxy.limiter.memory import MemoryLimiter

log = logging.getLogger("izzi.limiter")

FAILURES_TO_TRIP = 3
BACKOFF_S = 1.0
WARN_EVERY_S = 10.0


class GuardedLimiter:
    def __init__(self, backend: Limiter, policy: str) -> None:
        self._backend = backend
        self._policy = policy
        self._local = MemoryLimiter()  # failed authentications, while the backend cannot count them
        self._failures = 0  # real failures in a row
        self._down_until = 0.0
        self._warned = 0.0

    @property
    def degraded(self) -> bool:
        """The backend is taken for down: calls skip it for now."""
        return time.monotonic() < self._down_until

    def _failed(self, exc: BaseException | None) -> None:
        now = time.monotonic()
        if exc is not None and not isinstance(exc, LimiterBusy):
            self._failures += 1
            if self._failures >= FAILURES_TO_TRIP:
                self._down_until = now + BACKOFF_S
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            action = "admitting" if self._policy == "open" else "refusing (503)"
            log.warning("the limiter could not answer (%r); %s the requests it could not check", exc, action)

    def _fallback(self, exc: BaseException | None, limits: Limits) -> Decision:
        self._failed(exc)
        if self._policy == "closed":
            raise LimiterUnavailable(
                "Rate limits cannot be checked right now; try again shortly", retry_after_s=BACKOFF_S
            )
        return Decision(True, None, 0.0, limits.rpm, time.time(), 0, 0, None, degraded=True)

    async def admit(
        self, account: str, limits: Limits, lease_id: str, now: float, lease_ttl_s: float, ip: str | None = None
    ) -> Decision:
        if self.degraded:
            return self._fallback(None, limits)
        try:
            decision = await self._backend.admit(account, limits, lease_id, now, lease_ttl_s, ip)
        except Exception as exc:
            return self._fallback(exc, limits)
        self._failures = 0
        return decision

    async def peek(self, account: str, limits: Limits, now: float, ip: str | None = None) -> Decision:
        if self.degraded:
            return self._fallback(None, limits)
        try:
            decision = await self._backend.peek(account, limits, now, ip)
        except Exception as exc:
            return self._fallback(exc, limits)
        self._failures = 0
        return decision

    async def renew(self, account: str, lease_id: str, now: float, lease_ttl_s: float) -> None:
        if not self.degraded:
            try:
                await self._backend.renew(account, lease_id, now, lease_ttl_s)
            except Exception as exc:
                self._failed(exc)

    async def release(self, account: str, lease_id: str) -> None:
        try:  # tried even when degraded: a lease left behind blocks the account until it expires
            await self._backend.release(account, lease_id)
        except Exception as exc:
            self._failed(exc)

    async def auth_failed(self, ip: str, now: float, max_failures: int, window_s: float, block_s: float) -> float:
        if not self.degraded:
            try:
                blocked = await self._backend.auth_failed(ip, now, max_failures, window_s, block_s)
            except Exception as exc:
                self._failed(exc)
            else:
                self._failures = 0
                return blocked
        return await self._local.auth_failed(ip, now, max_failures, window_s, block_s)

    async def ping(self) -> None:
        """The backend itself, whatever the policy (readiness is about the real state)."""
        await self._backend.ping()

    async def aclose(self) -> None:
        await self._backend.aclose()
