"""The in-flight leases of this process: renewed together, released off the answer's path.

One task renews every held lease each third of its TTL (all together: one pipeline on
Redis), so a long stream keeps its slot and a dead process's slots expire. A release goes
out in the background once the answer has been handed over, so a shared limiter's round
trip never delays the answer. An admission refused for concurrency while this process still
has releases in flight for the account waits for them and asks once more, so a client
asking again at once is not refused by its own finished request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time

from izzi_proxy.limiter import Limiter


class LeaseKeeper:
    def __init__(self, limiter: Limiter, ttl_s: float) -> None:
        self._limiter = limiter
        self._ttl = ttl_s
        self._prefix = secrets.token_hex(4) + "-"  # lease ids unique across processes
        self._count = itertools.count()
        self._held: dict[str, str] = {}  # lease -> account
        self._releasing: dict[str, set[asyncio.Task[None]]] = {}  # account -> releases in flight
        self._task: asyncio.Task[None] | None = None

    def new_id(self) -> str:
        return self._prefix + str(next(self._count))

    def hold(self, account: str, lease: str) -> None:
        self._held[lease] = account

    def release(self, account: str, lease: str) -> None:
        self._held.pop(lease, None)
        task = asyncio.get_running_loop().create_task(self._limiter.release(account, lease))
        pending = self._releasing.setdefault(account, set())
        pending.add(task)
        task.add_done_callback(lambda t: self._done(account, t))

    def _done(self, account: str, task: asyncio.Task[None]) -> None:
        pending = self._releasing.get(account)
        if pending is not None:
            pending.discard(task)
            if not pending:
                del self._releasing[account]

    async def settle(self, account: str) -> bool:
        """Wait for this account's releases in flight; whether there were any."""
        pending = self._releasing.get(account)
        if not pending:
            return False
        await asyncio.wait(list(pending))
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="izzi-lease-keeper")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            await self.renew_all(time.time())

    async def renew_all(self, now: float) -> None:
        """Renew every held lease, all at once: on Redis one pipeline for all of them, not a
        round trip each (a failure is the limiter guard's to count, not raised here)."""
        held = list(self._held.items())
        await asyncio.gather(*(self._limiter.renew(account, lease, now, self._ttl) for lease, account in held))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if pending := [t for tasks in self._releasing.values() for t in tasks]:
            await asyncio.wait(pending, timeout=5)
