"""Each upstream's health, as the router sees it: a circuit breaker and a pool of API keys.

**Breaker.** ``failures`` consecutive failures (unreachable, timed out, 5xx, overloaded, an
error before the first content) open it: for ``open_s`` the upstream is skipped, costing no
latency. Then one request is let through (half-open): its success closes the breaker, its
failure opens it again. A 4xx that is the client's fault is not the upstream's failure.

**Key pool.** An upstream may have several keys (``api_keys``). They take turns; a key that
got a 429 cools down on its own for the upstream's ``Retry-After`` (or ``key_cooldown_s``),
and a key the upstream refused (401, 403) is disabled until the gateway restarts or the
operator resets the upstream (``POST /admin/upstreams/{name}/reset``). The others carry
on. Keys are shown only masked.

State is per process (each process learns its upstreams' health on its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from izzi_proxy.masking import mask_key

Clock = Callable[[], float]


class Breaker:
    __slots__ = ("_clock", "_failures", "_limit", "_open_s", "_probing", "opened_at", "state")

    def __init__(self, failures: int, open_s: float, clock: Clock = time.monotonic) -> None:
        self._limit, self._open_s, self._clock = failures, open_s, clock
        self._failures = 0
        self._probing = False
        self.state = "closed"  # closed | open | half_open
        self.opened_at = 0.0

    def allow(self) -> bool:
        """Whether to try the upstream now (an open breaker past its time lets one probe in)."""
        if self.state == "closed":
            return True
        if self.state == "open" and self._clock() - self.opened_at >= self._open_s:
            self.state, self._probing = "half_open", False
        if self.state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def retry_in(self) -> float:
        return max(0.0, self.opened_at + self._open_s - self._clock()) if self.state == "open" else 0.0

    def success(self) -> None:
        self.state, self._failures, self._probing = "closed", 0, False

    def failure(self) -> None:
        self._failures += 1
        if self.state == "half_open" or self._failures >= self._limit:
            self.state, self.opened_at, self._probing = "open", self._clock(), False

    def reset(self) -> None:
        self.state, self._failures, self._probing, self.opened_at = "closed", 0, False, 0.0

    def release(self) -> None:
        """The probe ended neither way (the client's own fault, say): let another one in."""
        self._probing = False

    def view(self) -> dict[str, Any]:
        return {"state": self.state, "consecutive_failures": self._failures, "retry_in_s": round(self.retry_in(), 1)}


@dataclass(slots=True)
class PooledKey:
    value: str | None  # None: the upstream takes no key
    cooled_until: float = 0.0
    disabled: str | None = None  # why, once the upstream refused it
    uses: int = 0

    @property
    def shown(self) -> str:
        return mask_key(self.value) if self.value else "(none)"


class KeyPool:
    def __init__(self, keys: Sequence[str | None], cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self.keys = [PooledKey(k) for k in keys] or [PooledKey(None)]
        self._cooldown_s, self._clock = cooldown_s, clock
        self._next = 0

    def pick(self) -> PooledKey | None:
        """The next usable key in turn, or None while every key is cooling or disabled."""
        now = self._clock()
        for step in range(len(self.keys)):
            key = self.keys[(self._next + step) % len(self.keys)]
            if key.disabled is None and key.cooled_until <= now:
                self._next = (self._next + step + 1) % len(self.keys)
                key.uses += 1
                return key
        return None

    def cool(self, key: PooledKey, retry_after: float | None) -> None:
        key.cooled_until = self._clock() + (retry_after if retry_after is not None else self._cooldown_s)

    def disable(self, key: PooledKey, why: str) -> None:
        key.disabled = why

    def reset(self) -> None:
        """Every key usable again (the operator fixed what the upstream refused)."""
        for key in self.keys:
            key.cooled_until, key.disabled = 0.0, None

    def ready_in(self) -> float | None:
        """Seconds until a cooling key is usable again; None when every key is disabled."""
        now = self._clock()
        waits = [max(0.0, k.cooled_until - now) for k in self.keys if k.disabled is None]
        return min(waits) if waits else None

    def view(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [
            {
                "key": k.shown,
                "state": "disabled" if k.disabled else "cooling" if k.cooled_until > now else "ready",
                "cooling_for_s": round(max(0.0, k.cooled_until - now), 1),
                "disabled_because": k.disabled,
                "uses": k.uses,
            }
            for k in self.keys
        ]


@dataclass(slots=True)
class UpstreamHealth:
    breaker: Breaker
    keys: KeyPool

    def view(self) -> dict[str, Any]:
        return {"breaker": self.breaker.view(), "keys": self.keys.view()}

    def reset(self) -> None:
        self.breaker.reset()
        self.keys.reset()
