"""The in-process limiter: the default for one gateway process. Plain dicts; each call
runs without awaiting, so it is atomic on the event loop. Expired state is dropped as it is
met, and a sweep keeps idle accounts and IPs from accumulating."""

from __future__ import annotations

from dataclasses import dataclass, field

from izzi_proxy.limiter import Decision, Limits, gcra, gcra_peek, next_utc_midnight, utc_day

_SWEEP_EVERY = 10_000  # calls


@dataclass(slots=True)
class _Account:
    tat: float = 0.0
    seen: float = 0.0  # the latest time a request was counted at (see admit.lua)
    leases: dict[str, float] = field(default_factory=dict)  # lease -> expiry
    day: str = ""
    used_today: int = 0


@dataclass(slots=True)
class _IP:
    failures: list[float] = field(default_factory=list)
    blocked_until: float = 0.0


class MemoryLimiter:
    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self._ips: dict[str, _IP] = {}
        self._calls = 0

    def _account(self, account: str, now: float) -> _Account:
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = _Account()
        if state.leases:
            for lease in [k for k, expiry in state.leases.items() if expiry <= now]:
                del state.leases[lease]
        if state.day != (today := utc_day(now)):
            state.day, state.used_today = today, 0
        return state

    def _blocked(self, ip: str | None, now: float) -> float:
        state = self._ips.get(ip) if ip is not None else None
        return max(0.0, state.blocked_until - now) if state is not None else 0.0

    async def admit(
        self, account: str, limits: Limits, lease_id: str, now: float, lease_ttl_s: float, ip: str | None = None
    ) -> Decision:
        s = self._account(account, now)
        now = max(now, s.seen)  # a request stamped before one already counted is counted at its time
        if blocked := self._blocked(ip, now):
            return Decision(False, "ip", blocked, gcra_peek(s.tat, now, limits.rpm), max(s.tat, now),
                            len(s.leases), s.used_today)  # fmt: skip
        if s.used_today >= limits.daily:
            remaining = gcra_peek(s.tat, now, limits.rpm)
            return Decision(False, "daily", next_utc_midnight(now) - now, remaining, max(s.tat, now),
                            len(s.leases), s.used_today)  # fmt: skip
        allowed, tat, retry, remaining = gcra(s.tat, now, limits.rpm)
        if not allowed:
            return Decision(False, "rpm", retry, 0, max(s.tat, now), len(s.leases), s.used_today)
        if len(s.leases) >= limits.concurrent:
            soonest = min(s.leases.values()) - now
            return Decision(False, "concurrent", min(1.0, soonest), gcra_peek(s.tat, now, limits.rpm),
                            max(s.tat, now), len(s.leases), s.used_today)  # fmt: skip
        s.tat, s.seen = tat, now
        s.leases[lease_id] = now + lease_ttl_s
        s.used_today += 1
        return Decision(True, None, 0.0, remaining, tat, len(s.leases), s.used_today, lease_id)

    async def peek(self, account: str, limits: Limits, now: float, ip: str | None = None) -> Decision:
        s = self._account(account, now)
        blocked = self._blocked(ip, now)
        return Decision(not blocked, "ip" if blocked else None, blocked, gcra_peek(s.tat, now, limits.rpm),
                        max(s.tat, now), len(s.leases), s.used_today)  # fmt: skip

    async def renew(self, account: str, lease_id: str, now: float, lease_ttl_s: float) -> None:
        state = self._accounts.get(account)
        if state is not None and lease_id in state.leases:
            state.leases[lease_id] = now + lease_ttl_s

    async def release(self, account: str, lease_id: str) -> None:
        state = self._accounts.get(account)
        if state is not None:
            state.leases.pop(lease_id, None)

    async def auth_failed(self, ip: str, now: float, max_failures: int, window_s: float, block_s: float) -> float:
        state = self._ips.setdefault(ip, _IP())
        if state.blocked_until > now:
            return state.blocked_until - now
        state.failures = [t for t in state.failures if t > now - window_s]
        state.failures.append(now)
        if len(state.failures) >= max_failures:
            state.failures.clear()
            state.blocked_until = now + block_s
            return block_s
        return 0.0

    def _sweep(self, now: float) -> None:
        today = utc_day(now)
        for key in [k for k, s in self._accounts.items() if not s.leases and s.tat <= now and s.day != today]:
            del self._accounts[key]
        for key in [
            k
            for k, s in self._ips.items()
            if s.blocked_until <= now and (not s.failures or s.failures[-1] < now - 86400)
        ]:
            del self._ips[key]

    async def ping(self) -> None:
        pass  # in this process: always there

    async def aclose(self) -> None:
        pass
