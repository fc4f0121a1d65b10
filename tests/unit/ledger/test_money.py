"""The ledger's money, one contract for both backends: holds within the balance, the rolling
window and the month; settlement exactly once, never past the balance; top-ups as entries
with idempotency keys; and the books balancing to the micro-credit under concurrency,
from one connection or several (as several gateway processes would)."""

from __future__ import annotations

import asyncio
import random

import pytest

from izzi_proxy.canonical import Usage
from izzi_proxy.ledger import (
    BUCKET_S,
    WINDOW_S,
    Checkpoint,
    HoldAsk,
    IdempotencyConflict,
    SpendLimits,
    UsageRecord,
    open_ledger,
)
from izzi_proxy.pricing import MICRO

NOW = 1_800_000_100.0  # a fixed clock: 100 s into a 5-minute bucket, mid-month (2027-01-15)
NONE = SpendLimits()


def ask(account_id: int, amount: int, request_id: str = "req", cost: int = 0, owner: str = "p1") -> HoldAsk:
    return HoldAsk(account_id, request_id, amount, cost, owner, NOW + 60, {"model": "m", "request_id": request_id})


def record(request_id: str, account_id: int) -> UsageRecord:
    return UsageRecord(request_id, "/v1/chat/completions", NOW, account_id=account_id, usage=Usage(10, 5))


async def funded(ledger, credits: int, name: str = "acme") -> int:
    account = await ledger.create_account(name, "pro")
    if credits:
        await ledger.add_credits(account.id, credits * MICRO, now=NOW)
    return account.id


async def books_balance(ledger, account_id: int) -> int:
    """Top-ups less charges, checked against the balance; the balance."""
    credited = sum(e.amount for e in await ledger.credit_entries(account_id))
    charged = sum(r.cost for r in await ledger.usage_records(account_id=account_id, limit=100_000))
    balance = await ledger.balance_of(account_id)
    assert credited - charged == balance.balance
    assert balance.balance >= 0
    return balance.balance


async def test_a_hold_reserves_and_a_settlement_charges_once(ledger) -> None:
    acme = await funded(ledger, 1)
    placed = await ledger.place_hold(ask(acme, 400_000, cost=1_000), NONE, NOW)
    assert placed.hold_id is not None and (placed.balance, placed.held) == (MICRO, 400_000)
    assert (await ledger.balance_of(acme)).available == 600_000

    settled = await ledger.settle(placed.hold_id, 123_456, record("req", acme), NOW)
    assert (settled.charged, settled.balance) == (123_456, MICRO - 123_456)
    assert await ledger.settle(placed.hold_id, 123_456, record("req", acme), NOW) is None  # exactly once
    (written,) = await ledger.usage_records(request_id="req")
    assert (written.cost, written.unbilled, written.usage) == (123_456, 0, Usage(10, 5))
    balance = await ledger.balance_of(acme)
    assert (balance.balance, balance.held, balance.holds) == (MICRO - 123_456, 0, 0)
    assert await books_balance(ledger, acme) == MICRO - 123_456


async def test_a_hold_beyond_the_balance_less_open_holds_is_refused(ledger) -> None:
    acme = await funded(ledger, 1)
    first = await ledger.place_hold(ask(acme, 700_000), NONE, NOW)
    refused = await ledger.place_hold(ask(acme, 300_001, "req2"), NONE, NOW)
    assert refused.hold_id is None and refused.reason == "balance" and refused.available == 300_000
    assert (await ledger.place_hold(ask(acme, 300_000, "req3"), NONE, NOW)).hold_id is not None
    assert (await ledger.place_hold(ask(acme, 1, "req4"), NONE, NOW)).reason == "balance"
    await ledger.settle(first.hold_id, 0, record("req", acme), NOW)  # released, nothing charged
    assert (await ledger.balance_of(acme)).available == 700_000
    broke = await funded(ledger, 0, "broke")
    assert (await ledger.place_hold(ask(broke, 1), NONE, NOW)).reason == "balance"
    assert (await ledger.place_hold(ask(999_999, 1), NONE, NOW)).reason == "account"


async def test_a_settlement_never_takes_what_other_holds_reserved(ledger) -> None:
    acme = await funded(ledger, 1)
    mine = await ledger.place_hold(ask(acme, 200_000, "mine"), NONE, NOW)
    await ledger.place_hold(ask(acme, 700_000, "theirs"), NONE, NOW)
    # the answer cost more than its hold (the input was underestimated): it may take the free
    # 100,000 beside its own 200,000, not the other request's reservation
    settled = await ledger.settle(mine.hold_id, 500_000, record("mine", acme), NOW)
    assert settled.charged == 300_000
    (written,) = await ledger.usage_records(request_id="mine")
    assert (written.cost, written.unbilled) == (300_000, 200_000)
    assert (await ledger.balance_of(acme)).available == 0


async def test_extending_a_hold(ledger) -> None:
    acme = await funded(ledger, 1)
    hold = (await ledger.place_hold(ask(acme, 500_000), NONE, NOW)).hold_id
    assert await ledger.extend_hold(hold, 300_000, 1, NONE, NOW) == 300_000
    assert await ledger.extend_hold(hold, 300_000, 1, NONE, NOW) == 200_000  # what is left
    assert await ledger.extend_hold(hold, 300_000, 1, NONE, NOW) == 0
    assert (await ledger.balance_of(acme)).held == MICRO
    other = await funded(ledger, 1, "other")
    hold2 = (await ledger.place_hold(ask(other, 900_000, "r2"), NONE, NOW)).hold_id
    assert await ledger.extend_hold(hold2, 500_000, 200_000, NONE, NOW) == 0  # not even what it needs
    await ledger.settle(hold2, 0, record("r2", other), NOW)
    assert await ledger.extend_hold(hold2, 1, 1, NONE, NOW) == 0  # settled
    (settled,) = await ledger.open_holds(account_id=acme)
    assert settled.amount == MICRO


async def test_the_rolling_window_counts_spend_and_holds(ledger) -> None:
    acme = await funded(ledger, 100)
    limits = SpendLimits(window=10 * MICRO)
    first = await ledger.place_hold(ask(acme, 6 * MICRO, "a"), limits, NOW)
    await ledger.settle(first.hold_id, 6 * MICRO, record("a", acme), NOW)
    open_one = await ledger.place_hold(ask(acme, 3 * MICRO, "b"), limits, NOW)
    refused = await ledger.place_hold(ask(acme, MICRO + 1, "c"), limits, NOW)
    assert (refused.reason, refused.window_spent, refused.held) == ("quota", 6 * MICRO, 3 * MICRO)
    assert (await ledger.place_hold(ask(acme, MICRO, "c"), limits, NOW)).hold_id is not None
    assert await ledger.extend_hold(open_one.hold_id, 1, 1, limits, NOW) == 0
    assert await ledger.window_spend(acme, NOW) == [(int(NOW // BUCKET_S), 6 * MICRO)]

    # the charge leaves the window once its 5-minute bucket is more than 5 hours old
    still = NOW + WINDOW_S - 1
    assert (await ledger.place_hold(ask(acme, MICRO, "d"), limits, still)).reason == "quota"
    later = (NOW // BUCKET_S + 1) * BUCKET_S + WINDOW_S
    assert (await ledger.place_hold(ask(acme, 6 * MICRO, "d"), limits, later)).hold_id is not None
    assert await ledger.window_spend(acme, later) == []
    await ledger.purge_spend(later)
    assert await ledger.window_spend(acme, NOW) == []


async def test_the_monthly_budget(ledger) -> None:
    acme = await funded(ledger, 100)
    limits = SpendLimits(month=5 * MICRO)
    hold = await ledger.place_hold(ask(acme, 4 * MICRO, "a"), limits, NOW)
    await ledger.settle(hold.hold_id, 4 * MICRO, record("a", acme), NOW)
    refused = await ledger.place_hold(ask(acme, MICRO + 1, "b"), limits, NOW)
    assert (refused.reason, refused.month_spent) == ("budget", 4 * MICRO)
    assert await ledger.month_spend(acme, NOW) == 4 * MICRO
    next_month = NOW + 32 * 86400
    assert (await ledger.place_hold(ask(acme, 5 * MICRO, "b"), limits, next_month)).hold_id is not None
    # a window and a budget together: the tighter one refuses, and says which
    both = SpendLimits(window=100 * MICRO, month=5 * MICRO)
    assert (await ledger.place_hold(ask(acme, MICRO, "c"), both, NOW)).reason == "budget"


async def test_top_ups_are_entries_and_idempotent(ledger) -> None:
    acme = await funded(ledger, 0)
    entry, new = await ledger.add_credits(acme, 10 * MICRO, bonus=MICRO, note="VietQR 250k", idempotency_key="pay-1")
    assert new and (entry.amount, entry.bonus, entry.note) == (11 * MICRO, MICRO, "VietQR 250k")
    again, new = await ledger.add_credits(acme, 10 * MICRO, bonus=MICRO, idempotency_key="pay-1")
    assert not new and again == entry
    with pytest.raises(IdempotencyConflict):
        await ledger.add_credits(acme, 20 * MICRO, idempotency_key="pay-1")
    await ledger.add_credits(acme, 500_000)
    assert (await ledger.balance_of(acme)).balance == 11_500_000
    assert [e.amount for e in await ledger.credit_entries(acme)] == [11 * MICRO, 500_000]
    with pytest.raises(LookupError):
        await ledger.add_credits(424242, MICRO)


async def test_checkpoints_push_expiry_and_save_progress(ledger) -> None:
    acme = await funded(ledger, 1)
    mine = (await ledger.place_hold(ask(acme, 1000, "a", cost=10, owner="p1"), NONE, NOW)).hold_id
    theirs = (await ledger.place_hold(ask(acme, 1000, "b", cost=10, owner="p2"), NONE, NOW)).hold_id
    # placed by p1, but the reply was lost: p1 refused that request and does not know the hold
    orphan = (await ledger.place_hold(ask(acme, 1000, "c", cost=10, owner="p1"), NONE, NOW)).hold_id
    await ledger.checkpoint_holds("p1", [Checkpoint(mine, 250, 40, 30)], NOW + 600)
    held = {h.id: h for h in await ledger.open_holds(account_id=acme)}
    assert (held[mine].cost, held[mine].input_tokens, held[mine].output_tokens) == (250, 40, 30)
    assert held[mine].expires_at == NOW + 600 and held[theirs].expires_at == NOW + 60
    assert held[mine].detail == {"model": "m", "request_id": "a"}
    assert [h.id for h in await ledger.open_holds(expired_at=NOW + 61)] == [theirs, orphan]


async def test_usage_summary(ledger) -> None:
    acme, other = await funded(ledger, 10), await funded(ledger, 10, "other")
    day = 86400.0
    rows = [(acme, "gpt", NOW, 100), (acme, "claude", NOW + 1, 200), (other, "gpt", NOW + day, 300)]
    for i, (account, model, at, cost) in enumerate(rows):
        hold = await ledger.place_hold(ask(account, 1000, f"r{i}"), NONE, at)
        rec = UsageRecord(
            f"r{i}",
            "/v1/messages",
            at,
            key_id=i,
            account_id=account,
            model=model,
            usage=Usage(1, 2),
            upstream="up-" + model,
        )
        await ledger.settle(hold.hold_id, cost, rec, at)
    await ledger.record_usages([UsageRecord("e", "/v1/messages", NOW, account_id=acme, model="gpt", outcome="error")])
    by_model = {s.group: s for s in await ledger.usage_summary("model", NOW - 1)}
    assert (by_model["gpt"].requests, by_model["gpt"].errors, by_model["gpt"].cost) == (3, 1, 400)
    assert by_model["claude"].output_tokens == 2
    assert [s.group for s in await ledger.usage_summary("account", 0)] == ["acme", "other"]
    assert [(s.group, s.cost) for s in await ledger.usage_summary("day", 0, account_id=acme)] == [("2027-01-15", 300)]
    assert len(await ledger.usage_summary("key", 0)) == 4
    assert [s.cost for s in await ledger.usage_summary("model", NOW + day)] == [300]
    assert [(s.group, s.requests) for s in await ledger.usage_summary("upstream", 0)] == [
        ("-", 1),
        ("up-claude", 1),
        ("up-gpt", 2),
    ]
    daily = [(s.day, s.group, s.cost) for s in await ledger.usage_summary("model", 0, daily=True)]
    assert daily == [("2027-01-15", "claude", 200), ("2027-01-15", "gpt", 100), ("2027-01-16", "gpt", 300)]
    assert all(s.day is None for s in await ledger.usage_summary("model", 0))
    assert [r.request_id for r in await ledger.usage_records(failed=True)] == ["e"]
    assert [r.request_id for r in await ledger.usage_records(failed=True, account_id=other)] == []


@pytest.mark.parametrize("connections", [1, 3])
async def test_concurrent_requests_never_overspend(url: str, connections: int) -> None:
    """Many requests at once against a balance that covers a few, through one connection or
    several (as several gateway processes), each holding, then settling a random cost up
    to (and sometimes past) its hold: never below zero, each charged once, books exact."""
    ledgers = [await open_ledger(url) for _ in range(connections)]
    try:
        acme = await funded(ledgers[0], 1)  # 1 credit; each request holds 0.1
        rng = random.Random(7)

        async def one(i: int) -> int:
            ledger = ledgers[i % connections]
            placed = await ledger.place_hold(ask(acme, 100_000, f"r{i}", owner=f"p{i % connections}"), NONE, NOW)
            if placed.hold_id is None:
                return 0
            await asyncio.sleep(rng.random() / 100)
            cost = rng.choice([0, 1, 99_999, 100_000, 150_000])
            settled = await ledger.settle(placed.hold_id, cost, record(f"r{i}", acme), NOW)
            assert settled is not None
            return 1

        admitted = sum(await asyncio.gather(*(one(i) for i in range(60))))
        assert 10 <= admitted < 60
        assert len(await ledgers[0].usage_records(account_id=acme, limit=1000)) == admitted
        balance = await books_balance(ledgers[-1], acme)
        assert balance >= 0 and (await ledgers[0].balance_of(acme)).held == 0
    finally:
        for ledger in ledgers:
            await ledger.aclose()
