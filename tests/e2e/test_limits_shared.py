"""Two gateway processes sharing one Redis: the plan's limits hold in total, not per
process. And when Redis stops mid-test, the configured policy applies at once; when it
comes back, so do the limits, with no restart.

Redis here is a private ``redis-server`` on a random port (it is stopped and started by
the tests), run from the same binary as the project's own Redis.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
import redis.asyncio as redis_asyncio

from tests.conftest import free_port
from tests.e2e.test_cli import cli, wait_ready

HELLO = [{"role": "user", "content": "Hello"}]
MODELS = '[models."echo"]\nname = "Echo"\ntier = "maintained"\ninput = 1\noutput = 2\nroutes = ["mock:echo"]\n'


class RedisServer:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/services installs it)")
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis_asyncio.Redis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    await client.ping()
                    return
                except redis_asyncio.ConnectionError:
                    await asyncio.sleep(0.02)
            raise AssertionError("redis-server did not start")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


def shared_config(tmp_path: Path, redis_url: str, policy: str = "open", storage: str = "") -> Path:
    (tmp_path / "models.toml").write_text(MODELS)
    path = tmp_path / f"izzi-{policy}.toml"
    path.write_text(
        f'[server]\nlog_level = "warning"\n[storage]\ndatabase_url = "sqlite:///{tmp_path}/db.sqlite3"\n'
        f'limiter_url = "{redis_url}"\n{storage}\n[limits]\non_limiter_failure = "{policy}"\n'
        '[upstreams.mock]\nkind = "mock"\nchunks = 6\nchunk_delay_ms = 100\n'
    )
    return path


async def start_gateways(config: Path, count: int) -> list[tuple[str, asyncio.subprocess.Process]]:
    started = []
    for _ in range(count):
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "izzi_proxy", "serve", "--config", str(config), "--port", str(port), "--workers", "1",
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "IZZI_LOG_LEVEL": "warning"},
        )  # fmt: skip
        started.append((f"http://127.0.0.1:{port}", process))
    for url, process in started:
        await wait_ready(url, process)
    return started


async def stop_gateways(gateways) -> None:
    for _, process in gateways:
        if process.returncode is None:
            process.terminate()
        await process.wait()


def account_key(config: Path, name: str, *overrides: str) -> str:
    args = [f"--override={o}" for o in overrides]
    assert cli("accounts", "create", name, "--plan", "pro", *args, "--config", str(config)).returncode == 0
    assert cli("credits", "add", name, "1000", "--config", str(config)).returncode == 0
    return cli("keys", "create", "--name", "k", "--account", name, "--config", str(config)).stdout.strip()


async def test_a_burst_through_two_processes_stays_within_the_plan(tmp_path, redis_server) -> None:
    config = shared_config(tmp_path, redis_server.url)
    secret = account_key(config, "burst", "rpm=20", "concurrent=1000")
    gateways = await start_gateways(config, 2)
    clients = [openai.AsyncOpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) for url, _ in gateways]
    try:

        async def one(i: int) -> str:
            try:
                await clients[i % 2].chat.completions.create(model="echo", messages=HELLO)
                return "ok"
            except openai.RateLimitError as exc:
                assert int(exc.response.headers["retry-after"]) >= 1
                return "429"

        started = time.monotonic()
        outcomes = await asyncio.gather(*(one(i) for i in range(60)))
        elapsed = time.monotonic() - started
        # GCRA: the plan's 20 at once, plus what refills while the burst lasts (20/min)
        assert 20 <= outcomes.count("ok") <= 20 + int(elapsed * 20 / 60) + 1, (outcomes.count("ok"), elapsed)
        assert outcomes.count("429") == 60 - outcomes.count("ok")
    finally:
        for client in clients:
            await client.close()
        await stop_gateways(gateways)


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_a_burst_larger_than_the_pool_is_limited_not_degraded(tmp_path, redis_server, policy) -> None:
    """300 requests at once through two processes whose limiter pools hold 4 connections
    each: a busy pool makes calls wait, it is not a Redis failure. One account may have 2 in
    flight; another has used its day. Neither gets past its plan, and no answer is degraded."""
    config = shared_config(tmp_path, redis_server.url, policy, "limiter_pool_size = 4\nlimiter_pool_timeout_s = 5")
    flying = account_key(config, "flying", "concurrent=2", "rpm=100000", "daily=100000")
    spent = account_key(config, "spent", "daily=1", "rpm=100000")
    gateways = await start_gateways(config, 2)
    try:
        async with aiohttp.ClientSession() as session:

            async def one(i: int, key: str) -> tuple[int, str | None, str | None]:
                url = gateways[i % 2][0] + "/v1/chat/completions"
                body = {"model": "echo", "messages": HELLO, "stream": True}
                async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
                    kind = (await resp.json())["error"]["type"] if resp.status != 200 else (await resp.read(), None)[1]
                    return resp.status, kind, resp.headers.get("x-ratelimit-degraded")

            assert (await one(0, spent))[0] == 200  # its one request of the day
            results = await asyncio.gather(*(one(i, flying if i % 3 else spent) for i in range(300)))
    finally:
        await stop_gateways(gateways)
    assert not [r for r in results if r[2]], "degraded answers while Redis was healthy"
    mine = [r for i, r in enumerate(results) if i % 3]
    assert 1 <= sum(r[0] == 200 for r in mine) <= 2 * 2  # 2 in flight (a second wave may follow the first)
    assert {r[1] for r in mine if r[0] != 200} == {"rate_limit_error"}
    assert {r[:2] for i, r in enumerate(results) if not i % 3} == {(429, "quota_exceeded")}


async def test_leases_in_flight_count_across_processes(tmp_path, redis_server) -> None:
    config = shared_config(tmp_path, redis_server.url)
    secret = account_key(config, "streams", "concurrent=2")
    gateways = await start_gateways(config, 2)
    a, b = (openai.AsyncOpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) for url, _ in gateways)
    try:
        first = await a.chat.completions.create(model="echo", messages=HELLO, stream=True)
        second = await b.chat.completions.create(model="echo", messages=HELLO, stream=True)
        await first.__anext__()
        await second.__anext__()
        for client in (a, b):
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(model="echo", messages=HELLO)
            assert "2 at once" in caught.value.message
        _ = [c async for c in first]  # the first stream ends: its lease is released
        await b.chat.completions.create(model="echo", messages=HELLO)
        await second.close()  # a hang-up frees the other
        for _ in range(100):
            try:
                await asyncio.gather(*(c.chat.completions.create(model="echo", messages=HELLO) for c in (a, b)))
                break
            except openai.RateLimitError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("leases were not released")
    finally:
        await a.close()
        await b.close()
        await stop_gateways(gateways)


async def test_redis_stopped_then_restarted(tmp_path, redis_server) -> None:
    open_config = shared_config(tmp_path, redis_server.url, "open")
    closed_config = shared_config(tmp_path, redis_server.url, "closed")
    secret = account_key(open_config, "outage", "rpm=1000")
    gateways = await start_gateways(open_config, 1) + await start_gateways(closed_config, 1)
    fail_open, fail_closed = (
        openai.AsyncOpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) for url, _ in gateways
    )
    try:
        raw = await fail_open.chat.completions.with_raw_response.create(model="echo", messages=HELLO)
        assert "x-ratelimit-degraded" not in raw.headers
        counted = int(raw.headers["x-ratelimit-remaining-requests"])

        redis_server.stop()
        started = time.monotonic()
        raw = await fail_open.chat.completions.with_raw_response.create(model="echo", messages=HELLO)
        assert raw.headers["x-ratelimit-degraded"] == "true"  # admitted, and it says so
        with pytest.raises(openai.APIStatusError) as caught:
            await fail_closed.chat.completions.create(model="echo", messages=HELLO)
        assert caught.value.status_code == 503 and caught.value.body["type"] == "service_unavailable"
        assert time.monotonic() - started < 3  # never a hang

        await redis_server.start()  # same port, empty: the limits count again from here
        for _ in range(100):
            raw = await fail_open.chat.completions.with_raw_response.create(model="echo", messages=HELLO)
            if "x-ratelimit-degraded" not in raw.headers:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the limits did not come back")
        assert int(raw.headers["x-ratelimit-remaining-requests"]) <= counted
        await fail_closed.chat.completions.create(model="echo", messages=HELLO)  # closed recovers too
    finally:
        await fail_open.close()
        await fail_closed.close()
        await stop_gateways(gateways)
    log = b"".join([await p.stderr.read() for _, p in gateways]).decode()
    assert "the limiter could not answer" in log
