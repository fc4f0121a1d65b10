"""The SQLite ledger's write paths for holds and settlements: on the event loop when the
database is free, on the thread (which waits for the lock) when another writer holds it,
and grouped in one transaction when several arrive together."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from izzi_proxy.ledger import HoldAsk, SpendLimits, UsageRecord, open_ledger

LIMITS = SpendLimits()


def ask(account_id: int, n: int, amount: int = 100) -> HoldAsk:
    return HoldAsk(account_id, f"r{n}", amount, 1, "me", time.time() + 60)


async def test_a_hold_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = await open_ledger(f"sqlite:///{path}")
    try:
        account = await ledger.create_account("a")
        await ledger.add_credits(account.id, 1000)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        held = asyncio.ensure_future(ledger.place_hold(ask(account.id, 1), LIMITS, time.time()))
        await asyncio.sleep(0.2)
        assert not held.done()  # waiting on the thread, not refused, the loop free meanwhile
        other.execute("COMMIT")
        other.close()
        result = await asyncio.wait_for(held, timeout=5)
        assert result.hold_id is not None and (await ledger.balance_of(account.id)).held == 100
    finally:
        await ledger.aclose()


async def test_writes_that_arrive_together_each_get_their_own_answer(tmp_path: Path) -> None:
    ledger = await open_ledger(f"sqlite:///{tmp_path}/ledger.sqlite3")
    try:
        account = await ledger.create_account("a")
        await ledger.add_credits(account.id, 1000)
        # 15 holds of 100 at once on 1000: ten are placed, five refused, in one group
        results = await asyncio.gather(*(ledger.place_hold(ask(account.id, n), LIMITS, time.time()) for n in range(15)))
        placed = [r.hold_id for r in results if r.hold_id is not None]
        assert len(placed) == 10 and [r.reason for r in results].count("balance") == 5
        record = UsageRecord(request_id="r", endpoint="/v1/chat/completions", started_at=time.time())
        settled = await asyncio.gather(
            *(ledger.settle(h, 7, record, time.time()) for h in placed),
            ledger.settle(placed[0], 7, record, time.time()),
        )
        assert sum(s is not None for s in settled) == 10  # the repeated settlement settles nothing
        balance = await ledger.balance_of(account.id)
        assert (balance.balance, balance.held, balance.holds) == (930, 0, 0)
    finally:
        await ledger.aclose()
