"""``serve --workers N``: several processes on one port, sharing the limits (Redis) and the
ledger (SQLite here: one host), reloaded and stopped as one."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import openai
import pytest

from izzi_proxy.ledger import open_ledger
from tests.conftest import Gateway, free_port
from tests.e2e.test_billing_processes import HELLO, _open_streams, books_of, config_for, funded_key
from tests.e2e.test_cli import cli
from tests.e2e.test_limits_shared import RedisServer

pytestmark = pytest.mark.timeout(120)


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (Linux's /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(c) for c in text)
    return found


def listeners(port: int) -> int:
    """How many sockets listen on the port (Linux's /proc/net/tcp: state 0A)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A")


class Workers:
    def __init__(self, config: Path, count: int, metrics_dir: Path) -> None:
        self.config, self.count, self.port = config, count, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_dir = metrics_dir
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "izzi_proxy", "serve", "--config", str(self.config), "--port", str(self.port),
            "--workers", str(self.count),
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)},
        )  # fmt: skip
        await self.until_serving()

    async def until_serving(self, other_than: set[int] = frozenset()) -> set[int]:
        """Until ``count`` workers other than those listen; their pids."""
        for _ in range(300):
            assert self.process.returncode is None, f"the supervisor exited with {self.process.returncode}"
            pids = children(self.process.pid) - other_than
            if len(pids) == self.count and listeners(self.port) >= self.count:
                try:
                    async with aiohttp.ClientSession() as session, session.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return pids
                except aiohttp.ClientConnectionError:
                    pass
            await asyncio.sleep(0.05)
        raise AssertionError("the workers did not start")

    def served_by(self) -> set[int]:
        """The workers that have counted requests (prometheus-client's files, one per pid)."""
        return {int(p.stem.rsplit("_", 1)[1]) for p in self.metrics_dir.glob("counter_*.db")}

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 60)


@pytest.fixture
async def redis(tmp_path: Path):
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    server.stop()


@pytest.fixture
def database(tmp_path: Path, redis: RedisServer) -> tuple[str, str]:
    return f"sqlite:///{tmp_path}/shared.sqlite3", redis.url


async def new_connection_requests(url: str, key: str, count: int) -> list[int]:
    statuses = []
    for _ in range(count):  # a connection each: the kernel picks a worker per connection
        async with aiohttp.ClientSession() as session:
            body = {"model": "echo", "messages": HELLO, "max_tokens": 5}
            async with session.post(url + "/v1/chat/completions", json=body, headers={"x-api-key": key}) as resp:
                statuses.append(resp.status)
    return statuses


async def test_two_workers_share_one_port_the_limits_and_the_ledger(tmp_path: Path, database) -> None:
    config = config_for(tmp_path, database, chunks=1, delay_ms=0)
    key = funded_key(config, "acme", "10")
    limited = cli("accounts", "create", "tight", "--plan", "ultra", "--override=rpm=12", "--config", str(config))
    assert limited.returncode == 0, limited.stderr
    assert cli("credits", "add", "tight", "10", "--config", str(config)).returncode == 0
    tight = cli("keys", "create", "--name", "k", "--account", "tight", "--config", str(config)).stdout.strip()
    workers = Workers(config, 2, tmp_path / "metrics")
    workers.metrics_dir.mkdir()
    await workers.start()
    try:
        pids = children(workers.process.pid)
        assert len(pids) == 2
        assert set(await new_connection_requests(workers.url, key, 30)) == {200}
        assert workers.served_by() == pids  # both served
        # one plan, whichever worker answers: 12 a minute in all
        statuses = await new_connection_requests(workers.url, tight, 30)
        assert statuses.count(200) == 12 and statuses.count(429) == 18
        # the metrics of either worker count all of them
        async with aiohttp.ClientSession() as session:
            scrape = await (await session.get(workers.url + "/metrics", headers={"Authorization": "Bearer x"})).text()
        assert "authentication_error" in scrape or "izzi" in scrape
    finally:
        assert await workers.stop() == 0
    balance, books, records = await books_of(database[0], "acme")
    assert books == balance and len(records) == 30


async def test_more_than_one_worker_needs_the_limits_in_redis(tmp_path: Path) -> None:
    config = config_for(tmp_path, (f"sqlite:///{tmp_path}/db.sqlite3", "memory://"))
    result = cli("serve", "--config", str(config), "--port", str(free_port()), "--workers", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "limiter_url" in result.stderr and "Redis" in result.stderr


async def test_sighup_reloads_without_refusing_a_request(tmp_path: Path, database) -> None:
    config = config_for(tmp_path, database, chunks=1, delay_ms=0)
    key = funded_key(config, "acme", "10")
    workers = Workers(config, 2, tmp_path / "metrics")
    workers.metrics_dir.mkdir()
    await workers.start()
    try:
        old = children(workers.process.pid)
        failures: list[str] = []
        done = asyncio.Event()

        async def traffic() -> int:
            sent = 0
            async with openai.AsyncOpenAI(base_url=workers.url + "/v1", api_key=key, max_retries=0) as client:
                while not done.is_set():
                    try:
                        await client.chat.completions.create(model="echo", messages=HELLO, max_tokens=5)
                    except Exception as err:
                        failures.append(repr(err))
                    sent += 1
            return sent

        running = [asyncio.create_task(traffic()) for _ in range(16)]
        await asyncio.sleep(0.5)
        workers.process.send_signal(signal.SIGHUP)
        new = await workers.until_serving(other_than=old)
        for _ in range(200):  # the old set stopped
            if not children(workers.process.pid) & old:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        done.set()
        sent = sum(await asyncio.gather(*running))
        assert not children(workers.process.pid) & old and len(new) == 2
        assert sent > 20 and failures == []
    finally:
        assert await workers.stop() == 0


async def test_sigterm_drains_every_workers_streams_and_settles_their_holds(tmp_path: Path, database) -> None:
    config = config_for(tmp_path, database, chunks=20, delay_ms=100, server="shutdown_timeout_s = 10")
    key = funded_key(config, "acme", "10")
    workers = Workers(config, 2, tmp_path / "metrics")
    workers.metrics_dir.mkdir()
    await workers.start()
    streams = []
    for _ in range(6):  # a connection each: spread over both workers
        streams += await _open_streams(workers.url, key, 1)
    ledger = await open_ledger(database[0])
    try:
        account = await ledger.get_account("acme")
        assert (await ledger.balance_of(account.id)).holds == 6
        owners = {h.owner for h in await ledger.open_holds(account.id)}
        assert len(owners) == 2  # streams on both workers
        workers.process.send_signal(signal.SIGTERM)
        bodies = [await s.read() for s in streams]
        assert all(b.rstrip().endswith(b"data: [DONE]") for b in bodies)  # every stream finished
        assert await asyncio.wait_for(workers.process.wait(), 60) == 0
    finally:
        for s in streams:
            await s._izzi_session.close()  # type: ignore[attr-defined]
        await ledger.aclose()
    balance, books, records = await books_of(database[0], "acme")  # no hold open
    assert books == balance and len(records) == 6 and all(r.outcome == "ok" for r in records)


async def test_a_worker_that_dies_is_replaced(tmp_path: Path, database) -> None:
    config = config_for(tmp_path, database, chunks=1, delay_ms=0)
    key = funded_key(config, "acme", "10")
    workers = Workers(config, 2, tmp_path / "metrics")
    workers.metrics_dir.mkdir()
    await workers.start()
    try:
        first = children(workers.process.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = await workers.until_serving(other_than={victim})
        assert victim not in replaced and len(replaced) == 2
        assert set(await new_connection_requests(workers.url, key, 10)) == {200}
    finally:
        assert await workers.stop() == 0


async def test_a_body_still_arriving_when_the_process_stops_gets_503_at_once(gateway: Gateway) -> None:
    """aiohttp reads nothing more once its graceful shutdown begins (a reload, SIGTERM): the
    request is told to try again instead of waiting out body_timeout_s for a 408."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}'
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + gateway.key.encode() + b"\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])  # fmt: skip
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is waiting for the rest
    started = asyncio.get_running_loop().time()
    closing = asyncio.create_task(gateway.server.close())
    head = await asyncio.wait_for(reader.read(65536), 10)
    assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in head and b"restarting" in head
    await closing
    assert asyncio.get_running_loop().time() - started < 5  # not body_timeout_s (30 s)
    writer.close()
