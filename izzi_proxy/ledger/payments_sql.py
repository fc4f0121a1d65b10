"""The ledger's payment records on both backends: the same statements, in each one's
placeholder style (SQLite ``?``, PostgreSQL ``$n``), mixed into ``SQLiteLedger`` and
``PostgresLedger``.

A payment changes state only by ``move_payment``: one ``UPDATE … WHERE state IN (…)``, so
of two confirmations racing for the same payment exactly one moves it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from izzi_proxy.ledger import Payment, PaymentEvent
from izzi_proxy.ledger.rows import EVENT_COLUMNS, PAYMENT_CHANGES, PAYMENT_COLUMNS, event_of, payment_of, payment_row

_INSERT_PAYMENT = f"INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES ({{}}) ON CONFLICT (id) DO NOTHING"
_INSERT_EVENT = (
    "INSERT INTO payment_events (provider, event_id, payment_id, status, outcome, detail, received_at, body)"
    " VALUES ({}) ON CONFLICT (provider, event_id) DO NOTHING"
)


def _marks(style: str, count: int, start: int = 1) -> list[str]:
    return ["?"] * count if style == "?" else [f"${n}" for n in range(start, start + count)]


def _move(style: str, to: str, whence: Sequence[str], now: float, changes: dict[str, Any]) -> tuple[str, list]:
    """The guarded update of one payment (its id the last argument)."""
    if unknown := set(changes) - PAYMENT_CHANGES:
        raise ValueError(f"a payment's {sorted(unknown)[0]} is not changed by a move")
    names = ["state", "updated_at", *changes]
    marks = _marks(style, len(names) + len(whence) + 1)  # the new values, the states it may be in, the id
    sets = ", ".join(f"{name} = {mark}" for name, mark in zip(names, marks, strict=False))
    states = ", ".join(marks[len(names) : -1])
    sql = f"UPDATE payments SET {sets} WHERE state IN ({states}) AND id = {marks[-1]} RETURNING {PAYMENT_COLUMNS}"
    return sql, [to, now, *changes.values(), *whence]


def _listing(style: str, account_id: int | None, state: str | None, limit: int) -> tuple[str, list]:
    tests, args = [], []
    for column, value in (("account_id", account_id), ("state", state)):
        if value is not None:
            args.append(value)
            tests.append(f"{column} = {_marks(style, 1, len(args))[0]}")
    args.append(limit)
    where = " AND ".join(tests) or "1 = 1"
    limit_mark = _marks(style, 1, len(args))[0]
    return f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE {where} ORDER BY created_at DESC, id LIMIT {limit_mark}", args


def _events(style: str, payment_id: str | None, limit: int) -> tuple[str, list]:
    if payment_id is None:
        return f"SELECT {EVENT_COLUMNS} FROM payment_events ORDER BY id DESC LIMIT {_marks(style, 1)[0]}", [limit]
    first, second = _marks(style, 2)
    return (f"SELECT {EVENT_COLUMNS} FROM payment_events WHERE payment_id = {first} ORDER BY id LIMIT {second}",
            [payment_id, limit])  # fmt: skip


def _event_row(provider, event_id, payment_id, status, outcome, detail, body, now) -> tuple:
    return (provider, event_id, payment_id, status, outcome, detail, now, orjson.dumps(body).decode() if body else None)


class SQLitePayments:
    """Payments on the SQLite ledger's connection and thread."""

    _run: Callable[..., Any]

    async def create_payment(self, payment: Payment) -> bool:
        sql = _INSERT_PAYMENT.format(", ".join(_marks("?", 18)))
        return (await self._run(_changed, sql, payment_row(payment))) == 1

    async def get_payment(self, payment_id: str) -> Payment | None:
        rows = await self._run(_all, f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?", (payment_id,))
        return payment_of(rows[0]) if rows else None

    async def list_payments(self, account_id: int | None = None, state: str | None = None, limit: int = 100):
        return [payment_of(row) for row in await self._run(_all, *_listing("?", account_id, state, limit))]

    async def move_payment(self, payment_id: str, to: str, whence: Sequence[str], now: float, **changes):
        sql, args = _move("?", to, whence, now, changes)
        rows = await self._run(_all, sql, (*args, payment_id))
        return payment_of(rows[0]) if rows else None

    async def record_payment_event(self, provider, event_id, payment_id, status, outcome, detail, body, now) -> bool:
        sql = _INSERT_EVENT.format(", ".join(_marks("?", 8)))
        row = _event_row(provider, event_id, payment_id, status, outcome, detail, body, now)
        return (await self._run(_changed, sql, row)) == 1

    async def payment_events(self, payment_id: str | None = None, limit: int = 100) -> list[PaymentEvent]:
        return [event_of(row) for row in await self._run(_all, *_events("?", payment_id, limit))]


def _all(db: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[tuple]:
    """The rows, read to the end (an UPDATE … RETURNING commits only then)."""
    return db.execute(sql, args).fetchall()


def _changed(db: sqlite3.Connection, sql: str, args: Sequence[Any]) -> int:
    return db.execute(sql, args).rowcount


class PostgresPayments:
    """Payments on the PostgreSQL ledger's pool."""

    _pool: Any

    async def create_payment(self, payment: Payment) -> bool:
        sql = _INSERT_PAYMENT.format(", ".join(_marks("$", 18)))
        return await self._pool.execute(sql, *payment_row(payment)) == "INSERT 0 1"

    async def get_payment(self, payment_id: str) -> Payment | None:
        row = await self._pool.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1", payment_id)
        return payment_of(tuple(row)) if row is not None else None

    async def list_payments(self, account_id: int | None = None, state: str | None = None, limit: int = 100):
        sql, args = _listing("$", account_id, state, limit)
        return [payment_of(tuple(row)) for row in await self._pool.fetch(sql, *args)]

    async def move_payment(self, payment_id: str, to: str, whence: Sequence[str], now: float, **changes):
        sql, args = _move("$", to, whence, now, changes)
        row = await self._pool.fetchrow(sql, *args, payment_id)
        return payment_of(tuple(row)) if row is not None else None

    async def record_payment_event(self, provider, event_id, payment_id, status, outcome, detail, body, now) -> bool:
        sql = _INSERT_EVENT.format(", ".join(_marks("$", 8)))
        row = _event_row(provider, event_id, payment_id, status, outcome, detail, body, now)
        return await self._pool.execute(sql, *row) == "INSERT 0 1"

    async def payment_events(self, payment_id: str | None = None, limit: int = 100) -> list[PaymentEvent]:
        sql, args = _events("$", payment_id, limit)
        return [event_of(tuple(row)) for row in await self._pool.fetch(sql, *args)]
