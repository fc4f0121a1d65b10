"""The server ledger: PostgreSQL through an asyncpg pool, for several gateway processes
(on several hosts) sharing one ledger.

``postgresql://user@host:5432/db`` (``postgres://`` too); other query parameters are
PostgreSQL settings (``?search_path=izzi``), as asyncpg reads them. The schema is created
and migrated at open (``izzi-proxy migrate`` does only that), under an advisory lock, so
processes starting together migrate once. Found keys are remembered for ``key_cache_s``,
as on SQLite; usage records arrive in batches, each one ``executemany`` in one transaction.

Holds, extensions and settlements are server-side functions (``izzi_hold``, ``izzi_extend``,
``izzi_settle``, created by the migrations in ``postgres_schema.py``): each locks the account's row first and reads
its spend after the lock, so they are atomic across every process and host, and only
requests of one account ever wait for each other. The holds placed in one turn of the event
loop go as one statement (``batching.PerTurn``: one round trip, one commit), and so do the
settlements, each with its usage record; a statement locks its accounts in id order, so two
never wait for each other in a cycle. A statement refused for what one of them holds (bad
data, a deadlock with another writer) is tried again one by one, so only that one fails.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Sequence

import asyncpg
import orjson

from izzi_proxy.batching import PerTurn
from izzi_proxy.ledger import (
    Account,
    AlreadyExists,
    ApiKey,
    Balance,
    Checkpoint,
    CreditEntry,
    HoldAsk,
    HoldResult,
    IdempotencyConflict,
    KeyCache,
    OpenHold,
    Settled,
    SpendLimits,
    StoredResponse,
    UsageRecord,
    UsageSummary,
    bucket_of,
    hash_secret,
    month_of,
    new_secret,
    visible_prefix,
    window_start,
)
from izzi_proxy.ledger.payments_sql import PostgresPayments
from izzi_proxy.ledger.postgres_schema import MIGRATIONS
from izzi_proxy.ledger.rows import (
    ACCOUNT_COLUMNS,
    CREDIT_COLUMNS,
    HOLD_COLUMNS,
    KEY_COLUMNS,
    SUMMARY_COLUMNS,
    USAGE_COLUMNS,
    account_of,
    credit_of,
    hold_of,
    key_of,
    record_of,
    usage_row,
)

_LOCK = 0x1221_0001  # the advisory lock migrations take
_INSERT_USAGE = (
    f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(USAGE_COLUMNS) + 1))})"
)
_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id"
_TYPES = {"stream": "boolean", "usage_known": "boolean", "status": "integer", "attempts": "integer",
          "started_at": "float8", "duration_ms": "float8", "ttft_ms": "float8", "key_id": "bigint",
          "account_id": "bigint", "held": "bigint", "input_tokens": "bigint", "output_tokens": "bigint",
          "cache_read_tokens": "bigint", "cache_write_tokens": "bigint", "reasoning_tokens": "bigint"}  # fmt: skip
_CHARGED = {"cost": "s.o_charged", "unbilled": "$2 - s.o_charged"}
_RECORD_AT = [i for i, name in enumerate(USAGE_COLUMNS) if name not in _CHARGED]


def _settle_sql() -> str:
    """Settlement and the request's record in one statement: one round trip, one transaction."""
    values, n = [], 5
    for name in USAGE_COLUMNS:
        if name in _CHARGED:
            values.append(_CHARGED[name])
        else:
            values.append(f"${n}::{_TYPES.get(name, 'text')}")
            n += 1
    return (
        "WITH s AS (SELECT * FROM izzi_settle($1, $2, $3, $4)),"
        f" r AS (INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) SELECT {', '.join(values)} FROM s"
        " WHERE s.o_found) SELECT o_found, o_charged, o_balance FROM s"
    )


_SETTLE = _settle_sql()

# Several holds in one statement, in the order given (the accounts' id order): their results
# by position (n).
_HOLD_ARGS = ("bigint", "text", "bigint", "bigint", "text", "float8", "float8", "text", "bigint", "bigint",
              "bigint", "integer")  # fmt: skip
_HOLDS = (
    "SELECT t.n, h.* FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_HOLD_ARGS, 1))
    + f") WITH ORDINALITY AS t({', '.join(f'a{i}' for i in range(len(_HOLD_ARGS)))}, n)"
    + f" CROSS JOIN LATERAL izzi_hold({', '.join(f't.a{i}' for i in range(len(_HOLD_ARGS)))}) AS h"
)


def _settles_sql() -> str:
    """Several settlements and their records in one statement (as ``_settle_sql``)."""
    columns = [name for name in USAGE_COLUMNS if name not in _CHARGED]
    kinds = ["bigint", "bigint", "bigint", "integer"] + [_TYPES.get(name, "text") for name in columns]
    arrays = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(kinds, 1))
    values = [
        "s.o_charged" if name == "cost" else "s.p_cost - s.o_charged" if name == "unbilled" else f"s.{name}"
        for name in USAGE_COLUMNS
    ]
    return (
        f"WITH t AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY"
        f" AS t(p_hold, p_cost, p_bucket, p_month, {', '.join(columns)}, n)),"
        " s AS MATERIALIZED (SELECT t.*, x.o_found, x.o_charged, x.o_balance FROM t"
        " CROSS JOIN LATERAL izzi_settle(t.p_hold, t.p_cost, t.p_bucket, t.p_month) AS x),"
        f" r AS (INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) SELECT {', '.join(values)} FROM s"
        " WHERE s.o_found) SELECT n, o_found, o_charged, o_balance FROM s"
    )


_SETTLES = _settles_sql()
# What fails a whole statement without saying anything of its items: not tried one by one.
_WHOLE_FAILURES = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
_GROUPS = {
    "day": "to_char(to_timestamp(u.started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "model": "COALESCE(u.model, '-')",
    "key": "COALESCE(u.key_id::text, '-')",
    "account": "COALESCE(a.name, '-')",
    "upstream": "COALESCE(u.upstream, '-')",
}


def _hold_args(ask: HoldAsk, limits: SpendLimits, now: float) -> tuple:
    return (ask.account_id, ask.request_id, ask.amount, ask.cost, ask.owner, now, ask.expires_at, _json(ask.detail),
            limits.window, window_start(now), limits.month, month_of(now))  # fmt: skip


async def _one_by_one(call, asks: list[tuple]) -> list:
    """Each call on its own (its own statement): the result of each, or what it raised."""
    return list(await asyncio.gather(*(call(*ask) for ask in asks), return_exceptions=True))


def _json(value: object | None) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


def _where(*conditions: tuple[str, object]) -> tuple[str, list]:
    """``column op $n AND …`` for the conditions (``("account_id =", value)``) whose value is
    not None, and their values."""
    parts, args = [], []
    for test, value in conditions:
        if value is not None:
            args.append(value)
            parts.append(f"{test} ${len(args)}")
    return " AND ".join(parts) or "TRUE", args


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """The pool's reset of a connection given back: nothing to undo. The ledger never
    changes a session's state (no SET, LISTEN, cursor or session advisory lock: migrations
    take a transaction's lock), and asyncpg rolls back a transaction left open before it
    calls this. Its default reset (``Connection.get_reset_query``: advisory unlock, CLOSE
    ALL, UNLISTEN, RESET ALL) is one more round trip after every query, which doubled the
    ledger's round trips on the request path."""


class PostgresLedger(PostgresPayments):
    def __init__(self, pool: asyncpg.Pool, key_cache_s: float = 0.0) -> None:
        self._pool = pool
        self._keys = KeyCache(key_cache_s)
        self._holds: PerTurn[tuple[HoldAsk, SpendLimits, float], HoldResult] = PerTurn(self._place_holds)
        self._settles: PerTurn[tuple[int, int, UsageRecord, float], Settled | None] = PerTurn(self._settle_many)

    @classmethod
    async def open(cls, url: str, key_cache_s: float = 0.0) -> PostgresLedger:
        pool = await asyncpg.create_pool(
            url.replace("postgres://", "postgresql://", 1), min_size=1, max_size=10, reset=_nothing_to_reset
        )
        ledger = cls(pool, key_cache_s)
        try:
            await ledger.migrate()
        except BaseException:
            await pool.close()
            raise
        return ledger

    async def migrate(self) -> int:
        """Bring the schema up to date; the version it is at."""
        async with self._pool.acquire() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            await db.execute("CREATE TABLE IF NOT EXISTS izzi_schema (version INTEGER NOT NULL)")
            version = await db.fetchval("SELECT version FROM izzi_schema")
            if version is None:
                await db.execute("INSERT INTO izzi_schema (version) VALUES (0)")
                version = 0
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await db.execute(script)
                await db.execute("UPDATE izzi_schema SET version = $1", number)
            return len(MIGRATIONS)

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def aclose(self) -> None:
        await self._holds.aclose()
        await self._settles.aclose()
        await self._pool.close()

    # accounts

    async def create_account(self, name: str, plan: str = "free", overrides: dict | None = None) -> Account:
        now = time.time()
        try:
            account_id = await self._pool.fetchval(
                "INSERT INTO accounts (name, plan, created_at, overrides) VALUES ($1, $2, $3, $4) RETURNING id",
                name, plan, now, _json(overrides or None),
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"an account named {name!r} exists") from None
        return Account(account_id, name, plan, now, overrides or {})

    async def get_account(self, name: str) -> Account | None:
        row = await self._pool.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1", name)
        return account_of(tuple(row)) if row else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._pool.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1", account_id)
        return account_of(tuple(row)) if row else None

    async def list_accounts(self) -> list[Account]:
        rows = await self._pool.fetch(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id")
        return [account_of(tuple(row)) for row in rows]

    async def update_account(self, account_id: int, plan: str | None = None, overrides: dict | None = None) -> None:
        """Change the plan and/or replace the overrides; cached keys pick it up within key_cache_s."""
        if plan is not None:
            await self._pool.execute("UPDATE accounts SET plan = $1 WHERE id = $2", plan, account_id)
        if overrides is not None:
            await self._pool.execute("UPDATE accounts SET overrides = $1 WHERE id = $2", _json(overrides or None),
                                     account_id)  # fmt: skip

    # keys

    async def create_key(
        self, account_id: int, name: str, expires_at: float | None = None, allow: list[str] | None = None
    ) -> tuple[ApiKey, str]:
        secret = new_secret()
        key_id = await self._pool.fetchval(
            "INSERT INTO api_keys (account_id, name, key_hash, prefix, created_at, expires_at, allow)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            account_id, name, hash_secret(secret), visible_prefix(secret), time.time(), expires_at, _json(allow),
        )  # fmt: skip
        (key,) = await self._keys_where("k.id = $1", key_id)
        return key, secret

    async def find_key(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        key = self._keys.get(digest)
        if key is None:
            row = await self._pool.fetchrow(f"{_KEYS} WHERE k.key_hash = $1", digest)
            if row is None or not hmac.compare_digest(bytes(row[-1]), digest):
                return None
            key = key_of(tuple(row))
            self._keys.put(digest, key)
        return key if key.live(time.time()) else None

    async def list_keys(self, account_id: int | None = None) -> list[ApiKey]:
        if account_id is None:
            return await self._keys_where("TRUE")
        return await self._keys_where("k.account_id = $1", account_id)

    async def revoke_key(self, key_id: int) -> bool:
        self._keys.forget(key_id)
        done = await self._pool.execute(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", time.time(), key_id
        )
        return done == "UPDATE 1"

    async def _keys_where(self, where: str, *args: object) -> list[ApiKey]:
        rows = await self._pool.fetch(f"{_KEYS} WHERE {where} ORDER BY k.id", *args)
        return [key_of(tuple(row)) for row in rows]

    # usage

    async def record_usages(self, records: Sequence[UsageRecord]) -> None:
        """Write a batch in one transaction (asyncpg pipelines the rows)."""
        async with self._pool.acquire() as db, db.transaction():
            await db.executemany(_INSERT_USAGE, [usage_row(record) for record in records])

    async def usage_records(
        self, request_id: str | None = None, limit: int = 100, account_id: int | None = None, failed: bool = False
    ) -> list[UsageRecord]:
        where, args = _where(
            ("request_id =", request_id or None), ("account_id =", account_id), ("outcome <>", "ok" if failed else None)
        )
        rows = await self._pool.fetch(
            f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_records WHERE {where} ORDER BY id DESC"
            f" LIMIT ${len(args) + 1}",
            *args, limit,
        )  # fmt: skip
        return [record_of(dict(row)) for row in rows]

    async def usage_summary(
        self, by: str, since: float, until: float | None = None, account_id: int | None = None, daily: bool = False
    ) -> list[UsageSummary]:
        where, args = _where(("u.started_at >=", since), ("u.started_at <", until), ("u.account_id =", account_id))
        day = f", {_GROUPS['day']} AS d" if daily else ""
        order = "d, g" if daily else "g"
        rows = await self._pool.fetch(
            f"SELECT {_GROUPS[by]} AS g, {SUMMARY_COLUMNS}{day} FROM usage_records u"
            f" LEFT JOIN accounts a ON a.id = u.account_id WHERE {where} GROUP BY {order} ORDER BY {order}",
            *args,
        )
        return [UsageSummary(row[0], *(int(v) for v in tuple(row)[1:10]), *tuple(row)[10:]) for row in rows]

    # money

    async def place_hold(self, ask: HoldAsk, limits: SpendLimits, now: float) -> HoldResult:
        return await self._holds.call((ask, limits, now))

    async def _place_hold(self, ask: HoldAsk, limits: SpendLimits, now: float) -> HoldResult:
        row = await self._pool.fetchrow(
            "SELECT * FROM izzi_hold($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", *_hold_args(ask, limits, now)
        )
        return HoldResult(*tuple(row))

    async def _place_holds(self, asks: list[tuple[HoldAsk, SpendLimits, float]]) -> list[HoldResult | Exception]:
        if len(asks) == 1:
            return [await self._place_hold(*asks[0])]
        order = sorted(range(len(asks)), key=lambda i: asks[i][0].account_id)
        try:
            rows = await self._pool.fetch(_HOLDS, *zip(*(_hold_args(*asks[i]) for i in order), strict=True))
        except asyncpg.PostgresError as err:
            if isinstance(err, _WHOLE_FAILURES):
                raise
            return await _one_by_one(self._place_hold, asks)
        results: list[HoldResult | Exception] = [None] * len(asks)  # type: ignore[list-item]
        for row in rows:
            results[order[row[0] - 1]] = HoldResult(*tuple(row)[1:])
        return results

    async def extend_hold(self, hold_id: int, want: int, need: int, limits: SpendLimits, now: float) -> int:
        return await self._pool.fetchval(
            "SELECT izzi_extend($1, $2, $3, $4, $5, $6, $7)",
            hold_id, want, need, limits.window, window_start(now), limits.month, month_of(now),
        )  # fmt: skip

    async def settle(self, hold_id: int, cost: int, record: UsageRecord, now: float) -> Settled | None:
        return await self._settles.call((hold_id, cost, record, now))

    async def _settle(self, hold_id: int, cost: int, record: UsageRecord, now: float) -> Settled | None:
        row = usage_row(record)
        found, charged, balance = await self._pool.fetchrow(
            _SETTLE, hold_id, cost, bucket_of(now), month_of(now), *(row[i] for i in _RECORD_AT)
        )
        if not found:
            return None
        record.cost, record.unbilled = charged, cost - charged
        return Settled(charged, balance)

    async def _settle_many(self, asks: list[tuple[int, int, UsageRecord, float]]) -> list[Settled | Exception | None]:
        if len(asks) == 1:
            return [await self._settle(*asks[0])]
        order = sorted(range(len(asks)), key=lambda i: asks[i][2].account_id or 0)
        args = []
        for i in order:
            hold_id, cost, record, now = asks[i]
            row = usage_row(record)
            args.append((hold_id, cost, bucket_of(now), month_of(now), *(row[j] for j in _RECORD_AT)))
        try:
            rows = await self._pool.fetch(_SETTLES, *zip(*args, strict=True))
        except asyncpg.PostgresError as err:
            if isinstance(err, _WHOLE_FAILURES):
                raise
            return await _one_by_one(self._settle, asks)
        results: list[Settled | Exception | None] = [None] * len(asks)
        for n, found, charged, balance in rows:
            _, cost, record, _ = asks[order[n - 1]]
            if found:
                record.cost, record.unbilled = charged, cost - charged
                results[order[n - 1]] = Settled(charged, balance)
        return results

    async def checkpoint_holds(self, owner: str, progress: Sequence[Checkpoint], expires_at: float) -> None:
        if progress:
            await self._pool.executemany(
                "UPDATE holds SET cost = $1, input_tokens = $2, output_tokens = $3, expires_at = $4"
                " WHERE id = $5 AND owner = $6",
                [(p.cost, p.input_tokens, p.output_tokens, expires_at, p.hold_id, owner) for p in progress],
            )

    async def open_holds(self, account_id: int | None = None, expired_at: float | None = None) -> list[OpenHold]:
        where, args = _where(("account_id =", account_id), ("expires_at <=", expired_at))
        rows = await self._pool.fetch(f"SELECT {HOLD_COLUMNS} FROM holds WHERE {where} ORDER BY id", *args)
        return [hold_of(tuple(row)) for row in rows]

    async def window_spend(self, account_id: int, now: float) -> list[tuple[int, int]]:
        rows = await self._pool.fetch(
            "SELECT bucket, amount FROM spend_5m WHERE account_id = $1 AND bucket >= $2 ORDER BY bucket",
            account_id, window_start(now),
        )  # fmt: skip
        return [(row[0], row[1]) for row in rows]

    async def month_spend(self, account_id: int, now: float) -> int:
        value = await self._pool.fetchval(
            "SELECT amount FROM spend_month WHERE account_id = $1 AND month = $2", account_id, month_of(now)
        )
        return value or 0

    async def balance_of(self, account_id: int) -> Balance:
        row = await self._pool.fetchrow(
            "SELECT balance, held, (SELECT COUNT(*) FROM holds WHERE account_id = $1) FROM accounts WHERE id = $1",
            account_id,
        )
        if row is None:
            raise LookupError(f"no account with id {account_id}")
        return Balance(*tuple(row))

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
        when = time.time() if now is None else now
        async with self._pool.acquire() as db, db.transaction():
            if await db.fetchval("SELECT id FROM accounts WHERE id = $1 FOR UPDATE", account_id) is None:
                raise LookupError(f"no account with id {account_id}")
            row = await db.fetchrow(
                "INSERT INTO credit_entries (account_id, amount, bonus, kind, note, idempotency_key, created_at)"
                " VALUES ($1, $2, $3, $7, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING"
                f" RETURNING {CREDIT_COLUMNS}",
                account_id, amount + bonus, bonus, note, idempotency_key, when, kind,
            )  # fmt: skip
            if row is not None:
                await db.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", amount + bonus, account_id)
                return credit_of(tuple(row)), True
            entry = credit_of(tuple(await db.fetchrow(
                f"SELECT {CREDIT_COLUMNS} FROM credit_entries WHERE idempotency_key = $1", idempotency_key
            )))  # fmt: skip
        if (entry.account_id, entry.amount, entry.bonus, entry.kind) != (account_id, amount + bonus, bonus, kind):
            raise IdempotencyConflict(f"the idempotency key {idempotency_key!r} was used for another top-up")
        return entry, False

    async def credit_entries(self, account_id: int | None = None) -> list[CreditEntry]:
        where, args = _where(("account_id =", account_id))
        rows = await self._pool.fetch(f"SELECT {CREDIT_COLUMNS} FROM credit_entries WHERE {where} ORDER BY id", *args)
        return [credit_of(tuple(row)) for row in rows]

    async def purge_spend(self, now: float) -> None:
        await self._pool.execute("DELETE FROM spend_5m WHERE bucket < $1", window_start(now))

    async def count_requests(self, account_id: int, since: float) -> int:
        return await self._pool.fetchval(
            "SELECT COUNT(*) FROM usage_records WHERE account_id = $1 AND started_at >= $2", account_id, since
        )

    # responses

    async def store_response(self, stored: StoredResponse) -> None:
        await self._pool.execute(
            "INSERT INTO responses (id, account_id, model, created_at, expires_at, input, response)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET account_id = EXCLUDED.account_id,"
            " model = EXCLUDED.model, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,"
            " input = EXCLUDED.input, response = EXCLUDED.response",
            stored.id, stored.account_id, stored.model, stored.created_at, stored.expires_at,
            orjson.dumps(stored.input).decode(), orjson.dumps(stored.response).decode(),
        )  # fmt: skip

    async def get_response(self, account_id: int, response_id: str) -> StoredResponse | None:
        row = await self._pool.fetchrow(
            "SELECT id, account_id, model, created_at, expires_at, input, response FROM responses"
            " WHERE id = $1 AND account_id = $2 AND (expires_at IS NULL OR expires_at > $3)",
            response_id, account_id, time.time(),
        )  # fmt: skip
        if row is None:
            return None
        return StoredResponse(*tuple(row)[:5], input=orjson.loads(row[5]), response=orjson.loads(row[6]))

    async def delete_response(self, account_id: int, response_id: str) -> bool:
        done = await self._pool.execute("DELETE FROM responses WHERE id = $1 AND account_id = $2", response_id,
                                        account_id)  # fmt: skip
        return done == "DELETE 1"

    async def purge_responses(self, now: float) -> int:
        done = await self._pool.execute("DELETE FROM responses WHERE expires_at IS NOT NULL AND expires_at <= $1", now)
        return int(done.split()[-1])
