"""The shared limiter: several gateway processes, one Redis (``redis.asyncio``).

Each admission is one atomic Lua script (``admit.lua``); releasing a lease is a second
command, after the answer has gone. The commands of one turn of the event loop, every
request's together, go to Redis as one pipeline (``Pipelined``): one round trip and one
socket write for all of them, instead of one each with its own connection from the pool.
Keys carry the account or IP and expire by themselves. Commands time out quickly
(``TIMEOUT_S``) so an unreachable Redis never makes a request wait; what happens then is
``guard.py``'s policy. Connections come from a blocking pool of ``[storage]
limiter_pool_size``: under a burst larger than the pool a call waits up to
``limiter_pool_timeout_s`` for one (a pool that refused at once would turn a busy, healthy
Redis into failures); a call that waited that long raises ``LimiterBusy``. A pipeline that
fails (Redis down, a timeout) fails each of its calls, and each then gets the policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from izzi_proxy.batching import PerTurn
from izzi_proxy.limiter import Decision, LimiterBusy, Limits, next_utc_midnight, utc_day

T = TypeVar("T")
TIMEOUT_S = 0.5
PREFIX = "izzi:"
_HERE = Path(__file__).parent


def _leases(account: str) -> str:
    return f"{PREFIX}acct:{account}:leases"


def _sha(script: str) -> str:
    """A Lua script's name for ``EVALSHA``."""
    return hashlib.sha1(script.encode()).hexdigest()  # Redis's own naming, not for security


def _keys(account: str, now: float, ip: str | None) -> list[str]:
    a = f"{PREFIX}acct:{account}"
    return [f"{a}:tat", _leases(account), f"{a}:day:{utc_day(now)}", f"{PREFIX}ip:{ip or '-'}:blocked"]


class Pipelined:
    """Commands sent together: those issued in one turn of the event loop go out at its end
    as one pipeline (``batching.PerTurn``; no MULTI: each command is atomic on its own, as a
    script is). Lua scripts go by their SHA (``EVALSHA``); one Redis does not know yet (it
    restarted) is loaded and its commands sent again."""

    def __init__(self, client: Redis, scripts: dict[str, str]) -> None:
        self._redis = client
        self._scripts = scripts  # sha -> source
        self._turn: PerTurn[tuple[Any, ...], Any] = PerTurn(self._send)

    def call(self, *command: Any) -> asyncio.Future[Any]:
        return self._turn.call(command)

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        results = await self._execute(commands)
        again = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if again:  # Redis restarted empty: load the scripts, then send only those commands again
            for sha in {commands[i][1] for i in again}:
                await self._redis.script_load(self._scripts[sha])
            for i, result in zip(again, await self._execute([commands[i] for i in again]), strict=True):
                results[i] = result
        return results

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if len(commands) == 1:  # alone: no pipeline object to build
            try:
                return [await self._redis.execute_command(*commands[0])]
            except NoScriptError as err:
                return [err]
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute(raise_on_error=False)

    async def aclose(self) -> None:
        await self._turn.aclose()


class RedisLimiter:
    def __init__(self, client: Redis) -> None:
        self._redis = client
        admit, auth_failed = ((_HERE / name).read_text() for name in ("admit.lua", "auth_failed.lua"))
        self._admit, self._auth_failed = _sha(admit), _sha(auth_failed)
        self._pipe = Pipelined(client, {self._admit: admit, self._auth_failed: auth_failed})

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
            self._pipe.call("EVALSHA", self._admit, 4, *_keys(account, now, ip), *args)
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
        await self._call(self._pipe.call("ZADD", _leases(account), "XX", int((now + lease_ttl_s) * 1000), lease_id))

    async def release(self, account: str, lease_id: str) -> None:
        await self._call(self._pipe.call("ZREM", _leases(account), lease_id))

    async def auth_failed(self, ip: str, now: float, max_failures: int, window_s: float, block_s: float) -> float:
        keys = [f"{PREFIX}ip:{ip}:failures", f"{PREFIX}ip:{ip}:blocked"]
        args = [int(now * 1000), max_failures, int(window_s * 1000), int(block_s * 1000), secrets.token_hex(6)]
        return int(await self._call(self._pipe.call("EVALSHA", self._auth_failed, 2, *keys, *args))) / 1000

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def aclose(self) -> None:
        await self._pipe.aclose()
        await self._redis.aclose()
