"""Credits in motion: a hold before the upstream call, settlement after the answer.

One mechanism, placed where the model and ``max_tokens`` are known (``handlers.generate``,
after parsing and routing checks, before the upstream call):

1. ``Billing.hold`` reserves the request's worst case in the ledger, durably, before any
   upstream byte is asked for: its input (estimated from the body's size) at the input
   price (the cache-write price where that is higher) plus its ``max_tokens`` (or
   ``[billing] default_max_output_tokens``) at the output price. The account's balance less
   its open holds must cover it (else 402 ``insufficient_balance``), and so must what is
   left of the plan's credits per 5 hours (429 ``quota_exceeded``, with ``Retry-After``)
   and of the account's monthly budget (402 ``budget_exceeded``). One round trip.
2. While a stream is relayed, the ``Bill`` counts the model's output as it goes out. When
   the answer would cost more than the hold, the hold is extended if the account allows,
   else the stream ends with an in-format ``insufficient_balance`` error.
3. ``Billing.finish`` (the metering middleware, in every terminal state) charges the cost
   and releases the hold, in the same transaction that writes the usage record; a hold
   settles once. The cost is the upstream's usage when it reported all of it
   (``reported``); its partial figures topped up with the output relayed (``partial``);
   or the input estimate plus the output relayed (``estimated``). An upstream that never
   answered is charged nothing.

Crashes: every ``checkpoint_s`` each process saves its live holds' cost so far and pushes
their expiry ``hold_ttl_s`` ahead. A hold whose process died stops moving; once expired,
any process settles it at its **last checkpoint** (outcome ``lost``). Why that figure: the
upstream bills the prompt as soon as it accepts it and the output as it produces it; the
checkpoint is both, at most ``checkpoint_s`` behind, while the whole hold would bill
output that was never produced and nothing would give away the prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass

from izzi_proxy import tokens
from izzi_proxy.access import plan_of
from izzi_proxy.canonical import Usage
from izzi_proxy.catalog import ModelEntry
from izzi_proxy.config import Config
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.errors import BudgetExceeded, InsufficientBalance, LedgerUnavailable, QuotaExceeded
from izzi_proxy.ledger import (
    BUCKET_S,
    WINDOW_S,
    ApiKey,
    Checkpoint,
    HoldAsk,
    HoldResult,
    Ledger,
    OpenHold,
    Settled,
    SpendLimits,
    UsageRecord,
)
from izzi_proxy.ledger.writer import UsageWriter
from izzi_proxy.pricing import PER, Prices, credits, to_micro

log = logging.getLogger("izzi.billing")

FREE = Prices(0, 0, 0, 0)


def spend_limits(config: Config, key: ApiKey) -> SpendLimits:
    """The plan's credits per 5 hours and the account's monthly budget (overrides win)."""
    plan = plan_of(config.limits, key)
    window = key.overrides.get("credits_per_5h", plan.credits_per_5h)
    month = key.overrides.get("monthly_budget")
    return SpendLimits(
        window=to_micro(window) if window is not None else None,
        month=to_micro(month) if month is not None else None,
    )


@dataclass(slots=True)
class Bill:
    """One request's money: its hold, and what its answer has cost so far."""

    account_id: int
    prices: Prices
    input_estimate: int  # tokens
    output_cap: int  # the output tokens the hold was made for
    limits: SpendLimits
    hold_id: int | None = None
    held: int = 0  # µcr
    answered: bool = False  # the upstream accepted the request (its prompt is billed)
    output_bytes: int = 0  # of model output relayed to the client
    usage: Usage | None = None  # the upstream's latest figures (a stream's may be partial)
    cut: bool = False  # the stream was ended because the hold could not cover more
    settled: Settled | None = None
    final_cost: int | None = None  # set once the answer has ended
    placing: asyncio.Future[HoldResult] | None = None

    @property
    def output_estimate(self) -> int:
        return tokens.tokens_of_bytes(self.output_bytes)

    def cost_so_far(self, more_bytes: int = 0) -> int:
        """What the answer costs by now (with ``more_bytes`` of output relayed besides): the
        upstream's figures where it has given some, the output relayed where that is more."""
        output = tokens.tokens_of_bytes(self.output_bytes + more_bytes)
        if self.usage is None:
            return self.prices.of(self.input_estimate, output)
        return self.prices.cost(_topped_up(self.usage, output))

    def covers(self, output_bytes: int) -> bool:
        """Whether the hold covers the answer with that much more output relayed."""
        return self.hold_id is None or self.cost_so_far(output_bytes) <= self.held

    def usage_at_end(self, record: UsageRecord) -> tuple[Usage, str]:
        """The usage to charge, and how it was obtained. A stream cut at its hold is charged
        the output it relayed, not what the upstream produced beyond it."""
        if record.usage is not None and record.usage_source == "reported" and not self.cut:
            return record.usage, "reported"
        if record.usage is not None:
            usage = _topped_up(record.usage, self.output_estimate)
            if self.cut:
                usage.output_tokens = self.output_estimate
            if not usage.input_tokens and not (usage.cache_read_tokens or usage.cache_write_tokens):
                usage.input_tokens = self.input_estimate
            return usage, "partial"
        return Usage(input_tokens=self.input_estimate, output_tokens=self.output_estimate), "estimated"


def _topped_up(usage: Usage, output_estimate: int) -> Usage:
    return dataclasses.replace(usage, output_tokens=max(usage.output_tokens, output_estimate))


@dataclass(slots=True)
class _Open:
    bill: Bill
    record: UsageRecord | None = None  # set once the answer has ended and settling failed


class Billing:
    """Holds and settlement for one gateway process (``owner``)."""

    def __init__(self, config: Config, ledger: Ledger, writer: UsageWriter) -> None:
        self._config = config
        self._billing = config.billing
        self._ledger = ledger
        self._writer = writer
        self.owner = secrets.token_hex(8)
        self._open: dict[int, _Open] = {}  # hold id -> live (or not yet settled) bill
        self._tasks: set[asyncio.Task[object]] = set()
        self._loop: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._billing.enabled

    # -- the request path ------------------------------------------------------------------

    def bill(self, key: ApiKey, entry: ModelEntry, parsed: ParsedRequest, input_estimate: int) -> Bill:
        """The request's bill; ``input_estimate`` is ``tokens.estimate_raw`` of its body."""
        prices = entry.prices if self.enabled else FREE
        output_cap = parsed.max_output_tokens or self._billing.default_max_output_tokens
        limits = spend_limits(self._config, key)
        return Bill(key.account_id, prices, input_estimate, output_cap, limits)

    async def hold(self, bill: Bill, entry: ModelEntry, parsed: ParsedRequest, record: UsageRecord) -> None:
        """Reserve the request's worst case; raises the seed's 402 / 429 when it cannot."""
        if not self.enabled:
            return
        prices, output_cap = bill.prices, bill.output_cap
        input_price = max(prices.input, prices.cache_write)
        bill.held = -(-(bill.input_estimate * input_price + output_cap * prices.output) // PER)
        now = time.time()
        ask = HoldAsk(
            account_id=bill.account_id,
            request_id=record.request_id,
            amount=bill.held,
            cost=prices.of(bill.input_estimate, 0),
            owner=self.owner,
            expires_at=now + self._billing.hold_ttl_s,
            detail={
                "endpoint": record.endpoint,
                "started_at": record.started_at,
                "key_id": record.key_id,
                "model": entry.id,
                "requested_model": parsed.model,
                "stream": parsed.stream,
                "input_tokens": bill.input_estimate,
            },
        )
        # Shielded: a client that hangs up now leaves the hold to be released by finish().
        bill.placing = asyncio.ensure_future(self._ledger.place_hold(ask, bill.limits, now))
        try:
            result = await asyncio.shield(bill.placing)
        except Exception as err:  # not CancelledError: finish() waits for the hold then releases it
            log.exception("request %s: placing a hold failed", record.request_id)
            raise LedgerUnavailable("The billing ledger is unavailable; try again shortly", retry_after_s=1) from err
        bill.placing = None
        self._placed(bill, result)
        if result.hold_id is None:
            raise await self._refusal(bill, result, entry, parsed, now)

    def _placed(self, bill: Bill, result: HoldResult) -> None:
        if result.hold_id is not None:
            bill.hold_id = result.hold_id
            self._open[result.hold_id] = _Open(bill)

    async def extend(self, bill: Bill, output_bytes: int) -> bool:
        """Grow the hold to cover the answer with that much more output (and as much again
        as it has cost); False when the account cannot cover even that."""
        need = bill.cost_so_far(output_bytes) - bill.held
        if need <= 0 or bill.hold_id is None:
            return True
        want = max(2 * need, bill.prices.of(0, bill.output_cap))
        granted = await self._ledger.extend_hold(bill.hold_id, want, need, bill.limits, time.time())
        bill.held += granted
        return granted > 0

    async def finish(self, bill: Bill | None, record: UsageRecord) -> None:
        """Settle the request (exactly once) and write its record; never raises."""
        if bill is not None and bill.placing is not None:  # the client left while the hold was placed
            with contextlib.suppress(Exception):
                self._placed(bill, await bill.placing)
        cost = 0
        if bill is not None and bill.answered:
            record.usage, record.usage_source = bill.usage_at_end(record)
            cost = bill.prices.cost(record.usage)
            if bill.cut:
                cost = min(cost, bill.held)
        if bill is None or bill.hold_id is None:  # nothing held: billing is off, or the hold was refused
            self._writer.submit(record)
            return
        bill.final_cost = cost
        record.held = bill.held
        try:
            bill.settled = await self._ledger.settle(bill.hold_id, cost, record, time.time())
        except Exception:
            log.exception(
                "request %s: settling failed; retried every %g s", record.request_id, self._billing.checkpoint_s
            )
            self._open[bill.hold_id].record = record  # checkpointed at its final cost until it settles
            return
        self._open.pop(bill.hold_id, None)
        if bill.settled is None:
            log.warning("request %s: its hold was settled by reconciliation already", record.request_id)

    def finish_soon(self, bill: Bill | None, record: UsageRecord) -> asyncio.Task[None]:
        """``finish`` in a task of its own, which cancelling the request does not stop
        (and which ``aclose`` waits for)."""
        task = asyncio.ensure_future(self.finish(bill, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- refusals --------------------------------------------------------------------------

    async def _refusal(
        self, bill: Bill, result: HoldResult, entry: ModelEntry, parsed: ParsedRequest, now: float
    ) -> Exception:
        amount = bill.held
        asked = parsed.max_output_tokens
        cap = f"max_tokens={asked}" if asked else f"the default cap of {bill.output_cap} output tokens"
        worst = f"This request may cost up to {credits(amount)} credits (its input and {cap} at {entry.id}'s prices)"
        input_cost = amount - bill.prices.of(0, bill.output_cap)
        if result.reason == "quota":
            room = (bill.limits.window or 0) - result.window_spent - result.held
            fits = bill.prices.output_tokens_for(max(0, room - input_cost))
            if amount > (bill.limits.window or 0):
                return QuotaExceeded(
                    f"{worst}, more than the plan's {credits(bill.limits.window or 0)} credits per 5 hours; "
                    f"lower max_tokens to at most {fits}",
                    retry_after_s=WINDOW_S,
                )
            wait = await self._window_wait(bill, amount - room, now)
            return QuotaExceeded(
                f"Credits per 5 hours used up: {credits(result.window_spent)} of the plan's "
                f"{credits(bill.limits.window or 0)} spent and {credits(result.held)} held by requests in flight; "
                f"{worst}. Retry in {wait} s, or lower max_tokens to at most {fits}",
                retry_after_s=wait,
            )
        if result.reason == "budget":
            return BudgetExceeded(
                f"Monthly budget reached: {credits(result.month_spent)} of {credits(bill.limits.month or 0)} credits "
                f"spent this month and {credits(result.held)} held by requests in flight; {worst}"
            )
        if result.reason == "account":
            return InsufficientBalance("This API key's account no longer exists")
        fits = bill.prices.output_tokens_for(max(0, result.available - input_cost))
        return InsufficientBalance(
            f"Not enough credits: {worst}, and the account has {credits(max(0, result.available))} available "
            f"(balance {credits(result.balance)}, {credits(result.held)} held by requests in flight). "
            f"Top up, or lower max_tokens to at most {fits}",
            code="insufficient_balance",
        )

    async def _window_wait(self, bill: Bill, short: int, now: float) -> int:
        """Seconds until enough of the window's spend has aged out to free ``short`` µcr."""
        freed = 0
        for bucket, amount in await self._ledger.window_spend(bill.account_id, now):
            freed += amount
            if freed >= short:
                return max(1, int((bucket + 1) * BUCKET_S + WINDOW_S - now) + 1)
        return BUCKET_S  # what blocks it is held by requests in flight: they end soon

    # -- the background loop ---------------------------------------------------------------

    def start(self) -> None:
        if self.enabled:
            self._loop = asyncio.create_task(self._run(), name="izzi-billing")

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        with contextlib.suppress(Exception):
            await self.tick()  # a last try for settlements that failed
        for entry in self._open.values():
            if entry.record is not None:
                log.error("request %s: not settled; its hold is reconciled after it expires", entry.record.request_id)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("billing checkpoint failed; retrying in %g s", self._billing.checkpoint_s)
            await asyncio.sleep(self._billing.checkpoint_s)

    async def tick(self) -> None:
        """Checkpoint this process's holds, retry failed settlements, reconcile expired
        holds of dead processes, forget spend that left the window."""
        now = time.time()
        progress = [
            Checkpoint(
                hold_id,
                entry.bill.final_cost if entry.bill.final_cost is not None else entry.bill.cost_so_far(),
                entry.bill.usage.input_tokens if entry.bill.usage else entry.bill.input_estimate,
                max(entry.bill.usage.output_tokens if entry.bill.usage else 0, entry.bill.output_estimate),
            )
            for hold_id, entry in self._open.items()
            if entry.bill.hold_id is not None
        ]
        await self._ledger.checkpoint_holds(self.owner, progress, now + self._billing.hold_ttl_s)
        for hold_id, entry in list(self._open.items()):
            if entry.record is not None and entry.bill.final_cost is not None:
                entry.bill.settled = await self._ledger.settle(hold_id, entry.bill.final_cost, entry.record, now)
                del self._open[hold_id]
        for hold in await self._ledger.open_holds(expired_at=now):
            if hold.owner != self.owner or hold.id not in self._open:
                await self.reconcile(hold, now)
        await self._ledger.purge_spend(now)

    async def reconcile(self, hold: OpenHold, now: float) -> Settled | None:
        detail = hold.detail
        record = UsageRecord(
            request_id=hold.request_id,
            endpoint=detail.get("endpoint", "-"),
            started_at=detail.get("started_at", hold.created_at),
            key_id=detail.get("key_id"),
            account_id=hold.account_id,
            model=detail.get("model"),
            requested_model=detail.get("requested_model"),
            stream=bool(detail.get("stream")),
            outcome="lost",
            error_type="gateway_stopped",
            usage=Usage(hold.input_tokens or detail.get("input_tokens", 0), hold.output_tokens),
            usage_source="estimated",
            held=hold.amount,
            duration_ms=(hold.expires_at - hold.created_at) * 1000,
        )
        settled = await self._ledger.settle(hold.id, hold.cost, record, now)
        if settled is not None:
            log.warning(
                "request %s: its process stopped before settling; charged its last checkpoint, %s credits",
                hold.request_id, credits(settled.charged),
            )  # fmt: skip
        return settled
