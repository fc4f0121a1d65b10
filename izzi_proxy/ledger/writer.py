"""Usage records written in batches, off the request path (group commit).

``submit`` only queues: no answer waits for the database. One task writes whatever has
queued up since its last write in one transaction, so at low load a record is written
right after its answer ends and under load the batches grow instead of the queue of
writes. A failed write is retried (the batch stays queued). The queue is bounded
(``max_queued``): past it, while the database is down, a record is logged in full at ERROR
instead of queued, as are those still queued when the gateway stops, so none is lost
silently and memory stays bounded. (A billed request's record is written with its
settlement, ``billing.py``, whose retries keep the hold open meanwhile.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

import orjson

from izzi_proxy.ledger import Ledger, UsageRecord

log = logging.getLogger("izzi.usage")


class UsageWriter:
    def __init__(
        self, ledger: Ledger, *, max_batch: int = 500, retry_s: float = 1.0, max_queued: int = 100_000
    ) -> None:
        self._ledger = ledger
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._retry_s = retry_s
        self._queue: list[UsageRecord] = []
        self._behind_since: float | None = None  # when the queue last went from empty to waiting
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="izzi-usage-writer")

    def submit(self, record: UsageRecord) -> None:
        if len(self._queue) >= self._max_queued:
            log.error("usage record not written (%d waiting): %s", len(self._queue), _dumped(record))
            return
        if not self._queue:
            self._behind_since = time.monotonic()
        self._queue.append(record)
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Return once every record submitted so far is written."""
        await self._idle.wait()

    async def aclose(self, timeout_s: float = 10.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for record in self._queue:
            log.error("usage record not written: %s", _dumped(record))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                try:
                    await self._ledger.record_usages(batch)
                except Exception:
                    log.exception("writing %d usage records failed; retrying in %g s", len(batch), self._retry_s)
                    await asyncio.sleep(self._retry_s)
                    continue
                del self._queue[: len(batch)]
                self._behind_since = time.monotonic() if self._queue else None
            self._idle.set()

    @property
    def waiting(self) -> int:
        """Records submitted and not written yet."""
        return len(self._queue)

    @property
    def lag_s(self) -> float:
        """How long records have been waiting to be written (0 when none is)."""
        since = self._behind_since
        return 0.0 if since is None or not self._queue else time.monotonic() - since


def _dumped(record: UsageRecord) -> str:
    return orjson.dumps(dataclasses.asdict(record)).decode()
