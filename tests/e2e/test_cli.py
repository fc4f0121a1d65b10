"""``izzi-proxy`` as a user runs it: keys, check-config, serve, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest

from izzi_proxy.ledger import open_ledger
from tests.conftest import free_port

MODELS = '[models."echo"]\nname = "Echo"\ntier = "maintained"\ninput = 1\noutput = 2\nroutes = ["mock:echo"]\n'


def make_config(tmp_path: Path, mock_options: str = "chunks = 4", shutdown_s: float = 10, server: str = "") -> Path:
    (tmp_path / "models.toml").write_text(MODELS)
    path = tmp_path / "izzi.toml"
    path.write_text(
        f"[server]\nshutdown_timeout_s = {shutdown_s}\n{server}\n[storage]\n"
        f'database_url = "sqlite:///{tmp_path}/db.sqlite3"\n[upstreams.mock]\nkind = "mock"\n{mock_options}\n'
    )
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "izzi_proxy", *args], capture_output=True, text=True, timeout=30,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    config = str(make_config(tmp_path))
    created = cli("keys", "create", "--name", "laptop", "--account", "acme", "--config", config)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert re.fullmatch(r"izzi-[A-Za-z0-9_-]{43}", secret)
    assert "shown only once" in created.stderr

    listed = cli("keys", "list", "--config", config)
    assert secret[:11] in listed.stdout and secret not in listed.stdout and "laptop" in listed.stdout
    assert "live" in listed.stdout

    again = cli("keys", "create", "--name", "x", "--account", "acme", "--if-none", "--config", config)
    assert again.stdout == "" and "already has a key" in again.stderr

    key_id = listed.stdout.split()[0]
    assert cli("keys", "revoke", key_id, "--config", config).returncode == 0
    assert "revoked" in cli("keys", "list", "--config", config).stdout
    assert cli("keys", "revoke", key_id, "--config", config).returncode == 1


def test_check_config_redacts_secrets(tmp_path: Path) -> None:
    result = cli("check-config", env={"OPENAI_API_KEY": "sk-do-not-print-me"})
    assert result.returncode == 0, result.stderr
    assert "sk-do-not-print-me" not in result.stdout
    assert "env:OPENAI_API_KEY (set)" in result.stdout


def test_bad_config_is_refused_with_file_and_key(tmp_path: Path) -> None:
    path = make_config(tmp_path)
    path.write_text(path.read_text() + '[upstreams.bad]\nkind = "openai"\napi_key = "sk-literal"\n')
    result = cli("serve", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: upstreams.bad.api_key: a key is never written in a config file" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_kind_is_refused_at_start(tmp_path: Path) -> None:
    path = make_config(tmp_path)
    path.write_text(path.read_text() + '[upstreams.bad]\nkind = "nonesuch"\n')
    result = cli("serve", "--config", str(path), "--port", str(free_port()))
    assert result.returncode == 2
    assert "upstreams.bad.kind" in result.stderr and "installed kinds:" in result.stderr


def test_a_short_session_secret_is_refused_at_start(tmp_path: Path) -> None:
    result = cli("serve", "--config", str(make_config(tmp_path)), "--port", str(free_port()),
                 env={"IZZI_SESSION_SECRET": "too-short"})  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "IZZI_SESSION_SECRET: must be at least 32 characters" in result.stderr and "too-short" not in result.stderr


async def wait_ready(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if process.returncode is not None:
                raise AssertionError(f"gateway exited with {process.returncode}")
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("gateway did not start")


@pytest.fixture(params=[10])
async def served(tmp_path: Path, request) -> AsyncIterator[tuple[str, str, asyncio.subprocess.Process]]:
    config = str(make_config(tmp_path, "chunks = 10\nchunk_delay_ms = 100", shutdown_s=request.param))
    secret = cli("keys", "create", "--name", "t", "--config", config).stdout.strip()
    assert cli("credits", "add", "default", "5", "--config", config).returncode == 0
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "izzi_proxy", "serve", "--config", config, "--port", str(port),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, process)
        yield url, secret, process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_serve_answers_and_stops_gracefully(served) -> None:
    url, secret, process = served
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "finish this stream please"}], stream=True
        )
        first = await stream.__anext__()
        process.send_signal(signal.SIGTERM)  # ~1 s of stream still to come
        rest = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    assert text == "Echo: finish this stream please"
    assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    log = (await process.stderr.read()).decode()
    assert "serving on" in log and "Traceback" not in log


@pytest.mark.parametrize("served", [0.3], indirect=True)
async def test_a_stream_cut_at_shutdown_ends_properly_and_is_recorded(served, tmp_path: Path) -> None:
    url, secret, process = served
    body = {"model": "echo", "messages": [{"role": "user", "content": "a stream too long to finish"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(url + "/v1/chat/completions", json=body, headers={"x-api-key": secret})
        await resp.content.readline()
        process.send_signal(signal.SIGTERM)
        raw = await resp.read()  # a terminated chunked body: no ClientPayloadError
        request_id = resp.headers["x-request-id"]
    assert raw.rstrip().endswith(b"}") and b"the gateway is stopping" in raw
    assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    ledger = await open_ledger(f"sqlite:///{tmp_path}/db.sqlite3")
    try:
        (record,) = await ledger.usage_records(request_id=request_id)
    finally:
        await ledger.aclose()
    assert (record.status, record.outcome, record.error_type) == (200, "error", "server_error")


@pytest.mark.parametrize("served", [0.3], indirect=True)
async def test_streams_past_the_shutdown_bound_end_with_an_error(served) -> None:
    url, secret, process = served
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "a stream too long to finish"}], stream=True
        )
        await stream.__anext__()
        process.send_signal(signal.SIGTERM)
        with pytest.raises(openai.APIError, match="the gateway is stopping"):
            _ = [chunk async for chunk in stream]
    assert await asyncio.wait_for(process.wait(), timeout=15) == 0


def test_accounts_and_key_options(tmp_path: Path) -> None:
    config = str(make_config(tmp_path))
    assert (
        cli("accounts", "create", "acme", "--plan", "pro", "--override", "rpm=200", "--config", config).returncode == 0
    )
    assert cli("accounts", "create", "acme", "--config", config).returncode == 1  # exists
    bad = cli("accounts", "create", "x", "--plan", "gold", "--config", config)
    assert bad.returncode == 1 and "no plan 'gold'" in bad.stderr
    bad = cli("accounts", "create", "y", "--override", "rpm=fast", "--config", config)
    assert bad.returncode == 1 and "whole number" in bad.stderr
    key = cli("keys", "create", "--name", "ci", "--account", "acme", "--models", "echo,tier:budget",
              "--expires-days", "1", "--config", config)  # fmt: skip
    assert key.returncode == 0 and key.stdout.startswith("izzi-")
    bad = cli("keys", "create", "--name", "z", "--account", "acme", "--models", "gpt-99", "--config", config)
    assert bad.returncode == 1 and "'gpt-99'" in bad.stderr
    shown = cli("accounts", "show", "acme", "--config", config).stdout
    assert "plan pro" in shown and "200 requests/min" in shown and "models echo,tier:budget" in shown
    assert "until" in shown
    assert cli("accounts", "set", "acme", "--plan", "free", "--clear-overrides", "--config", config).returncode == 0
    listed = cli("accounts", "list", "--config", config).stdout
    assert "acme\tfree" in listed and "overrides" not in listed


def test_keys_and_accounts_say_the_plan_they_use(tmp_path: Path) -> None:
    config = str(make_config(tmp_path))
    free = cli("keys", "create", "--name", "first", "--config", config)  # a fresh database: the default plan
    assert free.returncode == 0
    assert "new account 'default', on the Free plan: 10 requests/min, 1 in flight, 100 per day" in free.stderr
    assert "maintained tier only (for every model: --plan starter, pro, max, ultra)" in free.stderr
    pro = cli("keys", "create", "--name", "k", "--account", "acme", "--plan", "pro", "--config", config)
    assert "on the Pro plan: 60 requests/min, 3 in flight, 2000 per day, every model" in pro.stderr
    other = cli("keys", "create", "--name", "k2", "--account", "acme", "--plan", "max", "--config", config)
    assert other.returncode == 1 and other.stdout == ""
    assert "account 'acme' is on the pro plan, not max; to move it: izzi-proxy accounts set acme --plan max" in (
        other.stderr
    )
    account = cli("accounts", "create", "zed", "--override", "rpm=5", "--config", config)
    assert "on the Free plan: 5 requests/min" in account.stderr


def test_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    config = str(make_config(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--config", config, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"izzi-proxy: cannot listen on 127.0.0.1:{port}: the port is in use; stop what uses it or choose another "
        "with --port"
    )
    assert "Traceback" not in result.stderr


async def test_nothing_a_client_sends_can_forge_a_log_line(served) -> None:
    url, secret, process = served
    forged = "2026-12-01 00:00:00,000 INFO izzi.access req_forged POST /v1/chat/completions 200 key=admin"
    path = url + "/v1/models/x%0a" + forged.replace(" ", "%20")
    async with aiohttp.ClientSession() as session, session.get(path, headers={"x-api-key": secret}):
        pass
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    log = (await process.stderr.read()).decode()
    assert "req_forged" in log  # it was logged, as part of its own line
    assert not [line for line in log.splitlines() if line.startswith(forged[:23]) or "req_forged" in line.split()[:4]]


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(tmp_path: Path) -> None:
    config = str(make_config(tmp_path, server="keepalive_timeout_s = 0.5"))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "izzi_proxy", "serve", "--config", config, "--port", str(port),
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_ready(f"http://127.0.0.1:{port}", process)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readexactly(15)  # {"status":"ok"}
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed by the gateway
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()
    finally:
        process.terminate()
        await process.wait()
