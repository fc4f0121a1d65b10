"""The embedded ledger: one SQLite file in WAL mode, on one worker thread.

``sqlite:///data/izzi.sqlite3`` is relative to the working directory,
``sqlite:////var/lib/izzi/izzi.sqlite3`` absolute, ``sqlite:///:memory:`` in memory.

Each ledger operation is one plain function run start to finish on the connection's own
thread (the standard library's sqlite3 and a one-worker executor): one hop from the event
loop, and a write is one ``BEGIN IMMEDIATE`` transaction that nothing else on this
connection can interleave with. Several gateway processes on one host may share the file:
``BEGIN IMMEDIATE`` takes SQLite's write lock first, so each check-and-update of a balance
is atomic across processes too (WAL lets readers go on meanwhile). Not on a network file
system, where SQLite's locks do not hold: use PostgreSQL for several hosts.

Holds and settlements, on every request's path, are the exception (``sqlite_writes.GroupCommit``): when the
database is free they run on the event loop, on a second connection that never waits for
a lock, and otherwise join a group commit on the thread.

Found keys are remembered for ``key_cache_s`` (a key revoked by another process stops
working within that time; by this one, at once); usage records arrive in batches.
"""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

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
from izzi_proxy.ledger.payments_sql import SQLitePayments
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
from izzi_proxy.ledger.sqlite_schema import MIGRATIONS
from izzi_proxy.ledger.sqlite_writes import GroupCommit, setup, transaction

T = TypeVar("T")

_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id"
_INSERT_USAGE = f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES "
_ROW_PLACEHOLDERS = "(" + ",".join("?" * len(USAGE_COLUMNS)) + ")"
_ROWS_PER_INSERT = 999 // len(USAGE_COLUMNS)  # within SQLite's oldest limit on parameters
_GROUPS = {
    "day": "strftime('%Y-%m-%d', u.started_at, 'unixepoch')",
    "model": "COALESCE(u.model, '-')",
    "key": "COALESCE(CAST(u.key_id AS TEXT), '-')",
    "account": "COALESCE(a.name, '-')",
    "upstream": "COALESCE(u.upstream, '-')",
}


def _path(url: str) -> str:
    rest = url.removeprefix("sqlite://")
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    return rest.removeprefix("/")


def _json(value: object | None) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


def _where(*conditions: tuple[str, object]) -> tuple[str, list]:
    """The conditions whose value is not None, joined with AND, and their values."""
    kept = [(sql, value) for sql, value in conditions if value is not None]
    return " AND ".join(sql for sql, _ in kept) or "1", [value for _, value in kept]


class SQLiteLedger(SQLitePayments):
    def __init__(self, db: sqlite3.Connection, key_cache_s: float = 0.0) -> None:
        self._db = db
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="izzi-sqlite")
        self._keys = KeyCache(key_cache_s)
        self._writes = GroupCommit(self._run, None)
        # reports (usage summaries, record listings) read on a connection and thread of their
        # own, so that a dashboard's scan of many records never holds up auth or billing
        self._reports: tuple[ThreadPoolExecutor, sqlite3.Connection] | None = None

    @classmethod
    async def open(cls, url: str, key_cache_s: float = 0.0) -> SQLiteLedger:
        path = _path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        ledger = cls(sqlite3.connect(path, isolation_level=None, check_same_thread=False), key_cache_s)
        try:
            await ledger._run(setup)
            await ledger.migrate()
            if path != ":memory:":
                inline = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                setup(inline, busy_timeout_ms=0, autocheckpoint=0)
                ledger._writes = GroupCommit(ledger._run, inline)
                reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                reader.execute("PRAGMA query_only = ON")
                reader.execute("PRAGMA busy_timeout = 10000")
                ledger._reports = (ThreadPoolExecutor(1, thread_name_prefix="izzi-sqlite-reports"), reader)
        except BaseException:
            await ledger.aclose()
            raise
        return ledger

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` on the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self._db, *args)

    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return await self._run(_fetch, sql, args)

    async def _report(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Rows read apart from the requests' connection (the same one for ``:memory:``)."""
        if self._reports is None:
            return await self._rows(sql, args)
        thread, reader = self._reports
        return await asyncio.get_running_loop().run_in_executor(thread, _fetch, reader, sql, args)

    async def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return await self._run(_execute, sql, args)

    async def migrate(self) -> int:
        """Bring the schema up to date; the version it is at. The version is read under the
        write lock, so processes opening a new file together migrate it once."""
        return await self._run(_migrate)

    async def ping(self) -> None:
        await self._rows("SELECT 1")

    async def aclose(self) -> None:
        await self._writes.aclose()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
        self._thread.shutdown()
        if self._reports is not None:
            thread, reader = self._reports
            await asyncio.get_running_loop().run_in_executor(thread, reader.close)
            thread.shutdown()

    # accounts

    async def create_account(self, name: str, plan: str = "free", overrides: dict | None = None) -> Account:
        now = time.time()
        try:
            cur = await self._write(
                "INSERT INTO accounts (name, plan, created_at, overrides) VALUES (?, ?, ?, ?)",
                (name, plan, now, _json(overrides or None)),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"an account named {name!r} exists") from None
        return Account(cur.lastrowid, name, plan, now, overrides or {})

    async def get_account(self, name: str) -> Account | None:
        rows = await self._rows(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?", (name,))
        return account_of(rows[0]) if rows else None

    async def get_account_by_id(self, account_id: int) -> Account | None:
        rows = await self._rows(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
        return account_of(rows[0]) if rows else None

    async def list_accounts(self) -> list[Account]:
        return [account_of(row) for row in await self._rows(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id")]

    async def update_account(self, account_id: int, plan: str | None = None, overrides: dict | None = None) -> None:
        """Change the plan and/or replace the overrides; cached keys pick it up within key_cache_s."""
        if plan is not None:
            await self._write("UPDATE accounts SET plan = ? WHERE id = ?", (plan, account_id))
        if overrides is not None:
            await self._write("UPDATE accounts SET overrides = ? WHERE id = ?", (_json(overrides or None), account_id))

    # keys

    async def create_key(
        self, account_id: int, name: str, expires_at: float | None = None, allow: list[str] | None = None
    ) -> tuple[ApiKey, str]:
        secret = new_secret()
        cur = await self._write(
            "INSERT INTO api_keys (account_id, name, key_hash, prefix, created_at, expires_at, allow)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account_id, name, hash_secret(secret), visible_prefix(secret), time.time(), expires_at, _json(allow)),
        )
        (key,) = await self._keys_where("k.id = ?", (cur.lastrowid,))
        return key, secret

    async def find_key(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        key = self._keys.get(digest)
        if key is None:
            rows = await self._rows(f"{_KEYS} WHERE k.key_hash = ?", (digest,))
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
        cur = await self._write(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
        )
        return cur.rowcount == 1

    async def _keys_where(self, where: str, args: tuple) -> list[ApiKey]:
        return [key_of(row) for row in await self._rows(f"{_KEYS} WHERE {where} ORDER BY k.id", args)]

    # usage

    async def record_usages(self, records: Sequence[UsageRecord]) -> None:
        """Write a batch in one transaction, as multi-row INSERTs (SQLite's cost is per
        commit: ten rows cost about a third of ten inserts)."""
        await self._run(_insert_records, [usage_row(record) for record in records])

    async def usage_records(
        self, request_id: str | None = None, limit: int = 100, account_id: int | None = None, failed: bool = False
    ) -> list[UsageRecord]:
        where, args = _where(
            ("request_id = ?", request_id or None),
            ("account_id = ?", account_id),
            ("outcome <> ?", "ok" if failed else None),
        )
        rows = await self._report(
            f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_records WHERE {where} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [record_of(dict(zip(USAGE_COLUMNS, row, strict=True))) for row in rows]

    async def count_requests(self, account_id: int, since: float) -> int:
        ((count,),) = await self._rows(
            "SELECT COUNT(*) FROM usage_records WHERE account_id = ? AND started_at >= ?", (account_id, since)
        )
        return count

    async def usage_summary(
        self, by: str, since: float, until: float | None = None, account_id: int | None = None, daily: bool = False
    ) -> list[UsageSummary]:
        where, args = _where(
            ("u.started_at >= ?", since), ("u.started_at < ?", until), ("u.account_id = ?", account_id)
        )
        day = f", {_GROUPS['day']} AS d" if daily else ""
        order = "d, g" if daily else "g"
        rows = await self._report(
            f"SELECT {_GROUPS[by]} AS g, {SUMMARY_COLUMNS}{day} FROM usage_records u"
            f" LEFT JOIN accounts a ON a.id = u.account_id WHERE {where} GROUP BY {order} ORDER BY {order}",
            args,
        )
        return [UsageSummary(*row) for row in rows]

    # money

    async def place_hold(self, ask: HoldAsk, limits: SpendLimits, now: float) -> HoldResult:
        return await self._writes.submit(_place_hold, ask, limits, now)

    async def extend_hold(self, hold_id: int, want: int, need: int, limits: SpendLimits, now: float) -> int:
        return await self._writes.submit(_extend_hold, hold_id, want, need, limits, now)

    async def settle(self, hold_id: int, cost: int, record: UsageRecord, now: float) -> Settled | None:
        return await self._writes.submit(_settle, hold_id, cost, record, now)

    async def checkpoint_holds(self, owner: str, progress: Sequence[Checkpoint], expires_at: float) -> None:
        await self._run(_checkpoint, owner, progress, expires_at)

    async def open_holds(self, account_id: int | None = None, expired_at: float | None = None) -> list[OpenHold]:
        where, args = _where(("account_id = ?", account_id), ("expires_at <= ?", expired_at))
        rows = await self._rows(f"SELECT {HOLD_COLUMNS} FROM holds WHERE {where} ORDER BY id", args)
        return [hold_of(row) for row in rows]

    async def window_spend(self, account_id: int, now: float) -> list[tuple[int, int]]:
        rows = await self._rows(
            "SELECT bucket, amount FROM spend_5m WHERE account_id = ? AND bucket >= ? ORDER BY bucket",
            (account_id, window_start(now)),
        )
        return [(bucket, amount) for bucket, amount in rows]

    async def month_spend(self, account_id: int, now: float) -> int:
        rows = await self._rows(
            "SELECT amount FROM spend_month WHERE account_id = ? AND month = ?", (account_id, month_of(now))
        )
        return rows[0][0] if rows else 0

    async def balance_of(self, account_id: int) -> Balance:
        ((balance, held, holds),) = await self._rows(
            "SELECT balance, held, (SELECT COUNT(*) FROM holds WHERE account_id = ?) FROM accounts WHERE id = ?",
            (account_id, account_id),
        )
        return Balance(balance, held, holds)

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
        return await self._run(_add_credits, account_id, amount, bonus, note, idempotency_key, when, kind)

    async def credit_entries(self, account_id: int | None = None) -> list[CreditEntry]:
        where, args = _where(("account_id = ?", account_id))
        rows = await self._rows(f"SELECT {CREDIT_COLUMNS} FROM credit_entries WHERE {where} ORDER BY id", args)
        return [credit_of(row) for row in rows]

    async def purge_spend(self, now: float) -> None:
        await self._write("DELETE FROM spend_5m WHERE bucket < ?", (window_start(now),))

    # responses

    async def store_response(self, stored: StoredResponse) -> None:
        await self._write(
            "INSERT OR REPLACE INTO responses"
            " (id, account_id, model, created_at, expires_at, input, response) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (stored.id, stored.account_id, stored.model, stored.created_at, stored.expires_at,
             orjson.dumps(stored.input).decode(), orjson.dumps(stored.response).decode()),
        )  # fmt: skip

    async def get_response(self, account_id: int, response_id: str) -> StoredResponse | None:
        rows = await self._rows(
            "SELECT id, account_id, model, created_at, expires_at, input, response FROM responses"
            " WHERE id = ? AND account_id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (response_id, account_id, time.time()),
        )
        if not rows:
            return None
        row = rows[0]
        return StoredResponse(*row[:5], input=orjson.loads(row[5]), response=orjson.loads(row[6]))

    async def delete_response(self, account_id: int, response_id: str) -> bool:
        cur = await self._write("DELETE FROM responses WHERE id = ? AND account_id = ?", (response_id, account_id))
        return cur.rowcount == 1

    async def purge_responses(self, now: float) -> int:
        cur = await self._write("DELETE FROM responses WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        return cur.rowcount


# -- what runs on the connection's thread ---------------------------------------------------


def _fetch(db: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[tuple]:
    return db.execute(sql, args).fetchall()


def _execute(db: sqlite3.Connection, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
    return db.execute(sql, args)


@transaction
def _migrate(db: sqlite3.Connection) -> int:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    for script in MIGRATIONS[version:]:
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    return len(MIGRATIONS)


@transaction
def _insert_records(db: sqlite3.Connection, rows: list[tuple]) -> None:
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        part = rows[start : start + _ROWS_PER_INSERT]
        db.execute(_INSERT_USAGE + ",".join([_ROW_PLACEHOLDERS] * len(part)), [v for row in part for v in row])


def _spent(db: sqlite3.Connection, account_id: int, limits: SpendLimits, now: float) -> tuple[int, int]:
    window = month = 0
    if limits.window is not None:
        (window,) = db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM spend_5m WHERE account_id = ? AND bucket >= ?",
            (account_id, window_start(now)),
        ).fetchone()
    if limits.month is not None:
        row = db.execute(
            "SELECT amount FROM spend_month WHERE account_id = ? AND month = ?", (account_id, month_of(now))
        ).fetchone()
        month = row[0] if row else 0
    return window, month


def _room(balance: int, held: int, window: int, month: int, limits: SpendLimits) -> tuple[int, str]:
    """How much more may be held, and what limits it."""
    room, reason = balance - held, "balance"
    if limits.window is not None and limits.window - window - held < room:
        room, reason = limits.window - window - held, "quota"
    if limits.month is not None and limits.month - month - held < room:
        room, reason = limits.month - month - held, "budget"
    return room, reason


@transaction
def _place_hold(db: sqlite3.Connection, ask: HoldAsk, limits: SpendLimits, now: float) -> HoldResult:
    row = db.execute("SELECT balance, held FROM accounts WHERE id = ?", (ask.account_id,)).fetchone()
    if row is None:
        return HoldResult(None, "account", 0, 0)
    balance, held = row
    window, month = _spent(db, ask.account_id, limits, now)
    room, reason = _room(balance, held, window, month, limits)
    if room < ask.amount:
        return HoldResult(None, reason, balance, held, window, month)
    db.execute("UPDATE accounts SET held = held + ? WHERE id = ?", (ask.amount, ask.account_id))
    cur = db.execute(
        "INSERT INTO holds (account_id, request_id, amount, cost, owner, created_at, expires_at, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (ask.account_id, ask.request_id, ask.amount, ask.cost, ask.owner, now, ask.expires_at, _json(ask.detail)),
    )
    return HoldResult(cur.lastrowid, None, balance, held + ask.amount, window, month)


@transaction
def _extend_hold(db: sqlite3.Connection, hold_id: int, want: int, need: int, limits: SpendLimits, now: float) -> int:
    row = db.execute(
        "SELECT a.id, a.balance, a.held FROM holds h JOIN accounts a ON a.id = h.account_id WHERE h.id = ?",
        (hold_id,),
    ).fetchone()
    if row is None:
        return 0
    account_id, balance, held = row
    room, _ = _room(balance, held, *_spent(db, account_id, limits, now), limits)
    granted = min(want, room)
    if granted < need or granted <= 0:
        return 0
    db.execute("UPDATE holds SET amount = amount + ? WHERE id = ?", (granted, hold_id))
    db.execute("UPDATE accounts SET held = held + ? WHERE id = ?", (granted, account_id))
    return granted


@transaction
def _settle(db: sqlite3.Connection, hold_id: int, cost: int, record: UsageRecord, now: float) -> Settled | None:
    row = db.execute(
        "SELECT h.account_id, h.amount, a.balance, a.held FROM holds h JOIN accounts a ON a.id = h.account_id"
        " WHERE h.id = ?",
        (hold_id,),
    ).fetchone()
    if row is None:
        return None
    account_id, amount, balance, held = row
    charged = min(cost, max(0, balance - (held - amount)))
    db.execute("DELETE FROM holds WHERE id = ?", (hold_id,))
    db.execute("UPDATE accounts SET balance = balance - ?, held = held - ? WHERE id = ?", (charged, amount, account_id))
    if charged:
        db.execute(
            "INSERT INTO spend_5m (account_id, bucket, amount) VALUES (?, ?, ?)"
            " ON CONFLICT (account_id, bucket) DO UPDATE SET amount = amount + excluded.amount",
            (account_id, bucket_of(now), charged),
        )
        db.execute(
            "INSERT INTO spend_month (account_id, month, amount) VALUES (?, ?, ?)"
            " ON CONFLICT (account_id, month) DO UPDATE SET amount = amount + excluded.amount",
            (account_id, month_of(now), charged),
        )
    record.cost, record.unbilled = charged, cost - charged
    db.execute(_INSERT_USAGE + _ROW_PLACEHOLDERS, usage_row(record))
    return Settled(charged, balance - charged)


@transaction
def _checkpoint(db: sqlite3.Connection, owner: str, progress: Sequence[Checkpoint], expires_at: float) -> None:
    db.executemany(
        "UPDATE holds SET cost = ?, input_tokens = ?, output_tokens = ?, expires_at = ? WHERE id = ? AND owner = ?",
        [(p.cost, p.input_tokens, p.output_tokens, expires_at, p.hold_id, owner) for p in progress],
    )


@transaction
def _add_credits(
    db: sqlite3.Connection,
    account_id: int,
    amount: int,
    bonus: int,
    note: str | None,
    key: str | None,
    now: float,
    kind: str,
) -> tuple[CreditEntry, bool]:
    if key is not None:
        row = db.execute(f"SELECT {CREDIT_COLUMNS} FROM credit_entries WHERE idempotency_key = ?", (key,)).fetchone()
        if row is not None:
            entry = credit_of(row)
            if (entry.account_id, entry.amount, entry.bonus, entry.kind) != (account_id, amount + bonus, bonus, kind):
                raise IdempotencyConflict(f"the idempotency key {key!r} was used for another top-up")
            return entry, False
    if db.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise LookupError(f"no account with id {account_id}")
    cur = db.execute(
        "INSERT INTO credit_entries (account_id, amount, bonus, kind, note, idempotency_key, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (account_id, amount + bonus, bonus, kind, note, key, now),
    )
    db.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount + bonus, account_id))
    return CreditEntry(cur.lastrowid, account_id, amount + bonus, bonus, kind, note, key, now), True
