"""Keeps the in-flight leases of this process alive: one task renews them all every third
of their TTL, so a long stream keeps its slot, and a dead process's slots expire."""

from __future__ import annotations

import asyncio
import contextlib
import time

from izzi_proxy.limiter import Limiter


class LeaseKeeper:
    def __init__(self, limiter: Limiter, ttl_s: float) -> None:
        self._limiter = limiter
        self._ttl = ttl_s
        self._leases: dict[str, str] = {}  # lease -> account
        self._task: asyncio.Task[None] | None = None

    def hold(self, account: str, lease: str) -> None:
        self._leases[lease] = account

    def drop(self, lease: str) -> None:
        self._leases.pop(lease, None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="izzi-lease-keeper")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            now = time.time()
            for lease, account in list(self._leases.items()):
                await self._limiter.renew(account, lease, now, self._ttl)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
