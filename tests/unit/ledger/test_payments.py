"""The ledger's payment records, on both backends: a guarded move is atomic (of many racing
for one payment exactly one wins), a notification is kept once, credits of a kind."""

from __future__ import annotations

import asyncio
import time

import pytest

from izzi_proxy.ledger import IdempotencyConflict, Payment


def payment(pid: str, account_id: int | None = None, state: str = "created", **kw) -> Payment:
    now = time.time()
    fields = {"credits": 10_000_000, "currency": "VND", "amount": "260000", "details": {"qr_payload": "000201"}, **kw}
    return Payment(pid, "bank", account_id, state, created_at=now, updated_at=now, **fields)


async def test_create_get_list(ledger) -> None:
    acc = await ledger.create_account("payer")
    assert await ledger.create_payment(payment("IZAAAAAAAAAA", acc.id)) is True
    assert await ledger.create_payment(payment("IZAAAAAAAAAA", acc.id, credits=1)) is False  # the first stays
    await ledger.create_payment(payment("IZBBBBBBBBBB", None, state="unmatched"))
    got = await ledger.get_payment("IZAAAAAAAAAA")
    assert (got.account_id, got.credits, got.state, got.details) == (
        acc.id,
        10_000_000,
        "created",
        {"qr_payload": "000201"},
    )
    assert await ledger.get_payment("IZNOPENOPENO") is None
    assert [p.id for p in await ledger.list_payments(account_id=acc.id)] == ["IZAAAAAAAAAA"]
    assert [p.id for p in await ledger.list_payments(state="unmatched")] == ["IZBBBBBBBBBB"]
    assert len(await ledger.list_payments()) == 2


async def test_move_is_guarded_and_atomic(ledger) -> None:
    acc = await ledger.create_account("payer")
    await ledger.create_payment(payment("IZCCCCCCCCCC", acc.id))
    assert await ledger.move_payment("IZCCCCCCCCCC", "paid", ("credited",), time.time(), paid=1) is None
    racers = [ledger.move_payment("IZCCCCCCCCCC", "paid", ("created", "pending"), time.time(), paid=5_000_000 + i,
                                  paid_by=f"event-{i}") for i in range(20)]  # fmt: skip
    won = [p for p in await asyncio.gather(*racers) if p is not None]
    assert len(won) == 1
    stored = await ledger.get_payment("IZCCCCCCCCCC")
    assert (stored.state, stored.paid, stored.paid_by) == ("paid", won[0].paid, won[0].paid_by)
    with pytest.raises(ValueError, match="credits"):
        await ledger.move_payment("IZCCCCCCCCCC", "paid", ("paid",), time.time(), credits=1)
    moved = await ledger.move_payment("IZCCCCCCCCCC", "credited", ("paid",), time.time(), credited=5_500_000)
    assert (moved.state, moved.credited) == ("credited", 5_500_000)


async def test_events_kept_once(ledger) -> None:
    now = time.time()
    args = ("bank", "Vietcombank:1", "IZDDDDDDDDDD", "paid", "applied", "FT1", {"id": 1})
    assert await ledger.record_payment_event(*args, now) is True
    assert await ledger.record_payment_event(*args, now) is False
    assert await ledger.record_payment_event("bank", None, None, "rejected", "rejected", "bad key", {}, now)
    assert await ledger.record_payment_event("bank", None, None, "rejected", "rejected", "bad key", {}, now)
    events = await ledger.payment_events("IZDDDDDDDDDD")
    assert [(e.event_id, e.outcome, e.body) for e in events] == [("Vietcombank:1", "applied", {"id": 1})]
    assert len(await ledger.payment_events()) == 3


async def test_credit_kinds(ledger) -> None:
    acc = await ledger.create_account("payer")
    entry, new = await ledger.add_credits(acc.id, 0, bonus=2_500_000, kind="bonus", idempotency_key="payment:X:bonus")
    assert (entry.kind, entry.amount, entry.bonus, new) == ("bonus", 2_500_000, 2_500_000, True)
    assert (await ledger.add_credits(acc.id, 0, bonus=2_500_000, kind="bonus", idempotency_key="payment:X:bonus"))[
        1
    ] is False
    with pytest.raises(IdempotencyConflict):  # the same key for a top-up of another kind
        await ledger.add_credits(acc.id, 0, bonus=2_500_000, idempotency_key="payment:X:bonus")
    assert (await ledger.balance_of(acc.id)).balance == 2_500_000
