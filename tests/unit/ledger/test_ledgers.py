"""One contract for every ledger backend, run against each over a real connection: the
embedded SQLite file and a real PostgreSQL (``IZZI_TEST_POSTGRES_URL``, default
127.0.0.1:5432 database ``test``, a fresh schema per test). Keys stored hashed, found in
constant time, revoked and expired; usage records written and read back; migrations
idempotent across reopenings."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from izzi_proxy.canonical import Usage
from izzi_proxy.ledger import AlreadyExists, UsageRecord, hash_secret, mask, open_ledger


async def test_key_format_and_hashed_storage(ledger, url: str, tmp_path: Path) -> None:
    account = await ledger.create_account("acme", "pro")
    key, secret = await ledger.create_key(account.id, "laptop")
    assert re.fullmatch(r"izzi-[A-Za-z0-9_-]{43}", secret)
    assert key.prefix == secret[:11] and key.plan == "pro" and key.account_name == "acme"
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
            dump = "\n".join(db.iterdump())
            stored = db.execute("SELECT key_hash FROM api_keys").fetchone()[0]
    else:
        db = await asyncpg.connect(url)
        try:
            rows = [tuple(r) for table in ("accounts", "api_keys") for r in await db.fetch(f"SELECT * FROM {table}")]
            stored = await db.fetchval("SELECT key_hash FROM api_keys")
        finally:
            await db.close()
        dump = repr(rows)
    assert secret not in dump and secret[11:] not in dump
    assert bytes(stored) == hash_secret(secret)


async def test_find_key(ledger) -> None:
    account = await ledger.create_account("acme")
    key, secret = await ledger.create_key(account.id, "k")
    found = await ledger.find_key(secret)
    assert found == key
    assert await ledger.find_key(secret + "x") is None
    assert await ledger.find_key(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert await ledger.find_key("") is None


async def test_revoke_and_expire(ledger) -> None:
    account = await ledger.create_account("acme")
    key, secret = await ledger.create_key(account.id, "k")
    assert await ledger.revoke_key(key.id) is True
    assert await ledger.revoke_key(key.id) is False
    assert await ledger.find_key(secret) is None
    (listed,) = await ledger.list_keys(account.id)
    assert listed.revoked_at is not None

    _, expired = await ledger.create_key(account.id, "old", expires_at=time.time() - 1)
    _, later = await ledger.create_key(account.id, "new", expires_at=time.time() + 3600)
    assert await ledger.find_key(expired) is None
    assert await ledger.find_key(later) is not None


async def test_accounts_are_unique(ledger) -> None:
    await ledger.create_account("acme")
    with pytest.raises(AlreadyExists):
        await ledger.create_account("acme")
    assert (await ledger.get_account("acme")).name == "acme"
    assert await ledger.get_account("nobody") is None


async def test_usage_records_round_trip(ledger) -> None:
    record = UsageRecord(
        request_id="req_1", endpoint="/v1/chat/completions", started_at=1.5, key_id=1, account_id=1,
        model="gpt-4o", upstream="openai", upstream_model="gpt-4o-2024", stream=True, status=200,
        outcome="ok", duration_ms=12.5, usage=Usage(10, 20, 3, 0, 5), extra={"note": "x"},
    )  # fmt: skip
    await ledger.record_usages(
        [record, UsageRecord(request_id="req_2", endpoint="/v1/chat/completions", started_at=2.0)]
    )
    assert await ledger.usage_records(request_id="req_1") == [record]
    (unknown,) = await ledger.usage_records(request_id="req_2")
    assert unknown.usage is None
    assert [r.request_id for r in await ledger.usage_records()] == ["req_2", "req_1"]


async def test_reopening_keeps_data_and_schema(url: str) -> None:
    first = await open_ledger(url)
    account = await first.create_account("acme")
    _, secret = await first.create_key(account.id, "k")
    await first.aclose()
    second = await open_ledger(url)
    try:
        assert await second.find_key(secret) is not None
        assert await second.migrate() == await second.migrate()  # nothing left to apply
    finally:
        await second.aclose()


async def test_processes_opening_together_migrate_once(url: str) -> None:
    import asyncio

    ledgers = await asyncio.gather(*(open_ledger(url) for _ in range(4)))
    try:
        assert len({await ledger.migrate() for ledger in ledgers}) == 1
        await ledgers[0].create_account("once")
        assert (await ledgers[3].get_account("once")).name == "once"
    finally:
        for ledger in ledgers:
            await ledger.aclose()


def test_mask_never_shows_enough_to_use() -> None:
    secret = "izzi-" + "a" * 43
    assert mask(secret) == "izzi-aaaaaa…aaaa"
    assert mask("short") == "***"


async def test_stored_responses_by_account_and_expiry(ledger) -> None:
    from izzi_proxy.ledger import StoredResponse

    now = time.time()
    item = {"type": "message", "role": "user", "content": "hi"}
    kept = StoredResponse("resp_1", 1, "claude", now, now + 60, [item], {"id": "resp_1", "output": []})
    old = StoredResponse("resp_2", 1, "claude", now - 100, now - 1, [], {"id": "resp_2", "output": []})
    forever = StoredResponse("resp_3", 1, "claude", now, None, [], {"id": "resp_3", "output": []})
    for stored in (kept, old, forever):
        await ledger.store_response(stored)
    assert await ledger.get_response(1, "resp_1") == kept
    assert await ledger.get_response(2, "resp_1") is None  # another account's
    assert await ledger.get_response(1, "resp_2") is None  # expired, even before the purge
    assert await ledger.purge_responses(now) == 1
    assert await ledger.get_response(1, "resp_3") == forever
    assert await ledger.delete_response(2, "resp_1") is False
    assert await ledger.delete_response(1, "resp_1") is True
    assert await ledger.get_response(1, "resp_1") is None


async def test_count_requests_since(ledger) -> None:
    records = [UsageRecord(f"req_{i}", "/v1/chat/completions", started_at=t, account_id=a)
               for i, (t, a) in enumerate([(100.0, 1), (200.0, 1), (300.0, 1), (300.0, 2)])]  # fmt: skip
    await ledger.record_usages(records)
    assert await ledger.count_requests(1, 150.0) == 2
    assert await ledger.count_requests(2, 0.0) == 1


async def test_a_large_batch_of_usage_records(ledger) -> None:
    records = [UsageRecord(f"req_{i}", "/v1/messages", started_at=float(i), account_id=7, usage=Usage(i, 1))
               for i in range(1200)]  # fmt: skip
    await ledger.record_usages(records)
    assert await ledger.count_requests(7, 0.0) == 1200
    assert (await ledger.usage_records(request_id="req_1199"))[0].usage == Usage(1199, 1)
