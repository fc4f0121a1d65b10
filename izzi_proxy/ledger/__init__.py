"""The ledger: accounts, API keys and usage records, behind one narrow interface.

Backends: ``sqlite.py`` (the embedded default, WAL mode) and ``postgres.py`` (PostgreSQL
through asyncpg, for several gateway processes); ``open_ledger`` picks one by URL, and
one contract test suite runs against both. Balances and holds join this interface with
the billing issue.

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
    outcome: str = "ok"  # ok | error | client_closed
    error_type: str | None = None
    duration_ms: float = 0.0
    usage: Usage | None = None
    extra: dict = field(default_factory=dict)


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

    async def create_account(self, name: str, plan: str = "free") -> Account: ...
    async def get_account(self, name: str) -> Account | None: ...
    async def create_key(self, account_id: int, name: str, expires_at: float | None = None) -> tuple[ApiKey, str]:
        """A new key; the full secret is returned this once and never stored."""

    async def find_key(self, secret: str) -> ApiKey | None:
        """The live (not revoked, not expired) key for a presented secret."""

    async def list_keys(self, account_id: int | None = None) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: int) -> bool: ...
    async def record_usages(self, records: Sequence[UsageRecord]) -> None:
        """Write a batch of records, all or none."""

    async def usage_records(self, request_id: str | None = None, limit: int = 100) -> list[UsageRecord]: ...
    async def count_requests(self, account_id: int, since: float) -> int:
        """How many metered requests the account made since then."""

    async def store_response(self, stored: StoredResponse) -> None: ...
    async def get_response(self, account_id: int, response_id: str) -> StoredResponse | None:
        """The account's stored response, unless it expired; another account's is None."""

    async def delete_response(self, account_id: int, response_id: str) -> bool: ...
    async def purge_responses(self, now: float) -> int:
        """Delete expired responses; how many."""

    async def aclose(self) -> None: ...


async def open_ledger(url: str, key_cache_s: float = 0.0) -> Ledger:
    if url.startswith("sqlite://"):
        from izzi_proxy.ledger.sqlite import SQLiteLedger

        return await SQLiteLedger.open(url, key_cache_s)
    if url.startswith(("postgresql://", "postgres://")):
        from izzi_proxy.ledger.postgres import PostgresLedger

        return await PostgresLedger.open(url, key_cache_s)
    raise ValueError(f"no ledger backend for {url!r}")
