"""Several gateway processes on one ledger: a balance that covers a few requests is never
overspent by 50 at once through two processes, and holds of a process that is killed are
reconciled by another. On PostgreSQL (with Redis for the limits) and on one SQLite file.

The echo model costs $1 / $2 per 1M tokens: 1 µcr per input token, 2 per output token.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import openai
import pytest

from izzi_proxy.ledger import open_ledger
from tests.e2e.test_cli import cli
from tests.e2e.test_limits_shared import RedisServer, start_gateways, stop_gateways
from tests.unit.ledger.conftest import POSTGRES_URL

MODELS = '[models."echo"]\nname = "Echo"\ntier = "maintained"\ninput = 1\noutput = 2\nroutes = ["mock:echo"]\n'
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(params=["postgres", "sqlite"])
async def database(request, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(database URL, limiter URL): PostgreSQL in a fresh schema with a private Redis, or
    one SQLite file with each process's own limiter."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/shared.sqlite3", "memory://"
        return
    schema = "e2e_" + secrets.token_hex(6)
    admin = await asyncpg.connect(POSTGRES_URL)
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{POSTGRES_URL}?search_path={schema}", redis.url
    finally:
        redis.stop()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def config_for(tmp_path: Path, database: tuple[str, str], *, chunks: int = 6, delay_ms: int = 100,
               billing: str = "", server: str = "") -> Path:  # fmt: skip
    (tmp_path / "models.toml").write_text(MODELS)
    path = tmp_path / "izzi.toml"
    path.write_text(
        f'[server]\nlog_level = "warning"\n{server}\n'
        f'[storage]\ndatabase_url = "{database[0]}"\nlimiter_url = "{database[1]}"\n'
        f"[billing]\n{billing}\n"
        f'[upstreams.mock]\nkind = "mock"\nchunks = {chunks}\nchunk_delay_ms = {delay_ms}\n'
    )
    return path


def funded_key(config: Path, name: str, credits: str) -> str:
    args = ["--override=concurrent=1000", "--override=rpm=100000", "--override=daily=1000000"]
    assert cli("accounts", "create", name, "--plan", "ultra", *args, "--config", str(config)).returncode == 0
    assert cli("credits", "add", name, credits, "--config", str(config)).returncode == 0
    return cli("keys", "create", "--name", "k", "--account", name, "--config", str(config)).stdout.strip()


async def books_of(url: str, name: str) -> tuple[int, int, list]:
    """(balance, top-ups - charges, records) of the account; fails if a hold is open."""
    ledger = await open_ledger(url)
    try:
        account = await ledger.get_account(name)
        balance = await ledger.balance_of(account.id)
        records = await ledger.usage_records(limit=10_000, account_id=account.id)
        topped = sum(e.amount for e in await ledger.credit_entries(account.id))
        assert (balance.held, balance.holds) == (0, 0), balance
        return balance.balance, topped - sum(r.cost for r in records), records
    finally:
        await ledger.aclose()


async def test_fifty_at_once_through_two_processes_never_overspend(tmp_path, database) -> None:
    config = config_for(tmp_path, database, chunks=20)
    # each request holds its prompt plus 1000 output tokens (~2010 µcr) while it runs
    # (~2 s) and costs ~30: 0.01 credits covers four at once (a few more are admitted if
    # they arrive as the first ones end)
    secret = funded_key(config, "few", "0.01")
    gateways = await start_gateways(config, 2)
    clients = [openai.AsyncOpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) for url, _ in gateways]
    try:

        async def one(i: int) -> str:
            try:
                await clients[i % 2].chat.completions.create(model="echo", messages=HELLO, max_tokens=1000)
                return "ok"
            except openai.APIStatusError as err:
                assert err.status_code == 402 and err.body["type"] == "insufficient_balance", err.body
                return "402"

        outcomes = await asyncio.gather(*(one(i) for i in range(50)))
    finally:
        for client in clients:
            await client.close()
        await stop_gateways(gateways)
    admitted = outcomes.count("ok")
    assert admitted >= 2 and outcomes.count("402") == 50 - admitted >= 25, outcomes
    balance, books, records = await books_of(database[0], "few")
    assert balance >= 0 and books == balance  # to the micro-credit
    charged = [r for r in records if r.cost]
    assert len(records) == 50 and len(charged) == admitted  # every request recorded, each admitted one charged once
    assert all(r.usage_source == "reported" and r.cost == r.usage.input_tokens + 2 * r.usage.output_tokens
               for r in charged)  # fmt: skip


async def _open_streams(url: str, secret: str, count: int) -> list[aiohttp.ClientResponse]:
    """Start streams and read a few frames of each: the answers are being relayed."""
    session = aiohttp.ClientSession()
    body = {"model": "echo", "messages": [{"role": "user", "content": "a long story " * 20}], "stream": True}
    responses = []
    for _ in range(count):
        resp = await session.post(url + "/v1/chat/completions", json=body, headers={"x-api-key": secret})
        assert resp.status == 200
        responses.append(resp)
    for resp in responses:
        for _ in range(4):
            await resp.content.readline()
    responses[0]._izzi_session = session  # type: ignore[attr-defined]
    return responses


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
async def test_a_process_that_dies_mid_stream_leaves_no_hold_behind(tmp_path, database, how) -> None:
    """SIGKILL: the holds stay in the ledger; once expired, the other process settles them at
    their last checkpoint (outcome "lost"). SIGTERM: the streams are cut at the shutdown
    bound and settled by their own process."""
    # a short hold_ttl_s for the SIGKILL case: the survivor reconciles within seconds. The
    # SIGTERM case keeps a long one: on a busy machine a live process's checkpoint may come
    # later than 1 s, and its holds would be (rightly) reconciled as lost before it settles.
    ttl = 1 if how == "SIGKILL" else 30
    config = config_for(tmp_path, database, chunks=200, delay_ms=50,
                        billing=f"checkpoint_s = 0.3\nhold_ttl_s = {ttl}",
                        server="shutdown_timeout_s = 0.5")  # fmt: skip
    secret = funded_key(config, "dying", "1")
    (victim, victim_process), _survivor = gateways = await start_gateways(config, 2)
    try:
        streams = await _open_streams(victim, secret, 5)
        await asyncio.sleep(0.8)  # past a checkpoint: the holds say what the answers cost so far
        victim_process.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
        await victim_process.wait()
        await streams[0]._izzi_session.close()  # type: ignore[attr-defined]
        for _ in range(100):  # the survivor reconciles within hold_ttl_s + checkpoint_s
            try:
                balance, books, records = await books_of(database[0], "dying")
                break
            except AssertionError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the dead process's holds were not reconciled")
    finally:
        await stop_gateways(gateways)
    assert len(records) == 5 and books == balance >= 0
    expected = "lost" if how == "SIGKILL" else "error"
    seen = [(r.outcome, r.error_type, r.usage_source, r.cost, r.usage and r.usage.output_tokens) for r in records]
    assert all(r.outcome == expected and r.cost > 0 and r.usage.output_tokens > 0 for r in records), seen
