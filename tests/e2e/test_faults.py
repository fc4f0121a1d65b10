"""Faults under load, each through real gateway processes with clients sending all along:
Redis restarted (the failure policy applies, the limits come back by themselves), PostgreSQL
gone and back (requests refused clearly or served; never a hang, never a lost record),
SQLite locked by another process (requests wait, boundedly), and a client that reads a
stream very slowly (the gateway holds a bounded buffer and slows the upstream down).
SIGTERM with streams on every worker: ``test_workers.py``."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import openai
import pytest
from aiohttp import web

from tests.conftest import free_port
from tests.e2e.test_billing_processes import HELLO, books_of, config_for, funded_key
from tests.e2e.test_cli import wait_ready
from tests.e2e.test_limits_shared import RedisServer
from tests.e2e.test_workers import Workers
from tests.unit.ledger.conftest import POSTGRES_URL

pytestmark = pytest.mark.timeout(120)


@dataclass
class Load:
    """Clients sending chat requests (plain and streamed) until stopped; what each got."""

    url: str
    key: str
    outcomes: Counter = field(default_factory=Counter)
    request_ids: list[str] = field(default_factory=list)  # of every answer, error or not
    slowest_s: float = 0.0
    degraded: list[float] = field(default_factory=list)  # when answers said x-ratelimit-degraded
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self, clients: int = 6) -> None:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(clients)]

    async def stop(self) -> None:
        self._done.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, i: int) -> None:
        async with openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=8) as client:
            while not self._done.is_set():
                started = time.monotonic()
                try:
                    if i % 2:
                        raw = await client.chat.completions.with_raw_response.create(
                            model="echo", messages=HELLO, max_tokens=5
                        )
                    else:
                        stream = await client.chat.completions.create(
                            model="echo", messages=HELLO, max_tokens=5, stream=True
                        )
                        async with stream:
                            chunks = [c async for c in stream]
                        assert chunks[-1].choices[0].finish_reason == "stop"
                        raw = stream.response
                    self.request_ids.append(raw.headers["x-request-id"])
                    if raw.headers.get("x-ratelimit-degraded") == "true":
                        self.degraded.append(time.monotonic())
                    self.outcomes["200"] += 1
                except openai.APIStatusError as err:
                    self.request_ids.append(err.response.headers["x-request-id"])
                    self.outcomes[
                        f"{err.status_code} {err.body.get('type') if isinstance(err.body, dict) else ''}"
                    ] += 1
                    await asyncio.sleep(0.05)
                except openai.APITimeoutError:
                    self.outcomes["timeout"] += 1
                except openai.APIConnectionError as err:
                    self.outcomes[f"connection {err!r}"] += 1
                self.slowest_s = max(self.slowest_s, time.monotonic() - started)


@contextlib.asynccontextmanager
async def gateway(config: Path, log: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """One gateway process, its log in a file (a pipe nobody reads would fill, and block it)."""
    port = free_port()
    with log.open("w") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "izzi_proxy", "serve", "--config", str(config), "--port", str(port),
            "--workers", "1", stderr=stderr,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, process)
        yield url, process
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def until_no_degraded_answer_for(load: Load, quiet_s: float, within_s: float) -> float | None:
    """When answers stopped saying x-ratelimit-degraded (none for ``quiet_s`` since), or None."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        last = max(load.degraded, default=0.0)
        if time.monotonic() - last >= quiet_s and load.outcomes["200"]:
            return last + 1e-6
    return None


async def records_of(database_url: str, account: str, request_ids: list[str]) -> list[str]:
    """The request ids that have no usage record (the books must balance, no hold open)."""
    balance, books, records = await books_of(database_url, account)
    assert balance == books  # top-ups minus charges, to the micro-credit
    recorded = {r.request_id for r in records}
    return [rid for rid in request_ids if rid not in recorded]


# -- Redis ----------------------------------------------------------------------------------


async def test_redis_restarted_under_load_on_two_workers(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    await redis.start()
    database = (f"sqlite:///{tmp_path}/shared.sqlite3", redis.url)
    config = config_for(tmp_path, database, chunks=2, delay_ms=5)
    key = funded_key(config, "acme", "100")
    workers = Workers(config, 2, tmp_path / "metrics")
    workers.metrics_dir.mkdir()
    await workers.start()
    load = Load(workers.url, key)
    try:
        load.start()
        await asyncio.sleep(0.5)
        redis.stop()
        stopped = time.monotonic()
        await asyncio.sleep(1.0)
        await redis.start()  # same port, empty
        restarted = time.monotonic()
        back = await until_no_degraded_answer_for(load, 0.5, within_s=10)
        await asyncio.sleep(1.0)
        await load.stop()
    finally:
        assert await workers.stop() == 0
        redis.stop()
    # on_limiter_failure = "open": every request served; those during the outage say so
    assert set(load.outcomes) == {"200"}, load.outcomes
    assert load.degraded and all(stopped <= t for t in load.degraded)
    assert back is not None, "the limits did not come back by themselves"
    assert all(t < back for t in load.degraded), "degraded again after the limits came back"
    assert back - restarted < 10
    assert load.slowest_s < 3
    assert await records_of(database[0], "acme", load.request_ids) == []


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
async def own_database(tmp_path: Path):
    """A database of its own on the test server, so it can be taken away and given back:
    (url, take_away, give_back). Taken away, it refuses new connections and its open ones
    are cut — what a restart looks like to its clients."""
    name = "fault_" + secrets.token_hex(5)
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE DATABASE {name}")

    async def take_away() -> None:
        await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)

    async def give_back() -> None:
        await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")

    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name, take_away, give_back
    finally:
        await give_back()
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()


async def test_postgres_gone_and_back_under_load(tmp_path: Path, own_database) -> None:
    database_url, take_away, give_back = own_database
    redis = RedisServer(tmp_path)
    await redis.start()
    # a hold whose placing was cut after its commit is this process's no longer: it is
    # reconciled once it expires (hold_ttl_s, short here so that happens within the test)
    billing = "checkpoint_s = 0.5\nhold_ttl_s = 1.5"
    config = config_for(tmp_path, (database_url, redis.url), chunks=2, delay_ms=5, billing=billing)
    key = funded_key(config, "acme", "100")
    try:
        async with gateway(config, tmp_path / "gateway.log") as (url, _):
            load = Load(url, key)
            load.start()
            await asyncio.sleep(0.5)
            await take_away()
            await asyncio.sleep(1.5)
            await give_back()
            await asyncio.sleep(2.0)
            after = Counter(load.outcomes)
            await asyncio.sleep(0.5)
            await load.stop()
            await asyncio.sleep(2.5)  # past hold_ttl_s: orphaned holds reconciled
    finally:
        redis.stop()
    log = (tmp_path / "gateway.log").read_text()
    # refused clearly (503 service_unavailable, with Retry-After) or served; nothing else
    assert set(load.outcomes) <= {"200", "503 service_unavailable"}, load.outcomes
    assert load.outcomes["503 service_unavailable"] > 0, "the outage was not felt"
    assert load.outcomes["200"] - after["200"] > 0, "requests were not served again after it"
    assert load.slowest_s < 5, "a request waited too long"
    # every answer, the refused ones too, has its record once the database is back
    assert await records_of(database_url, "acme", load.request_ids) == []
    assert "placing a hold failed" in log


# -- SQLite -----------------------------------------------------------------------------------


async def test_sqlite_locked_by_another_process_makes_requests_wait_not_fail(tmp_path: Path) -> None:
    database = (f"sqlite:///{tmp_path}/shared.sqlite3", "memory://")
    config = config_for(tmp_path, database, chunks=2, delay_ms=5)
    key = funded_key(config, "acme", "100")
    async with gateway(config, tmp_path / "gateway.log") as (url, _):
        load = Load(url, key)
        load.start()
        await asyncio.sleep(0.5)
        locker = sqlite3.connect(tmp_path / "shared.sqlite3", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # the write lock, as a busy admin script would hold it
        served = load.outcomes["200"]
        await asyncio.sleep(2.0)
        locker.execute("ROLLBACK")
        locker.close()
        await asyncio.sleep(1.0)
        await load.stop()
    assert set(load.outcomes) == {"200"}, load.outcomes
    assert load.outcomes["200"] > served
    assert 1.5 < load.slowest_s < 4  # they waited for the lock (busy_timeout 10 s), no longer
    assert await records_of(database[0], "acme", load.request_ids) == []


# -- a slow reader ---------------------------------------------------------------------------


def flood_upstream(sent: list[int], chunk: bytes, total: int) -> web.Application:
    """An OpenAI-shaped upstream that streams ``total`` bytes of chunks as fast as it may."""

    async def completions(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        frame = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"flood","choices":[{"index":0,"delta":{"content":"' + chunk + b'"},"finish_reason":null}]}\n\n'  # fmt: skip
        while sent[0] < total:
            await resp.write(frame)  # waits while the gateway does not read
            sent[0] += len(frame)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


async def test_a_slow_reader_is_backpressured_with_bounded_buffers(tmp_path: Path, aiohttp_server, monkeypatch) -> None:
    sent = [0]
    total = 200 * 1024 * 1024
    upstream = await aiohttp_server(flood_upstream(sent, b"x" * 16000, total))
    (tmp_path / "models.toml").write_text(
        '[models."flood"]\nname = "Flood"\ntier = "maintained"\ninput = 0\noutput = 0\nroutes = ["up:flood"]\n'
    )
    config = tmp_path / "izzi.toml"
    config.write_text(
        f'[server]\nlog_level = "warning"\n[storage]\ndatabase_url = "sqlite:///{tmp_path}/db.sqlite3"\n'
        f'[upstreams.up]\nkind = "openai"\nbase_url = "http://127.0.0.1:{upstream.port}/v1"\napi_key = "env:UP_KEY"\n'
    )
    monkeypatch.setenv("UP_KEY", "sk-flood")
    key = funded_key(config, "acme", "100")
    async with gateway(config, tmp_path / "gateway.log") as (url, process):
        before = rss_kb(process.pid)
        body = {"model": "flood", "messages": HELLO, "stream": True}
        # a reader that takes 64 KB at a time and a small read buffer: what is not read stays in
        # the socket buffers, and the gateway must stop reading its upstream
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector, read_bufsize=4096) as session,
            session.post(url + "/v1/chat/completions", json=body, headers={"x-api-key": key}) as resp,
        ):
            assert resp.status == 200
            read = 0
            for _ in range(20):  # 2 s of reading 64 KB every 100 ms
                read += len(await resp.content.read(65536))
                await asyncio.sleep(0.1)
            held = sent[0] - read
            growth_kb = rss_kb(process.pid) - before
    # the upstream was held back: it sent a few buffers' worth, not the 200 MB it had
    assert sent[0] < 40 * 1024 * 1024, (
        f"the upstream sent {sent[0] / 2**20:.1f} MB to a reader of {read / 2**20:.1f} MB"
    )
    assert held < 32 * 1024 * 1024  # what sits in socket buffers and the gateway, bounded
    assert growth_kb < 16 * 1024, f"the gateway grew by {growth_kb} KB"
