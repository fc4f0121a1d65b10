"""The server ledger: PostgreSQL through an asyncpg pool, for several gateway processes
(on several hosts) sharing one ledger.

``postgresql://user@host:5432/db`` (``postgres://`` too); other query parameters are
PostgreSQL settings (``?search_path=izzi``), as asyncpg reads them. The schema is created
and migrated at open (``izzi-proxy migrate`` does only that), under an advisory lock, so
processes starting together migrate once. Found keys are remembered for ``key_cache_s``,
as on SQLite; usage records arrive in batches, each one ``executemany`` in one transaction.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence

import asyncpg
import orjson

from izzi_proxy.ledger import (
    Account,
    AlreadyExists,
    ApiKey,
    KeyCache,
    StoredResponse,
    UsageRecord,
    hash_secret,
    new_secret,
    visible_prefix,
)
from izzi_proxy.ledger.rows import (
    ACCOUNT_COLUMNS,
    KEY_COLUMNS,
    USAGE_COLUMNS,
    account_of,
    key_of,
    record_of,
    usage_row,
)

_LOCK = 0x1221_0001  # the advisory lock migrations take
# Applied in order; izzi_schema records how many have run.
MIGRATIONS = (
    """
    CREATE TABLE accounts (
        id          BIGSERIAL PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        plan        TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        overrides   TEXT
    );
    CREATE TABLE api_keys (
        id          BIGSERIAL PRIMARY KEY,
        account_id  BIGINT NOT NULL REFERENCES accounts(id),
        name        TEXT NOT NULL,
        key_hash    BYTEA NOT NULL UNIQUE,
        prefix      TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        expires_at  DOUBLE PRECISION,
        revoked_at  DOUBLE PRECISION,
        allow       TEXT
    );
    CREATE TABLE usage_records (
        id                  BIGSERIAL PRIMARY KEY,
        request_id          TEXT NOT NULL,
        endpoint            TEXT NOT NULL,
        key_id              BIGINT,
        account_id          BIGINT,
        model               TEXT,
        upstream            TEXT,
        upstream_model      TEXT,
        requested_model     TEXT,
        stream              BOOLEAN NOT NULL,
        status              INTEGER NOT NULL,
        outcome             TEXT NOT NULL,
        error_type          TEXT,
        started_at          DOUBLE PRECISION NOT NULL,
        duration_ms         DOUBLE PRECISION NOT NULL,
        usage_known         BOOLEAN NOT NULL,
        input_tokens        BIGINT NOT NULL,
        output_tokens       BIGINT NOT NULL,
        cache_read_tokens   BIGINT NOT NULL,
        cache_write_tokens  BIGINT NOT NULL,
        reasoning_tokens    BIGINT NOT NULL,
        extra               TEXT
    );
    CREATE INDEX usage_records_account_time ON usage_records (account_id, started_at);
    CREATE INDEX usage_records_request ON usage_records (request_id);
    CREATE TABLE responses (
        id          TEXT PRIMARY KEY,
        account_id  BIGINT NOT NULL,
        model       TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        expires_at  DOUBLE PRECISION,
        input       TEXT NOT NULL,
        response    TEXT NOT NULL
    );
    CREATE INDEX responses_expiry ON responses (expires_at);
    """,
)

_INSERT_USAGE = (
    f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(USAGE_COLUMNS) + 1))})"
)
_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id"


def _json(value: object | None) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


class PostgresLedger:
    def __init__(self, pool: asyncpg.Pool, key_cache_s: float = 0.0) -> None:
        self._pool = pool
        self._keys = KeyCache(key_cache_s)

    @classmethod
    async def open(cls, url: str, key_cache_s: float = 0.0) -> PostgresLedger:
        pool = await asyncpg.create_pool(url.replace("postgres://", "postgresql://", 1), min_size=1, max_size=10)
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

    async def aclose(self) -> None:
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

    async def usage_records(self, request_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        where, args = ("request_id = $1", (request_id,)) if request_id else ("TRUE", ())
        columns, last = ", ".join(USAGE_COLUMNS), len(args) + 1
        rows = await self._pool.fetch(
            f"SELECT {columns} FROM usage_records WHERE {where} ORDER BY id DESC LIMIT ${last}", *args, limit
        )
        return [record_of(dict(row)) for row in rows]

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
