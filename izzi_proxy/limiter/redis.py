"""The shared limiter: several gateway processes, one Redis (``redis.asyncio``).

Each admission is one atomic Lua script (``admit.lua``), so one round trip; releasing a
lease is a second, after the answer has gone. Keys carry the account or IP and expire by
themselves. Commands time out quickly (``TIMEOUT_S``) so an unreachable Redis never makes a
request wait; what happens then is ``guard.py``'s policy. Connections come from a blocking
pool of ``[storage] limiter_pool_size``: under a burst larger than the pool a call waits up
to ``limiter_pool_timeout_s`` for one (a pool that refused at once would turn a busy,
healthy Redis into failures); a call that waited that long raises ``LimiterBusy``.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from izzi_proxy.limiter import Decision, LimiterBusy, Limits, next_utc_midnight, utc_day

T = TypeVar("T")
TIMEOUT_S = 0.5
PREFIX = "izzi:"
_HERE = Path(__file__).parent


def _leases(account: str) -> str:
    return f"{PREFIX}acct:{account}:leases"


def _keys(account: str, now: float, ip: str | None) -> list[str]:
    a = f"{PREFIX}acct:{account}"
    return [f"{a}:tat", _leases(account), f"{a}:day:{utc_day(now)}", f"{PREFIX}ip:{ip or '-'}:blocked"]


class RedisLimiter:
    def __init__(self, client: Redis) -> None:
        self._redis = client
        self._admit = client.register_script((_HERE / "admit.lua").read_text())
        self._auth_failed = client.register_script((_HERE / "auth_failed.lua").read_text())

    @classmethod
    async def open(cls, url: str, pool_size: int = 64, pool_timeout_s: float = 1.0) -> RedisLimiter:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=pool_size, timeout=pool_timeout_s, socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S, retry_on_timeout=False, health_check_interval=30,
            # once more on a fresh connection when a pooled one is dead (Redis restarted): else
            # each of the pool's connections would fail one request before it is replaced
            retry_on_error=[RedisConnectionError], decode_responses=True,
        )  # fmt: skip
        return cls(Redis.from_pool(pool))  # the client owns the pool: aclose closes its connections

    @staticmethod
    async def _call(command: Awaitable[T]) -> T:
        try:
            return await command
        except RedisConnectionError as exc:
            # The pool's own bounded wait ran out (no connection was free): busy, not down.
            if isinstance(exc.__cause__, TimeoutError) and "No connection available" in str(exc):
                raise LimiterBusy(str(exc)) from exc
            raise

    async def _run(self, account: str, limits: Limits, now: float, ip: str | None, consume: bool,
                   lease_id: str = "", lease_ttl_s: float = 0.0) -> Decision:  # fmt: skip
        midnight = next_utc_midnight(now)
        args = [int(now * 1000), limits.rpm, limits.concurrent, limits.daily, lease_id, int(lease_ttl_s * 1000),
                int((midnight - now) * 1000) + 3_600_000, "1" if ip else "0", "1" if consume else "0"]  # fmt: skip
        allowed, reason, retry, left, reset, flying, today = await self._call(
            self._admit(keys=_keys(account, now, ip), args=args)
        )
        ok = allowed == "1"
        retry_s = midnight - now if reason == "daily" else float(retry) / 1000
        return Decision(ok, reason or None, retry_s, int(left), float(reset) / 1000, int(flying), int(today),  # type: ignore[arg-type]
                        lease_id if ok and consume else None)  # fmt: skip

    async def admit(
        self, account: str, limits: Limits, lease_id: str, now: float, lease_ttl_s: float, ip: str | None = None
    ) -> Decision:
        return await self._run(account, limits, now, ip, True, lease_id, lease_ttl_s)

    async def peek(self, account: str, limits: Limits, now: float, ip: str | None = None) -> Decision:
        return await self._run(account, limits, now, ip, False)

    async def renew(self, account: str, lease_id: str, now: float, lease_ttl_s: float) -> None:
        await self._call(self._redis.zadd(_leases(account), {lease_id: int((now + lease_ttl_s) * 1000)}, xx=True))

    async def release(self, account: str, lease_id: str) -> None:
        await self._call(self._redis.zrem(_leases(account), lease_id))

    async def auth_failed(self, ip: str, now: float, max_failures: int, window_s: float, block_s: float) -> float:
        keys = [f"{PREFIX}ip:{ip}:failures", f"{PREFIX}ip:{ip}:blocked"]
        args = [int(now * 1000), max_failures, int(window_s * 1000), int(block_s * 1000), secrets.token_hex(6)]
        return int(await self._call(self._auth_failed(keys=keys, args=args))) / 1000

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()
