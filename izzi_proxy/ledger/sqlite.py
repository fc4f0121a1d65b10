"""The embedded ledger: one SQLite file in WAL mode, through aiosqlite's worker thread.

``sqlite:///data/izzi.sqlite3`` is relative to the working directory,
``sqlite:////var/lib/izzi/izzi.sqlite3`` absolute, ``sqlite:///:memory:`` in memory.
Several gateway processes may share one file (WAL lets readers and one writer overlap);
for many processes on many hosts, use the server backend.

Each query is one hop to aiosqlite's thread (``execute_fetchall``, never cursor by cursor);
found keys are remembered for ``key_cache_s`` (a key revoked by another process stops
working within that time; by this one, at once); usage records arrive in batches.
"""

from __future__ import annotations

import hmac
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import aiosqlite
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

# Applied in order; PRAGMA user_version records how many have run.
MIGRATIONS = (
    """
    CREATE TABLE accounts (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        plan        TEXT NOT NULL,
        created_at  REAL NOT NULL
    );
    CREATE TABLE api_keys (
        id          INTEGER PRIMARY KEY,
        account_id  INTEGER NOT NULL REFERENCES accounts(id),
        name        TEXT NOT NULL,
        key_hash    BLOB NOT NULL UNIQUE,
        prefix      TEXT NOT NULL,
        created_at  REAL NOT NULL,
        expires_at  REAL,
        revoked_at  REAL
    );
    CREATE TABLE usage_records (
        id                  INTEGER PRIMARY KEY,
        request_id          TEXT NOT NULL,
        endpoint            TEXT NOT NULL,
        key_id              INTEGER,
        account_id          INTEGER,
        model               TEXT,
        upstream            TEXT,
        upstream_model      TEXT,
        stream              INTEGER NOT NULL,
        status              INTEGER NOT NULL,
        outcome             TEXT NOT NULL,
        error_type          TEXT,
        started_at          REAL NOT NULL,
        duration_ms         REAL NOT NULL,
        usage_known         INTEGER NOT NULL,
        input_tokens        INTEGER NOT NULL,
        output_tokens       INTEGER NOT NULL,
        cache_read_tokens   INTEGER NOT NULL,
        cache_write_tokens  INTEGER NOT NULL,
        reasoning_tokens    INTEGER NOT NULL,
        extra               TEXT
    );
    CREATE INDEX usage_records_account_time ON usage_records (account_id, started_at);
    CREATE INDEX usage_records_request ON usage_records (request_id);
    """,
    """
    CREATE TABLE responses (
        id          TEXT PRIMARY KEY,
        account_id  INTEGER NOT NULL,
        model       TEXT NOT NULL,
        created_at  REAL NOT NULL,
        expires_at  REAL,
        input       TEXT NOT NULL,
        response    TEXT NOT NULL
    );
    CREATE INDEX responses_expiry ON responses (expires_at);
    """,
    """
    ALTER TABLE accounts ADD COLUMN overrides TEXT;
    ALTER TABLE api_keys ADD COLUMN allow TEXT;
    """,
    """
    ALTER TABLE usage_records ADD COLUMN requested_model TEXT;
    """,
)


def _path(url: str) -> str:
    rest = url.removeprefix("sqlite://")
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    return rest.removeprefix("/")


class SQLiteLedger:
    def __init__(self, db: aiosqlite.Connection, key_cache_s: float = 0.0) -> None:
        self._db = db
        self._keys = KeyCache(key_cache_s)

    @classmethod
    async def open(cls, url: str, key_cache_s: float = 0.0) -> SQLiteLedger:
        path = _path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA busy_timeout = 5000")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        ledger = cls(db, key_cache_s)
        await ledger.migrate()
        return ledger

    async def migrate(self) -> int:
        """Bring the schema up to date; the version it is at. The version is read under the
        write lock, so processes opening a new file together migrate it once."""
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            ((version,),) = await self._db.execute_fetchall("PRAGMA user_version")
            for script in MIGRATIONS[version:]:
                for statement in filter(str.strip, script.split(";")):
                    await self._db.execute(statement)
            await self._db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        await self._db.execute("COMMIT")
        return len(MIGRATIONS)

    async def aclose(self) -> None:
        await self._db.close()

    # accounts

    async def create_account(self, name: str, plan: str = "free", overrides: dict | None = None) -> Account:
        now = time.time()
        try:
            cur = await self._db.execute(
                "INSERT INTO accounts (name, plan, created_at, overrides) VALUES (?, ?, ?, ?)",
                (name, plan, now, orjson.dumps(overrides).decode() if overrides else None),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"an account named {name!r} exists") from None
        return Account(cur.lastrowid, name, plan, now, overrides or {})

    async def get_account(self, name: str) -> Account | None:
        rows = await self._db.execute_fetchall(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?", (name,))
        return account_of(rows[0]) if rows else None

    async def list_accounts(self) -> list[Account]:
        return [
            account_of(row)
            for row in await self._db.execute_fetchall(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id")
        ]

    async def update_account(self, account_id: int, plan: str | None = None, overrides: dict | None = None) -> None:
        """Change the plan and/or replace the overrides; cached keys pick it up within key_cache_s."""
        if plan is not None:
            await self._db.execute("UPDATE accounts SET plan = ? WHERE id = ?", (plan, account_id))
        if overrides is not None:
            value = orjson.dumps(overrides).decode() if overrides else None
            await self._db.execute("UPDATE accounts SET overrides = ? WHERE id = ?", (value, account_id))

    # keys

    async def create_key(
        self, account_id: int, name: str, expires_at: float | None = None, allow: list[str] | None = None
    ) -> tuple[ApiKey, str]:
        secret = new_secret()
        now = time.time()
        cur = await self._db.execute(
            "INSERT INTO api_keys (account_id, name, key_hash, prefix, created_at, expires_at, allow)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account_id, name, hash_secret(secret), visible_prefix(secret), now, expires_at,
             orjson.dumps(allow).decode() if allow is not None else None),
        )  # fmt: skip
        key = await self._key_where("k.id = ?", (cur.lastrowid,))
        assert key is not None
        return key, secret

    async def find_key(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        key = self._keys.get(digest)
        if key is None:
            rows = await self._db.execute_fetchall(
                f"SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = ?",
                (digest,),
            )
            if not rows or not hmac.compare_digest(rows[0][-1], digest):
                return None
            key = key_of(rows[0])
            self._keys.put(digest, key)
        return key if key.live(time.time()) else None

    async def list_keys(self, account_id: int | None = None) -> list[ApiKey]:
        if account_id is None:
            return await self._keys_where("1", ())
        return await self._keys_where("k.account_id = ?", (account_id,))

    async def revoke_key(self, key_id: int) -> bool:
        self._keys.forget(key_id)
        cur = await self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), key_id),
        )
        return cur.rowcount == 1

    async def _key_where(self, where: str, args: tuple) -> ApiKey | None:
        keys = await self._keys_where(where, args)
        return keys[0] if keys else None

    async def _keys_where(self, where: str, args: tuple) -> list[ApiKey]:
        rows = await self._db.execute_fetchall(
            f"SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE {where} ORDER BY k.id",
            args,
        )
        return [key_of(row) for row in rows]

    # usage

    async def record_usages(self, records: Sequence[UsageRecord]) -> None:
        """Write a batch as one multi-row INSERT: one hop to the worker thread and one
        commit (SQLite's cost is per commit: ten rows cost about a third of ten inserts)."""
        for start in range(0, len(records), _ROWS_PER_INSERT):
            part = records[start : start + _ROWS_PER_INSERT]
            await self._db.execute(
                _INSERT_USAGE + ",".join([_ROW_PLACEHOLDERS] * len(part)),
                [value for record in part for value in usage_row(record)],
            )

    # responses

    async def store_response(self, stored: StoredResponse) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO responses"
            " (id, account_id, model, created_at, expires_at, input, response) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (stored.id, stored.account_id, stored.model, stored.created_at, stored.expires_at,
             orjson.dumps(stored.input).decode(), orjson.dumps(stored.response).decode()),
        )  # fmt: skip

    async def get_response(self, account_id: int, response_id: str) -> StoredResponse | None:
        rows = await self._db.execute_fetchall(
            "SELECT id, account_id, model, created_at, expires_at, input, response FROM responses"
            " WHERE id = ? AND account_id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (response_id, account_id, time.time()),
        )
        if not rows:
            return None
        row = rows[0]
        return StoredResponse(*row[:5], input=orjson.loads(row[5]), response=orjson.loads(row[6]))

    async def delete_response(self, account_id: int, response_id: str) -> bool:
        cur = await self._db.execute("DELETE FROM responses WHERE id = ? AND account_id = ?", (response_id, account_id))
        return cur.rowcount == 1

    async def purge_responses(self, now: float) -> int:
        cur = await self._db.execute("DELETE FROM responses WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        return cur.rowcount

    async def count_requests(self, account_id: int, since: float) -> int:
        ((count,),) = await self._db.execute_fetchall(
            "SELECT COUNT(*) FROM usage_records WHERE account_id = ? AND started_at >= ?", (account_id, since)
        )
        return count

    async def usage_records(self, request_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        where, args = ("request_id = ?", (request_id,)) if request_id else ("1", ())
        rows = await self._db.execute_fetchall(
            f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_records WHERE {where} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [record_of(dict(zip(USAGE_COLUMNS, row, strict=True))) for row in rows]


_INSERT_USAGE = f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES "
_ROW_PLACEHOLDERS = "(" + ",".join("?" * len(USAGE_COLUMNS)) + ")"
_ROWS_PER_INSERT = 999 // len(USAGE_COLUMNS)  # within SQLite's oldest limit on parameters
