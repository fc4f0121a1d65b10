"""Calls made in one turn of the event loop, sent together at its end.

Under load many requests reach the same step (a limiter admission, a ledger hold) in the
same turn of the loop. ``PerTurn`` gathers them and hands the whole list to one function,
which makes one round trip for all of them (a Redis pipeline, one SQL statement) and gives
back a result or an exception for each; each caller gets its own. A lone call is a list of
one, with no wait: the batch goes out at the end of the turn in which it was made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Batch = Callable[[list[T]], Awaitable[list[R | Exception]]]


class PerTurn(Generic[T, R]):
    def __init__(self, send: Batch[T, R]) -> None:
        self._send = send
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def call(self, item: T) -> asyncio.Future[R]:
        """The future of ``item``'s result. Cancelling it does not take the item back: it
        goes out with its batch (as a call already sent would), and its result is dropped."""
        loop = asyncio.get_running_loop()
        if not self._queue:
            loop.call_soon(self._flush)
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._deliver(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except Exception as exc:  # the round trip failed: every call of it fails
            results = [exc] * len(batch)
        except BaseException:  # cancelled (the loop is closing): the callers too
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        """Wait for the batches on their way."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
