"""Shared fixtures: a fake OpenAI upstream on a random port, and the gateway in front of it.

Every server is a real aiohttp server on 127.0.0.1; clients are the official SDKs.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from izzi_proxy.app import create_app
from izzi_proxy.config import Config, load_config
from izzi_proxy.keys import LEDGER, USAGE_WRITER
from izzi_proxy.ledger import Ledger, UsageRecord
from izzi_proxy.testing import RECEIVED, Received, fake_openai_app

UPSTREAM_KEY = "sk-upstream-test"

# Client model id -> the fake upstream's model name, which picks its scenario.
TEST_MODELS = {
    "gpt-4o": ["fake:upstream-gpt-4o"],
    "tools": ["fake:tools"],
    "usage-in-choice": ["fake:usage_in_choice"],
    "slow": ["fake:slow_100"],
    "hang": ["fake:hang"],
    "error-500": ["fake:error_500"],
    "error-400": ["fake:error_400"],
    "error-401": ["fake:error_401"],
    "stream-error": ["fake:stream_error_after_2"],
    "cut": ["fake:cut_after_2"],
    "abort": ["fake:abort_after_2"],
    "fallback": ["fake:error_503", "fake:upstream-fallback-ok"],
    "fallback-first-event": ["fake:stream_error_after_0", "fake:upstream-fallback-ok"],
    "fallback-dead": ["dead:upstream-gpt-4o", "fake:upstream-fallback-ok"],
    "unreachable": ["dead:upstream-gpt-4o"],
    "needs-key": ["nokey:upstream-gpt-4o"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    directory: Path,
    upstream_url: str,
    *,
    server: str = "",
    models: dict[str, list[str]] | None = None,
    extra_upstreams: str = "",
) -> Path:
    """A config pointing at the fake upstream; returns the path of its izzi.toml."""
    models = TEST_MODELS if models is None else models
    (directory / "models.toml").write_text(
        "".join(
            f'[models."{mid}"]\nname = "{mid}"\ntier = "standard"\ninput = 1.0\noutput = 2.0\n'
            f"context = 128000\nroutes = {routes!r}\n\n".replace("'", '"')
            for mid, routes in models.items()
        )
    )
    path = directory / "izzi.toml"
    path.write_text(
        f"""
[server]
{server}

[storage]
database_url = "sqlite:///{directory}/izzi.sqlite3"

[upstreams.fake]
kind = "openai"
base_url = "{upstream_url}"
api_key = "env:IZZI_TEST_UPSTREAM_KEY"
first_byte_timeout_s = 1
idle_timeout_s = 1

[upstreams.dead]
kind = "openai"
base_url = "http://127.0.0.1:{free_port()}/v1"
connect_timeout_s = 1

[upstreams.nokey]
kind = "openai"
base_url = "{upstream_url}"
api_key = "env:IZZI_TEST_UNSET_KEY"
{extra_upstreams}
"""
    )
    return path


@dataclass
class Gateway:
    app: web.Application
    server: TestServer
    key: str
    upstream: TestServer | None

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v1"))

    @property
    def ledger(self) -> Ledger:
        return self.app[LEDGER]

    @property
    def received(self) -> list[Received]:
        assert self.upstream is not None
        return self.upstream.app[RECEIVED]

    def client(self, **kwargs) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("base_url", self.url)
        return openai.AsyncOpenAI(api_key=self.key, **kwargs)

    async def record(self, request_id: str) -> UsageRecord:
        await self.app[USAGE_WRITER].flush()
        records = await self.ledger.usage_records(request_id=request_id)
        assert len(records) == 1, records
        return records[0]


@pytest.fixture
def upstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IZZI_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    monkeypatch.delenv("IZZI_TEST_UNSET_KEY", raising=False)


@pytest.fixture
async def upstream(aiohttp_server) -> TestServer:
    return await aiohttp_server(fake_openai_app(api_key=UPSTREAM_KEY))


async def start_gateway(
    aiohttp_server, config: Config, upstream: TestServer | None, **server_kwargs
) -> Gateway:
    app = create_app(config)
    server = await aiohttp_server(app, **server_kwargs)
    account = await app[LEDGER].create_account("test-account")
    _, secret = await app[LEDGER].create_key(account.id, "test-key")
    return Gateway(app, server, secret, upstream)


@pytest.fixture
async def gateway(aiohttp_server, upstream: TestServer, tmp_path: Path, upstream_env: None) -> Gateway:
    config = load_config(write_config(tmp_path, str(upstream.make_url("/v1"))))
    return await start_gateway(aiohttp_server, config, upstream)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with gateway.client() as client:
        yield client
