"""One top-up flow for every payment provider: start, confirm, credit exactly once.

    created ──▶ pending ──▶ paid ──▶ credited ──▶ refunded (recorded; nothing is taken back)
       │           │         ▲
       └───────────┴─▶ failed / expired ─┘   (money that arrives late is still credited)
    unmatched ──(operator assigns an account)──▶ paid ──▶ credited

- Every change of state is one guarded update (``Ledger.move_payment``): of two
  confirmations racing for one payment, one moves it; the other finds it moved.
- The credit is two ledger entries with idempotency keys derived from the payment
  (``payment:<id>`` for what was paid, ``payment:<id>:bonus`` for the bonus), made from the
  payment's own figures. However often, in whatever order, on however many processes a
  confirmation is handled, each entry exists once. A payment left ``paid`` by a process that
  stopped between the two steps is credited by the next confirmation or the sweep.
- States move forward only: a late ``pending`` after ``paid`` changes nothing, a ``paid``
  after ``failed`` or ``expired`` credits (the money did arrive).
- Money that matches no payment, or pays one already paid by another transfer, becomes an
  ``unmatched`` payment of its own (its id derived from the notification, so a repeat of it
  is the same one), kept for the operator to assign. Never dropped.
- Every notification is kept with what it did (``payment_events``); a rejected one (forged,
  tampered) changes nothing and is logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from izzi_proxy.config import PaymentsConfig
from izzi_proxy.errors import InvalidRequest, NotFound, RateLimited
from izzi_proxy.ledger import Account, Ledger, Payment
from izzi_proxy.payments import (
    Confirmation,
    PaymentProvider,
    PaymentUnavailable,
    TopUpRequest,
    WebhookRejected,
)
from izzi_proxy.pricing import AmountError, credits, percent_of, to_micro

log = logging.getLogger("izzi.payments")

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: a reference is typed by hand into a transfer
REFERENCE = re.compile(r"(?=(IZ[A-Z0-9]{10}))")
OPEN = ("created", "pending")
PAYABLE = ("created", "pending", "failed", "expired")
MAX_CANDIDATES = 5
MAX_WAITING = 10  # top-ups of one account waiting to be paid at once (each may be an invoice at a provider)


def new_reference(prefix: str = "IZ") -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(10))


def unmatched_reference(provider: str, event_id: str) -> str:
    digest = hashlib.sha256(f"{provider}\0{event_id}".encode()).digest()
    return "UM" + "".join(ALPHABET[b % 32] for b in digest[:10])


def references_in(text: str) -> list[str]:
    """Candidate references in a transfer's description, as banks pass it on (any case,
    glued to the words around it)."""
    return REFERENCE.findall(re.sub(r"[^A-Z0-9]", " ", text.upper()))[:MAX_CANDIDATES]


@dataclass(frozen=True, slots=True)
class Outcome:
    event_id: str
    payment_id: str | None
    outcome: str  # applied, unchanged, unmatched
    state: str | None


class Payments:
    """The flow over the ledger and the configured providers (``app[PAYMENTS]``)."""

    def __init__(self, ledger: Ledger, config: PaymentsConfig, providers: Mapping[str, PaymentProvider]) -> None:
        self.ledger, self.config, self.providers = ledger, config, dict(providers)

    def provider(self, name: str) -> PaymentProvider:
        found = self.providers.get(name)
        if found is None:
            known = ", ".join(self.providers) or "none is configured"
            raise NotFound(f"No payment provider {name!r}; providers: {known}", param="provider")
        return found

    def bonus_of(self, micro: int) -> int:
        """The bonus a payment of ``micro`` µcr gets: the highest step of the ladder it reaches."""
        pct = next((pct for start, pct in reversed(self.config.bonus) if micro >= start), "0")
        return percent_of(micro, pct)

    def amount_of(self, amount: str | int | float) -> int:
        try:
            micro = to_micro(amount)
        except AmountError as err:
            raise InvalidRequest(f"amount: {err}", param="amount") from None
        low, high = self.config.min_credits, self.config.max_credits
        if not low <= micro <= high:
            raise InvalidRequest(f"A top-up is {credits(low)} to {credits(high)} credits, not {amount}", param="amount")
        return micro

    # starting

    async def start(
        self, account: Account, provider_name: str, amount: str | int | float, base_url: str | None
    ) -> Payment:
        """A new top-up of the account through the provider: its invoice made, or the payment
        kept as failed with the provider's reason (and PaymentUnavailable raised)."""
        provider = self.provider(provider_name)
        micro = self.amount_of(amount)
        waiting = [p for state in OPEN for p in await self.ledger.list_payments(account.id, state, MAX_WAITING)]
        if len(waiting) >= MAX_WAITING:
            soonest = min(p.expires_at or time.time() for p in waiting)
            raise RateLimited(f"{len(waiting)} top-ups are waiting to be paid: pay one, or start a new one once "
                              "one has expired", retry_after_s=max(1.0, soonest - time.time()))  # fmt: skip
        reference = new_reference()
        callback = f"{base_url.rstrip('/')}/payments/{provider_name}/webhook" if base_url else None
        now = time.time()
        try:
            invoice = await provider.create(TopUpRequest(reference, micro, account.name, callback))
        except PaymentUnavailable as err:
            await self.ledger.create_payment(Payment(
                reference, provider_name, account.id, "failed", micro, "USD", credits(micro), now, now,
                bonus=self.bonus_of(micro), detail=f"the invoice was not made: {err}",
            ))  # fmt: skip
            raise
        payment = Payment(
            reference, provider_name, account.id, "created", micro, invoice.currency, invoice.amount, now, now,
            expires_at=invoice.expires_at or now + self.config.invoice_ttl_s, bonus=self.bonus_of(micro),
            external_id=invoice.external_id, pay_url=invoice.pay_url, details=dict(invoice.details),
        )  # fmt: skip
        await self.ledger.create_payment(payment)
        log.info("payment %s started: %s credits for %s through %s", reference, credits(micro), account.name,
                 provider_name)  # fmt: skip
        return payment

    # confirming

    async def webhook(self, provider_name: str, headers: Mapping[str, str], body: bytes, peer: str) -> list[Outcome]:
        provider = self.provider(provider_name)
        try:
            confirmations = provider.parse_webhook(headers, body)
        except WebhookRejected as err:
            log.warning("payment notification to %s from %s rejected: %s", provider_name, peer, err)
            await self.ledger.record_payment_event(provider_name, None, None, "rejected", "rejected",
                                                   f"from {peer}: {err}", {}, time.time())  # fmt: skip
            raise
        return [await self.confirm(provider_name, c) for c in confirmations]

    async def confirm(self, provider_name: str, c: Confirmation) -> Outcome:
        payment = await self._match(provider_name, c)
        if payment is None:
            outcome = await self._unmatched(provider_name, c, "no payment has this reference")
        else:
            outcome = await self._apply(payment, c)
        new = await self.ledger.record_payment_event(
            provider_name, c.event_id, outcome.payment_id, c.status, outcome.outcome, c.detail, dict(c.raw),
            time.time(),
        )  # fmt: skip
        log.info("payment notification %s/%s (%s): %s %s%s", provider_name, c.event_id, c.status, outcome.outcome,
                 outcome.payment_id or "-", "" if new else " (seen before)")  # fmt: skip
        return outcome

    async def _match(self, provider_name: str, c: Confirmation) -> Payment | None:
        candidates = [c.reference] if c.reference else references_in(c.text or "")
        for reference in candidates:
            found = await self.ledger.get_payment(reference.upper())
            if found is not None and found.provider == provider_name and found.state != "unmatched":
                return found
        return None

    async def _apply(self, p: Payment, c: Confirmation) -> Outcome:
        now = time.time()
        moved: Payment | None = None
        if c.status == "paid":
            return await self._paid(p, c)
        if c.status == "pending":
            moved = await self.ledger.move_payment(p.id, "pending", ("created",), now, detail=c.detail)
        elif c.status in ("failed", "expired"):
            moved = await self.ledger.move_payment(p.id, c.status, OPEN, now, detail=c.detail)
        elif c.status == "refunded":
            moved = await self.ledger.move_payment(p.id, "refunded", (*PAYABLE, "paid", "credited"), now,
                                                   detail=c.detail)  # fmt: skip
            if moved is not None and p.credited:
                log.warning("payment %s refunded after %s credits were credited to account %s: the credits stay "
                            "until the operator takes them back", p.id, credits(p.credited), p.account_id)  # fmt: skip
        return Outcome(c.event_id, p.id, "applied" if moved else "unchanged", (moved or p).state)

    async def _paid(self, p: Payment, c: Confirmation) -> Outcome:
        if not c.credits or c.credits <= 0:
            return Outcome(c.event_id, p.id, "unchanged", p.state)
        if p.paid_by is None:
            moved = await self.ledger.move_payment(
                p.id, "paid", PAYABLE, time.time(), paid=c.credits, bonus=self.bonus_of(c.credits),
                paid_by=c.event_id, detail=c.detail,
            )  # fmt: skip
            if moved is not None:
                return Outcome(c.event_id, p.id, "applied", (await self.credit(moved)).state)
            p = await self.ledger.get_payment(p.id) or p  # another confirmation moved it first
        if p.paid_by != c.event_id:  # a second transfer against a payment already paid (or refunded)
            return await self._unmatched(p.provider, c, f"payment {p.id} is {p.state}")
        return Outcome(c.event_id, p.id, "unchanged", (await self.credit(p)).state)

    async def _unmatched(self, provider_name: str, c: Confirmation, why: str) -> Outcome:
        if c.status != "paid" or not c.credits or c.credits <= 0:
            return Outcome(c.event_id, None, "unmatched", None)
        now = time.time()
        reference = unmatched_reference(provider_name, c.event_id)
        await self.ledger.create_payment(Payment(
            reference, provider_name, None, "unmatched", c.credits, "USD", credits(c.credits), now, now,
            paid=c.credits, paid_by=c.event_id, external_id=c.external_id,
            detail=f"{why}: {c.amount or credits(c.credits)} arrived; {(c.text or c.reference or '')[:200]}",
        ))  # fmt: skip
        log.warning("payment notification %s/%s matches no open payment (%s): kept as %s for the operator",
                    provider_name, c.event_id, why, reference)  # fmt: skip
        return Outcome(c.event_id, reference, "unmatched", "unmatched")

    async def credit(self, p: Payment) -> Payment:
        """Make a paid payment's credit entries (each once, whoever else is making them) and
        mark it credited. Any other payment: nothing."""
        if p.state != "paid" or p.account_id is None or p.paid is None:
            return p
        note = f"{p.provider} payment {p.id}"
        await self.ledger.add_credits(p.account_id, p.paid, note=note, idempotency_key=f"payment:{p.id}")
        if p.bonus:
            await self.ledger.add_credits(p.account_id, 0, bonus=p.bonus, note=f"bonus on {note}",
                                          idempotency_key=f"payment:{p.id}:bonus", kind="bonus")  # fmt: skip
        total, now = p.paid + p.bonus, time.time()
        moved = await self.ledger.move_payment(p.id, "credited", ("paid",), now, credited=total)
        if moved is None:  # refunded meanwhile (or credited by another confirmation): the figures say what was made
            moved = await self.ledger.move_payment(p.id, "refunded", ("refunded",), now, credited=total)
            return moved or await self.ledger.get_payment(p.id) or p
        log.info("payment %s credited: %s (+%s bonus) to account %s", p.id, credits(p.paid), credits(p.bonus),
                 p.account_id)  # fmt: skip
        return moved

    # the operator's

    async def assign(self, payment_id: str, account: Account) -> Payment:
        """An unmatched payment given to an account, and credited to it."""
        p = await self.get(payment_id)
        if p.state != "unmatched":
            raise InvalidRequest(f"Payment {p.id} is {p.state}: only an unmatched one is assigned", param="payment")
        bonus = self.bonus_of(p.paid or 0)
        moved = await self.ledger.move_payment(p.id, "paid", ("unmatched",), time.time(), account_id=account.id,
                                               bonus=bonus, detail=f"assigned to {account.name}")  # fmt: skip
        if moved is None:
            raise InvalidRequest(f"Payment {p.id} was assigned meanwhile", param="payment")
        return await self.credit(moved)

    async def record(
        self,
        provider_name: str,
        transaction_id: str,
        amount: str | int | float,
        reference: str | None,
        note: str | None,
    ) -> Outcome:
        """A transfer the operator saw arrive (a marketplace balance, a bank transfer by hand)."""
        self.provider(provider_name)
        if not transaction_id.strip():
            raise InvalidRequest("A recorded transfer needs the transaction id it came with", param="transaction_id")
        micro = self.amount_of(amount)
        c = Confirmation(f"manual:{transaction_id.strip()}", "paid", reference=reference and reference.strip().upper(),
                         credits=micro, amount=credits(micro), detail=note or "recorded by the operator")  # fmt: skip
        return await self.confirm(provider_name, c)

    async def get(self, payment_id: str) -> Payment:
        found = await self.ledger.get_payment(payment_id.strip().upper())
        if found is None:
            raise NotFound(f"No payment {payment_id!r}", param="payment")
        return found

    async def sweep(self, now: float | None = None) -> int:
        """Expire the unpaid payments past their time; credit any left paid. How many changed."""
        now = time.time() if now is None else now
        changed = 0
        for state in OPEN:
            for p in await self.ledger.list_payments(state=state, limit=1000):
                if p.expires_at is not None and p.expires_at <= now:
                    moved = await self.ledger.move_payment(p.id, "expired", OPEN, now, detail="not paid in time")
                    changed += moved is not None
        for p in await self.ledger.list_payments(state="paid", limit=1000):
            changed += (await self.credit(p)).state == "credited"
        return changed

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
