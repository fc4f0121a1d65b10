"""How the SQLite ledger's writes reach the file: transactions, and group commit for the
holds and settlements on every request's path.

A write is one ``BEGIN IMMEDIATE`` transaction (``@transaction``): SQLite's write lock is
taken first, so each check-and-update is atomic across connections and processes.
``GroupCommit`` runs the writes that arrive together in one transaction, each in a
savepoint of its own. When the ledger's thread is idle, the writes of one turn of the
event loop run at its end on the loop itself, on a second connection that never waits for
a lock (a thread hop costs more CPU, ~0.1 ms, than a transaction) and never checkpoints
the WAL (that could fsync on the loop: the thread does it, passively). When the database
is busy (the thread is writing, or another process is) they go to the thread, which waits
for the lock and commits whatever has gathered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
Run = Callable[..., Awaitable[Any]]  # fn(db, *args) on the ledger's thread

log = logging.getLogger("izzi.ledger")
INLINE_BATCH = 32  # at most this many writes in one transaction on the event loop
INLINE_CHECKPOINT = 500  # transactions on the loop's connection between two WAL checkpoints


def setup(db: sqlite3.Connection, busy_timeout_ms: int = 10000, autocheckpoint: int = 1000) -> None:
    db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    _wal(db, max(busy_timeout_ms / 1000, 1.0))
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")


def _wal(db: sqlite3.Connection, patience_s: float) -> None:
    """WAL mode. Switching a new database to it while another process does the same can be
    refused at once (SQLITE_BUSY, with no busy handler called): tried again until then."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if not busy(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def wal_checkpoint(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def transaction(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn(db, ...)`` as one write transaction (taking the write lock first)."""

    def run(db: sqlite3.Connection, *args: Any) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db, *args)
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
        return result

    run.body = fn  # type: ignore[attr-defined]  # for in_one_transaction
    return run


def deliver(batch: list[tuple[Any, Any, asyncio.Future]], results: list) -> None:
    for (_, _, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


def in_one_transaction(db: sqlite3.Connection, batch: list[tuple[Callable[..., Any], tuple]]) -> list:
    """Several write operations in one transaction (group commit), each in a savepoint of
    its own: one that raises is undone alone. Their results, or the exceptions they raised."""
    db.execute("BEGIN IMMEDIATE")
    results: list = []
    try:
        for fn, args in batch:
            db.execute("SAVEPOINT op")
            try:
                results.append(fn.body(db, *args))
            except Exception as err:
                db.execute("ROLLBACK TO op")
                results.append(err)
            db.execute("RELEASE op")
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
    return results


def busy(err: sqlite3.OperationalError) -> bool:
    """Another connection holds the write lock (SQLITE_BUSY, or one of its extended codes)."""
    return (err.sqlite_errorcode or 0) & 0xFF == sqlite3.SQLITE_BUSY


def rollback(db: sqlite3.Connection) -> None:
    """End a failed transaction (a failed COMMIT may have ended it already)."""
    if db.in_transaction:
        db.execute("ROLLBACK")


class GroupCommit:
    """Holds and settlements: on the loop when the database is free, grouped either way."""

    def __init__(self, run: Run, inline: sqlite3.Connection | None) -> None:
        self._run = run
        self._inline = inline  # None (an in-memory database): every write goes to the thread
        self._inline_writes = 0
        self._flushing = False
        self._checkpointing: asyncio.Future[Any] | None = None
        self._group: list[tuple[Callable[..., Any], tuple, asyncio.Future]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` (a ``@transaction``): a hold or a settlement, on the request's path.

        Group commit: the writes that arrive together share one transaction. When the thread
        is idle, those of one turn of the event loop run at its end on the loop itself, on a
        second connection that never waits for a lock (a thread hop costs more CPU, ~0.1 ms,
        than a transaction). When the database is busy (the thread is writing, or another
        process is) they go to the thread, which commits whatever has gathered meanwhile in
        one transaction."""
        future = asyncio.get_running_loop().create_future()
        self._group.append((fn, args, future))
        if self._draining is None and not self._flushing:
            if self._inline is not None:
                self._flushing = True
                asyncio.get_running_loop().call_soon(self._flush_inline)
            else:
                self._draining = asyncio.ensure_future(self._drain())
        return await future

    def _flush_inline(self) -> None:
        self._flushing = False
        if self._draining is not None or not self._group:
            return
        batch, self._group = self._group[:INLINE_BATCH], self._group[INLINE_BATCH:]
        try:
            if len(batch) == 1:
                fn, args, _ = batch[0]
                try:
                    results = [fn(self._inline, *args)]
                except sqlite3.OperationalError as err:
                    if busy(err):
                        raise
                    results = [err]
            else:
                results = in_one_transaction(self._inline, [(fn, args) for fn, args, _ in batch])
        except sqlite3.OperationalError as err:
            if not busy(err):
                results = [err] * len(batch)
            else:  # someone else is writing: the thread waits for the lock instead of the loop
                self._group[:0] = batch
                self._draining = asyncio.ensure_future(self._drain())
                return
        except Exception as err:
            results = [err] * len(batch)
        deliver(batch, results)
        self._wrote_inline()
        if self._group:
            self._draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self._group:
                batch, self._group = self._group, []
                try:
                    if len(batch) == 1:
                        fn, args, _ = batch[0]
                        results = [await self._run(fn, *args)]
                    else:
                        results = await self._run(in_one_transaction, [(fn, args) for fn, args, _ in batch])
                except Exception as err:
                    results = [err] * len(batch)
                deliver(batch, results)
        finally:
            self._draining = None

    def _wrote_inline(self) -> None:
        """The inline connection never checkpoints the WAL itself (that could fsync on the
        event loop): every ``INLINE_CHECKPOINT`` of its writes, the thread does, passively."""
        self._inline_writes += 1
        if self._inline_writes % INLINE_CHECKPOINT == 0 and self._checkpointing is None:
            self._checkpointing = asyncio.ensure_future(self._run(wal_checkpoint))
            self._checkpointing.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[Any]) -> None:
        self._checkpointing = None
        if not done.cancelled() and done.exception() is not None:
            log.warning("WAL checkpoint failed: %s", done.exception())

    async def aclose(self) -> None:
        if self._draining is not None:
            await self._draining
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
        if self._inline is not None:
            self._inline.close()
