"""The ledger backends, each over a real connection: an SQLite file, and a real PostgreSQL
(``IZZI_TEST_POSTGRES_URL``, default 127.0.0.1:5432 database ``test``) in a fresh schema per
test. A missing PostgreSQL fails loudly: nothing skips."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from izzi_proxy.ledger import open_ledger

POSTGRES_URL = os.environ.get("IZZI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty ledger's URL (a missing PostgreSQL fails here, loudly: nothing skips)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.sqlite3"
        return
    schema = "test_" + secrets.token_hex(6)
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{POSTGRES_URL}?search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@pytest.fixture
async def ledger(url: str):
    ledger = await open_ledger(url)
    yield ledger
    await ledger.aclose()
