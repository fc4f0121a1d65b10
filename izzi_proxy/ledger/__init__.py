"""The ledger: accounts, API keys, balances, holds and usage records, behind one narrow
interface.

Backends: ``sqlite.py`` (the embedded default, WAL mode) and ``postgres.py`` (PostgreSQL
through asyncpg, for several gateway processes); ``open_ledger`` picks one by URL, and
one contract test suite runs against both.

**Money** is integers of micro-credits (``pricing.py``). An account has a ``balance`` and
``held``, the sum of its open holds. Every change to them is one atomic step that locks
the account's row (SQLite: the database's write lock), so no two requests can both spend
the same micro-credit, on one process or many:

- ``place_hold`` reserves an amount when ``balance - held`` covers it, and when the
  account's spend in the rolling window (5 hours, counted in 5-minute buckets) and in the
  calendar month (UTC) plus ``held`` plus the amount stay within its limits.
- ``extend_hold`` adds to an open hold under the same three checks.
- ``settle`` deletes the hold, charges the cost (never more than the balance less the
  account's other holds: the rest is recorded as ``unbilled``) and writes the request's
  usage record, in one transaction. A hold already settled settles nothing: exactly once.
- ``add_credits`` is a ledger entry, never an overwrite; an idempotency key makes a
  retried top-up a no-op. ``top-ups - charges = balance`` holds to the micro-credit.

Holds belong to a process (``owner``), which checkpoints their progress (what the answer
would cost so far) every few seconds and pushes their expiry forward. A hold whose
process died expires and is settled at its last checkpoint (``billing.reconcile``).

Keys are ``izzi-`` + 43 URL-safe characters (256 bits). Only their SHA-256 is stored,
with a short prefix for listing; at that entropy a plain hash is as strong as a slow KDF
and lets the lookup use an index.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from izzi_proxy.canonical import Usage

KEY_PREFIX = "izzi-"
_VISIBLE = len(KEY_PREFIX) + 6


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def visible_prefix(secret: str) -> str:
    return secret[:_VISIBLE]


def mask(secret: str) -> str:
    """What logs and errors may show of a presented key: never enough to use it."""
    if len(secret) <= _VISIBLE + 4:
        return "***"
    return f"{secret[:_VISIBLE]}…{secret[-4:]}"


class AlreadyExists(Exception):
    """A name that must be unique (an account's) is taken."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    plan: str
    created_at: float
    overrides: dict = field(default_factory=dict)  # per-account limits over the plan's


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    account_id: int
    account_name: str
    plan: str
    name: str
    prefix: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    overrides: dict = field(default_factory=dict)  # the account's, over its plan
    allow: tuple[str, ...] | None = None  # model ids and "tier:<tier>" entries; None: the plan decides

    def live(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class KeyCache:
    """Keys found recently, by hash, for ``ttl_s`` seconds: auth without a query per request.

    Bounded: when full it starts over. Only found keys are kept; a wrong key always costs
    a lookup (and, with the limits issue, counts toward blocking its IP).
    """

    def __init__(self, ttl_s: float, max_size: int = 10_000) -> None:
        self._ttl, self._max = ttl_s, max_size
        self._entries: dict[bytes, tuple[float, ApiKey]] = {}

    def get(self, digest: bytes) -> ApiKey | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[digest]
            return None
        return entry[1]

    def put(self, digest: bytes, key: ApiKey) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + self._ttl, key)

    def forget(self, key_id: int) -> None:
        for digest in [d for d, (_, key) in self._entries.items() if key.id == key_id]:
            del self._entries[digest]


@dataclass(slots=True)
class UsageRecord:
    """What one request did; written once, when its answer has ended however it ended."""

    request_id: str
    endpoint: str
    started_at: float
    key_id: int | None = None
    account_id: int | None = None
    model: str | None = None  # the catalog id it resolved to
    upstream: str | None = None
    upstream_model: str | None = None  # the upstream's name for it
    requested_model: str | None = None  # the name the client asked for (and its answer echoes)
    stream: bool = False
    status: int = 0  # set once the answer has ended (a stream: its last frame is out)
    outcome: str = "ok"  # ok | error | client_closed | incomplete | lost (its process died)
    error_type: str | None = None
    duration_ms: float = 0.0
    usage: Usage | None = None
    extra: dict = field(default_factory=dict)
    usage_source: str | None = None  # reported | partial (the upstream's, plus what was relayed) | estimated
    cost: int = 0  # µcr charged
    unbilled: int = 0  # µcr the cost came to beyond what the balance could pay
    held: int | None = None  # µcr the hold came to (None: nothing was held)
    ttft_ms: float | None = None  # until the first byte of the answer went out
    attempts: int = 0  # upstream routes tried


WINDOW_S = 5 * 3600  # the plans' credits are per rolling 5 hours
BUCKET_S = 300  # spend is counted in 5-minute buckets: a charge leaves the window 5 h to 5 h 5 min later


def bucket_of(now: float) -> int:
    return int(now // BUCKET_S)


def window_start(now: float) -> int:
    """The first bucket inside the window that ends now."""
    return int((now - WINDOW_S) // BUCKET_S)


def month_of(now: float) -> int:
    day = time.gmtime(now)
    return day.tm_year * 100 + day.tm_mon


@dataclass(frozen=True, slots=True)
class SpendLimits:
    """What an account may spend besides its balance, in µcr (None: no limit)."""

    window: int | None = None  # per rolling 5 hours (the plan's credits_per_5h)
    month: int | None = None  # per calendar month, UTC (the account's monthly_budget)


@dataclass(slots=True)
class HoldAsk:
    account_id: int
    request_id: str
    amount: int  # µcr to reserve
    cost: int  # µcr charged if the hold must be settled by reconciliation before a checkpoint
    owner: str  # the process that holds it
    expires_at: float
    detail: dict = field(default_factory=dict)  # what a record of it needs if its process dies


@dataclass(frozen=True, slots=True)
class HoldResult:
    hold_id: int | None  # None: refused
    reason: str | None  # why: "balance" | "quota" (the window) | "budget" (the month) | "account"
    balance: int
    held: int  # the account's open holds (this one included when placed)
    window_spent: int = 0  # charged within the window (when it has a limit)
    month_spent: int = 0  # charged this month (when it has a limit)

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class Settled:
    charged: int
    balance: int  # after the charge


@dataclass(frozen=True, slots=True)
class OpenHold:
    id: int
    account_id: int
    request_id: str
    amount: int
    cost: int
    input_tokens: int
    output_tokens: int
    owner: str
    created_at: float
    expires_at: float
    detail: dict


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """An open hold's progress: what settling it now would charge, and for what usage."""

    hold_id: int
    cost: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Balance:
    balance: int
    held: int
    holds: int  # how many are open

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class CreditEntry:
    id: int
    account_id: int
    amount: int  # µcr credited, bonus included
    bonus: int  # the part of it that is a bonus
    kind: str  # topup, bonus
    note: str | None
    idempotency_key: str | None
    created_at: float


class IdempotencyConflict(Exception):
    """An idempotency key already used for a different top-up."""


PAYMENT_STATES = ("created", "pending", "paid", "credited", "failed", "expired", "unmatched", "refunded")


@dataclass(frozen=True, slots=True)
class Payment:
    """A top-up paid through a payment provider (``payments/flow.py`` moves it along).

    ``credits`` is what the user asked for, ``paid`` what the provider says arrived (µcr),
    ``bonus`` the bonus on it, ``credited`` what the ledger's credit entries for it add up to.
    An ``unmatched`` payment is money that arrived with no reference we know: no account yet.
    """

    id: str  # the reference: IZ + 10 characters (UM + 10 for money that matched nothing)
    provider: str  # the [payments.providers.<name>] it went through
    account_id: int | None
    state: str  # one of PAYMENT_STATES
    credits: int
    currency: str  # of amount
    amount: str  # what the user pays, in that currency
    created_at: float
    updated_at: float
    expires_at: float | None = None
    paid: int | None = None
    bonus: int = 0
    credited: int = 0
    external_id: str | None = None
    pay_url: str | None = None
    paid_by: str | None = None  # the event id of the confirmation that paid it
    detail: str | None = None  # the latest word on it (a provider status, an operator's note)
    details: dict = field(default_factory=dict)  # the invoice's details shown to the user


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One notification received about a payment (or matching none), and what it did."""

    id: int
    provider: str
    event_id: str | None  # the provider's id of the notification (None: rejected before it was read)
    payment_id: str | None
    status: str  # what it said (pending, paid, …; "rejected")
    outcome: str  # applied, unchanged, unmatched, rejected
    detail: str | None
    received_at: float
    body: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UsageSummary:
    group: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: int
    unbilled: int
    day: str | None = None  # the UTC day (YYYY-MM-DD), when summed per day as well


SUMMARY_GROUPS = ("day", "model", "key", "account", "upstream")


@dataclass(slots=True)
class StoredResponse:
    """A Responses-API answer kept for ``GET /v1/responses/{id}`` and ``previous_response_id``."""

    id: str
    account_id: int
    model: str
    created_at: float
    expires_at: float | None
    input: list[dict]  # the conversation before this answer, as Responses input items
    response: dict  # the response object as the client received it


class Ledger(Protocol):
    async def migrate(self) -> int:
        """Bring the schema up to date (done at open); the version it is at."""

    async def create_account(self, name: str, plan: str = "free", overrides: dict | None = None) -> Account: ...
    async def get_account(self, name: str) -> Account | None: ...
    async def get_account_by_id(self, account_id: int) -> Account | None: ...
    async def list_accounts(self) -> list[Account]: ...
    async def update_account(self, account_id: int, plan: str | None = None, overrides: dict | None = None) -> None: ...
    async def create_key(
        self, account_id: int, name: str, expires_at: float | None = None, allow: list[str] | None = None
    ) -> tuple[ApiKey, str]:
        """A new key; the full secret is returned this once and never stored."""

    async def find_key(self, secret: str) -> ApiKey | None:
        """The live (not revoked, not expired) key for a presented secret."""

    async def list_keys(self, account_id: int | None = None) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: int) -> bool: ...
    async def record_usages(self, records: Sequence[UsageRecord]) -> None:
        """Write a batch of records (of requests that held nothing), all or none."""

    async def usage_records(
        self, request_id: str | None = None, limit: int = 100, account_id: int | None = None, failed: bool = False
    ) -> list[UsageRecord]:
        """The latest records, newest first (``failed``: only those whose outcome is not ok)."""

    async def count_requests(self, account_id: int, since: float) -> int:
        """How many metered requests the account made since then."""

    async def usage_summary(
        self, by: str, since: float, until: float | None = None, account_id: int | None = None, daily: bool = False
    ) -> list[UsageSummary]:
        """Records grouped by ``day`` (UTC), ``model``, ``key`` (id), ``account`` (name) or
        ``upstream``; with ``daily``, by that and the UTC day (``UsageSummary.day``), day first."""

    # money

    async def place_hold(self, ask: HoldAsk, limits: SpendLimits, now: float) -> HoldResult: ...
    async def extend_hold(self, hold_id: int, want: int, need: int, limits: SpendLimits, now: float) -> int:
        """Add up to ``want`` µcr to the hold, all three checks applied; what was added
        (0 when not even ``need`` fits, or the hold is settled)."""

    async def settle(self, hold_id: int, cost: int, record: UsageRecord, now: float) -> Settled | None:
        """Charge and release the hold and write the record (its cost and unbilled filled
        in), in one transaction; None if the hold was already settled (nothing written)."""

    async def checkpoint_holds(self, owner: str, progress: Sequence[Checkpoint], expires_at: float) -> None:
        """Save the progress of these holds of the owner and push their expiry to
        ``expires_at``. Only these: a hold the owner does not know of (its placing was cut
        after the commit, so the request was refused) expires and is reconciled."""

    async def open_holds(self, account_id: int | None = None, expired_at: float | None = None) -> list[OpenHold]:
        """Open holds (of one account; or only those expired at that time), oldest first."""

    async def window_spend(self, account_id: int, now: float) -> list[tuple[int, int]]:
        """(bucket, µcr) charged within the window ending now, oldest first."""

    async def month_spend(self, account_id: int, now: float) -> int: ...
    async def balance_of(self, account_id: int) -> Balance: ...
    async def add_credits(
        self,
        account_id: int,
        amount: int,
        *,
        bonus: int = 0,
        note: str | None = None,
        idempotency_key: str | None = None,
        now: float | None = None,
        kind: str = "topup",
    ) -> tuple[CreditEntry, bool]:
        """Credit ``amount + bonus`` µcr as an entry of ``kind`` (``topup``, or ``bonus`` for a
        payment's bonus); the entry and whether it is new (a repeated idempotency key returns
        the first entry; one with other figures raises IdempotencyConflict)."""

    async def credit_entries(self, account_id: int | None = None) -> list[CreditEntry]: ...
    async def purge_spend(self, now: float) -> None:
        """Forget 5-minute buckets that have left the window."""

    # payments

    async def create_payment(self, payment: Payment) -> bool:
        """Store a new payment; False (nothing written) when one with its id exists."""

    async def get_payment(self, payment_id: str) -> Payment | None: ...
    async def list_payments(
        self, account_id: int | None = None, state: str | None = None, limit: int = 100
    ) -> list[Payment]:
        """Newest first."""

    async def move_payment(
        self, payment_id: str, to: str, whence: Sequence[str], now: float, **changes: object
    ) -> Payment | None:
        """Set the state to ``to`` (and the ``changes``: account_id, paid, bonus, credited,
        paid_by, detail, external_id) only when the state is one of ``whence``, atomically:
        the payment after, or None when it was in no such state (or does not exist)."""

    async def record_payment_event(
        self,
        provider: str,
        event_id: str | None,
        payment_id: str | None,
        status: str,
        outcome: str,
        detail: str | None,
        body: dict,
        now: float,
    ) -> bool:
        """Keep a notification; False when its (provider, event_id) was kept before."""

    async def payment_events(self, payment_id: str | None = None, limit: int = 100) -> list[PaymentEvent]:
        """Oldest first for one payment; newest first for all (``None``)."""

    async def store_response(self, stored: StoredResponse) -> None: ...
    async def get_response(self, account_id: int, response_id: str) -> StoredResponse | None:
        """The account's stored response, unless it expired; another account's is None."""

    async def delete_response(self, account_id: int, response_id: str) -> bool: ...
    async def purge_responses(self, now: float) -> int:
        """Delete expired responses; how many."""

    async def ping(self) -> None:
        """One round trip to the database (``/readyz``); raises if it cannot be made."""

    async def aclose(self) -> None: ...


async def open_ledger(url: str, key_cache_s: float = 0.0) -> Ledger:
    if url.startswith("sqlite://"):
        from izzi_proxy.ledger.sqlite import SQLiteLedger

        return await SQLiteLedger.open(url, key_cache_s)
    if url.startswith(("postgresql://", "postgres://")):
        from izzi_proxy.ledger.postgres import PostgresLedger

        return await PostgresLedger.open(url, key_cache_s)
    raise ValueError(f"no ledger backend for {url!r}")
