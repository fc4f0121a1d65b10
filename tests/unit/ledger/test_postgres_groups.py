"""The PostgreSQL ledger sends the holds (and the settlements) of one event-loop turn as one
statement: each still gets its own answer, exactly as one by one; accounts are locked in id
order, so two processes never deadlock; one bad item fails alone (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
import pytest

from izzi_proxy.ledger import HoldAsk, SpendLimits, UsageRecord, open_ledger
from izzi_proxy.ledger import postgres as pg

from .conftest import POSTGRES_URL

LIMITS = SpendLimits()


@pytest.fixture
async def pg_url():
    schema = "test_" + secrets.token_hex(6)
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{POSTGRES_URL}?search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def ask(account_id: int, request_id: str, amount: int = 100) -> HoldAsk:
    return HoldAsk(account_id, request_id, amount, 1, "me", time.time() + 60, {"model": "m"})


def record(request_id: str, account_id: int) -> UsageRecord:
    return UsageRecord(request_id=request_id, endpoint="/v1/chat/completions", started_at=time.time(),
                       account_id=account_id, model="m", status=200, extra={"n": 1})  # fmt: skip


@pytest.fixture
def statements(monkeypatch) -> dict[str, list[int]]:
    """The size of every grouped statement, and the groups tried again one by one."""
    seen: dict[str, list[int]] = {"holds": [], "settles": [], "one_by_one": []}
    for name, key in (("_place_holds", "holds"), ("_settle_many", "settles")):
        original = getattr(pg.PostgresLedger, name)

        async def counted(self, asks, original=original, key=key):
            seen[key].append(len(asks))
            return await original(self, asks)

        monkeypatch.setattr(pg.PostgresLedger, name, counted)
    one_by_one = pg._one_by_one

    async def counted_one_by_one(call, asks):
        seen["one_by_one"].append(len(asks))
        return await one_by_one(call, asks)

    monkeypatch.setattr(pg, "_one_by_one", counted_one_by_one)
    return seen


async def test_holds_and_settlements_of_one_turn_go_as_one_statement_each(pg_url, statements) -> None:
    ledger = await open_ledger(pg_url)
    try:
        account = await ledger.create_account("a")
        await ledger.add_credits(account.id, 1000)
        # 15 holds of 100 at once on 1000: ten placed, five refused, in one statement
        results = await asyncio.gather(*(ledger.place_hold(ask(account.id, f"r{n}"), LIMITS, time.time())
                                         for n in range(15)))  # fmt: skip
        assert statements["holds"] == [15]
        placed = [r.hold_id for r in results if r.hold_id is not None]
        assert len(placed) == 10 and [r.reason for r in results].count("balance") == 5
        assert sorted(r.held for r in results if r.hold_id is not None) == list(range(100, 1001, 100))
        # each settles with its own record; the same hold twice settles once
        records = [record(f"r{n}", account.id) for n in range(10)]
        settled = await asyncio.gather(
            *(ledger.settle(h, 7 * (n + 1), records[n], time.time()) for n, h in enumerate(placed)),
            ledger.settle(placed[0], 7, record("again", account.id), time.time()),
        )
        assert statements["settles"] == [11] and statements["one_by_one"] == []
        assert [s.charged for s in settled[:10]] == [7 * (n + 1) for n in range(10)] and settled[10] is None
        assert [r.cost for r in records] == [7 * (n + 1) for n in range(10)]
        balance = await ledger.balance_of(account.id)
        assert (balance.balance, balance.held, balance.holds) == (1000 - 7 * 55, 0, 0)
        stored = {r.request_id: r for r in await ledger.usage_records(account_id=account.id, limit=100)}
        assert sorted(stored) == sorted(f"r{n}" for n in range(10))  # no record for the repeat
        assert stored["r3"].cost == 28 and stored["r3"].extra == {"n": 1} and stored["r3"].model == "m"
    finally:
        await ledger.aclose()


async def test_one_bad_hold_fails_alone(pg_url, statements) -> None:
    ledger = await open_ledger(pg_url)
    try:
        account = await ledger.create_account("a")
        await ledger.add_credits(account.id, 1000)
        results = await asyncio.gather(
            ledger.place_hold(ask(account.id, "good-1"), LIMITS, time.time()),
            ledger.place_hold(ask(account.id, "bad\x00id"), LIMITS, time.time()),  # PostgreSQL refuses NUL
            ledger.place_hold(ask(account.id, "good-2"), LIMITS, time.time()),
            return_exceptions=True,
        )
        assert statements["holds"] == [3] and statements["one_by_one"] == [3]
        assert isinstance(results[1], asyncpg.PostgresError)
        assert results[0].hold_id is not None and results[2].hold_id is not None
        assert (await ledger.balance_of(account.id)).held == 200
    finally:
        await ledger.aclose()


async def test_two_processes_grouping_across_the_same_accounts_never_deadlock(pg_url, statements) -> None:
    """Each group locks its accounts in id order, whatever order its requests came in. Two
    groups in opposite orders, held up by a third writer on an account in the middle, would
    each hold what the other waits for once it lets go."""
    ledgers = [await open_ledger(pg_url) for _ in range(2)]
    other = await asyncpg.connect(pg_url)
    try:
        accounts = [await ledgers[0].create_account(f"a{i}") for i in range(4)]
        for account in accounts:
            await ledgers[0].add_credits(account.id, 10**9)
        blocker = other.transaction()
        await blocker.start()
        await other.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", accounts[2].id)
        groups = [
            [ledger.place_hold(ask(a.id, f"{side}-{a.id}"), LIMITS, time.time()) for a in order]
            for side, (ledger, order) in enumerate(zip(ledgers, (accounts, accounts[::-1]), strict=True))
        ]
        held = asyncio.gather(*groups[0], *groups[1])
        await asyncio.sleep(0.3)  # both groups are waiting on the blocked account by now
        assert not held.done()
        await blocker.commit()
        results = await asyncio.wait_for(held, 10)
        assert all(r.hold_id is not None for r in results)
        assert statements["holds"] == [4, 4] and statements["one_by_one"] == []  # a deadlock would be
    finally:
        await other.close()
        for ledger in ledgers:
            await ledger.aclose()
