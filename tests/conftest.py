"""Shared fixtures: a fake OpenAI upstream on a random port, and the gateway in front of it.

Every server is a real aiohttp server on 127.0.0.1; clients are the official SDKs.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from izzi_proxy.app import create_app
from izzi_proxy.config import Config, load_config
from izzi_proxy.keys import LEDGER, USAGE_WRITER
from izzi_proxy.ledger import Ledger, UsageRecord
from izzi_proxy.pricing import MICRO
from izzi_proxy.testing import RECEIVED, Received, fake_anthropic_app, fake_gemini_app, fake_openai_app

UPSTREAM_KEY = "sk-upstream-test"
ANTHROPIC_KEY = "sk-ant-upstream-test"
GEMINI_KEY = "gemini-upstream-test"

# Client model id -> the fake upstream's model name, which picks its scenario.
TEST_MODELS: dict[str, list[str | dict[str, str]]] = {
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
    "linger": ["fake:linger"],
    "fallback": ["fake:error_503", "fake:upstream-fallback-ok"],
    "fallback-first-event": ["fake:stream_error_after_0", "fake:upstream-fallback-ok"],
    "fallback-dead": ["dead:upstream-gpt-4o", "fake:upstream-fallback-ok"],
    "unreachable": ["dead:upstream-gpt-4o"],
    "needs-key": ["nokey:upstream-gpt-4o"],
    "gpt-reasoning": ["fake:upstream-reasoning"],
    "gpt-search-reasoning": ["fake:upstream-search-reasoning-tools"],
    "gpt-chat-only": ["chatonly:upstream-gpt-4o"],
    "gpt-chat-only-tools": ["chatonly:tools"],
    "gpt-chat-only-reasoning": ["chatonly:upstream-reasoning"],
    "gpt-length": ["fake:upstream-length"],
    # Anthropic-format upstream (the fake picks its scenario from these names too)
    "claude": ["claude:claude-echo"],
    "claude-tools": ["claude:claude-tools"],
    "claude-thinking": ["claude:claude-thinking-tools"],
    "claude-redacted": ["claude:claude-redacted-tools"],
    "claude-max-tokens": ["claude:claude-max_tokens"],
    "claude-stop-seq": ["claude:claude-stop_seq"],
    "claude-error-529": ["claude:error_529"],
    "claude-error-400": ["claude:error_400"],
    "claude-stream-error": ["claude:stream_error_after_2"],
    "claude-cut": ["claude:cut_after_2"],
    "claude-slow": ["claude:slow_100"],
    "claude-linger": ["claude:claude-linger"],
    "claude-abort": ["claude:abort_after_2"],
    "claude-fallback": ["claude:error_529", "fake:upstream-fallback-ok"],
    # Gemini-format upstream (Google's API; gemini-3 names make the fake check thought signatures)
    "gemini-flash": ["gemini:gemini-2.5-flash-echo"],
    "gemini-tools": ["gemini:gemini-3-tools"],
    "gemini-thinking": ["gemini:gemini-3-thinking-tools"],
    "gemini-error-400": ["gemini:error_400"],
    "gemini-stream-error": ["gemini:gemini-3-stream_error_after_2"],
    "gemini-fallback": ["gemini:error_503", "fake:upstream-fallback-ok"],
    # named as in the real catalog, served under the vendor's own spelling; the fakes call
    # the tools offered and keep a stream open after its end, as real upstreams may (what the
    # real CLIs in test_real_clients.py meet)
    "claude-sonnet-4.5": ["claude:claude-sonnet-4-5-tools-linger"],
    "gpt-4.1-mini": ["chatonly:gpt-4.1-mini-tools-linger"],
    # OpenAI serves the codex models on /v1/responses only (its chat endpoint refuses them)
    "gpt-5.1-codex": [{"route": "fake:gpt-5.1-codex-tools-linger", "wire": "responses"}],
}
# What names outside the catalog resolve to (the bundled models.toml has the same kind).
TEST_FAMILIES = {"claude-*opus*": "claude-sonnet-4.5", "gemini-*": "gemini-tools"}
TEST_PLANS = """
default = "free"

[plans.free]
name = "Free"
rpm = 10
concurrent = 1
daily = 100
tiers = ["maintained"]

[plans.pro]
name = "Pro"
rpm = 60
concurrent = 3
daily = 2000
tiers = ["maintained", "budget", "standard", "premium"]

[plans.one]
name = "One at a time"
rpm = 1000
concurrent = 1
daily = 100000
tiers = ["maintained", "budget", "standard", "premium"]

[plans.counted]
name = "Counted"
rpm = 1000
concurrent = 100
daily = 100000
count_tokens_rpm = 3
tiers = ["maintained", "budget", "standard", "premium"]

[plans.unlimited]
name = "Unlimited"
rpm = 1000000
concurrent = 10000
daily = 100000000
tiers = ["maintained", "budget", "standard", "premium"]
"""

# Models that take a reasoning effort / thinking budget.
REASONING = {
    "gpt-reasoning",
    "gpt-search-reasoning",
    "gpt-chat-only-reasoning",
    "claude-thinking",
    "claude-redacted",
    "claude",
    "claude-sonnet-4.5",
    "gemini-thinking",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    directory: Path,
    upstream_url: str,
    *,
    anthropic_url: str = "http://127.0.0.1:9/",
    gemini_url: str = "http://127.0.0.1:9/v1beta",
    server: str = "",
    models: dict[str, list[str | dict[str, str]]] | None = None,
    extra_upstreams: str = "",
    extra: str = "",
) -> Path:
    """A config pointing at the fake upstream; returns the path of its izzi.toml."""
    models = TEST_MODELS if models is None else models
    families = {p: t for p, t in TEST_FAMILIES.items() if t in models}
    (directory / "models.toml").write_text(
        "[families]\n"
        + "".join(f'"{pattern}" = "{target}"\n' for pattern, target in families.items())
        + "\n"
        + "".join(
            f'[models."{mid}"]\nname = "{mid}"\ntier = "standard"\ninput = 1.0\noutput = 2.0\n'
            f"context = 128000\nreasoning = {str(mid in REASONING).lower()}\n"
            f"routes = [{', '.join(map(toml_route, routes))}]\n\n"
            for mid, routes in models.items()
        )
    )
    (directory / "plans.toml").write_text(TEST_PLANS)
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
responses = true

[upstreams.chatonly]
kind = "openai"
base_url = "{upstream_url}"
api_key = "env:IZZI_TEST_UPSTREAM_KEY"

[upstreams.dead]
kind = "openai"
base_url = "http://127.0.0.1:{free_port()}/v1"
connect_timeout_s = 1

[upstreams.nokey]
kind = "openai"
base_url = "{upstream_url}"
api_key = "env:IZZI_TEST_UNSET_KEY"

[upstreams.claude]
kind = "anthropic"
base_url = "{anthropic_url}"
api_key = "env:IZZI_TEST_ANTHROPIC_KEY"
first_byte_timeout_s = 1
idle_timeout_s = 1

[upstreams.gemini]
kind = "gemini"
base_url = "{gemini_url}"
api_key = "env:IZZI_TEST_GEMINI_KEY"
first_byte_timeout_s = 1
idle_timeout_s = 1
{extra_upstreams}
{extra if "[routing]" in extra else extra + ROUTING}
"""
    )
    return path


# Breakers that open only when a test means them to: a test's many failures on purpose on
# one fake upstream would otherwise skip it for the tests' later requests.
ROUTING = "\n[routing]\nbreaker_failures = 1000\n"


def toml_route(route: str | dict[str, str]) -> str:
    if isinstance(route, str):
        return f'"{route}"'
    return "{ " + ", ".join(f'{k} = "{v}"' for k, v in route.items()) + " }"


@dataclass
class Gateway:
    app: web.Application
    server: TestServer
    key: str
    upstream: TestServer | None
    anthropic_upstream: TestServer | None = None
    gemini_upstream: TestServer | None = None

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

    @property
    def anthropic_received(self) -> list[Received]:
        assert self.anthropic_upstream is not None
        return self.anthropic_upstream.app[RECEIVED]

    @property
    def gemini_received(self) -> list[Received]:
        assert self.gemini_upstream is not None
        return self.gemini_upstream.app[RECEIVED]

    def gemini(self, api_version: str = "v1beta", **kwargs):
        """The google-genai SDK pointed at the gateway (``client.aio`` for asyncio)."""
        from google import genai
        from google.genai import types

        options = types.HttpOptions(base_url=str(self.server.make_url("")), api_version=api_version)
        return genai.Client(api_key=kwargs.pop("api_key", self.key), http_options=options, **kwargs)

    def anthropic(self, **kwargs) -> anthropic.AsyncAnthropic:
        """The anthropic SDK pointed at the gateway (its base URL has no /v1)."""
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("base_url", str(self.server.make_url("")))
        kwargs.setdefault("api_key", self.key)
        return anthropic.AsyncAnthropic(**kwargs)

    def client(self, **kwargs) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("base_url", self.url)
        kwargs.setdefault("api_key", self.key)
        return openai.AsyncOpenAI(**kwargs)

    async def records(self, limit: int = 100) -> list[UsageRecord]:
        """The latest usage records, newest first, once written."""
        await self.app[USAGE_WRITER].flush()
        return await self.ledger.usage_records(limit=limit)

    async def record(self, request_id: str) -> UsageRecord:
        """The request's usage record, once written (a stream's handler may still be ending
        when its client has read the last byte)."""
        for _ in range(200):
            await self.app[USAGE_WRITER].flush()
            if records := await self.ledger.usage_records(request_id=request_id):
                assert len(records) == 1, records
                return records[0]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no usage record for {request_id}")


@pytest.fixture
def upstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IZZI_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("IZZI_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("IZZI_TEST_GEMINI_KEY", GEMINI_KEY)
    monkeypatch.delenv("IZZI_TEST_UNSET_KEY", raising=False)


@pytest.fixture
async def upstream(aiohttp_server) -> TestServer:
    return await aiohttp_server(fake_openai_app(api_key=UPSTREAM_KEY))


@pytest.fixture
async def anthropic_upstream(aiohttp_server) -> TestServer:
    return await aiohttp_server(fake_anthropic_app(api_key=ANTHROPIC_KEY))


@pytest.fixture
async def gemini_upstream(aiohttp_server) -> TestServer:
    return await aiohttp_server(fake_gemini_app(api_key=GEMINI_KEY))


async def start_gateway(
    aiohttp_server,
    config: Config,
    upstream: TestServer | None,
    plan: str = "unlimited",
    credits: int = 1000,
    **server_kwargs,
) -> Gateway:
    app = create_app(config)
    server = await aiohttp_server(app, **server_kwargs)
    account = await app[LEDGER].create_account("test-account", plan)
    await app[LEDGER].add_credits(account.id, credits * MICRO, note="test")
    _, secret = await app[LEDGER].create_key(account.id, "test-key")
    return Gateway(app, server, secret, upstream)


@pytest.fixture
async def gateway(
    aiohttp_server,
    upstream: TestServer,
    anthropic_upstream: TestServer,
    gemini_upstream: TestServer,
    tmp_path: Path,
    upstream_env: None,
) -> Gateway:
    path = write_config(
        tmp_path,
        str(upstream.make_url("/v1")),
        anthropic_url=str(anthropic_upstream.make_url("")),
        gemini_url=str(gemini_upstream.make_url("/v1beta")),
    )
    gateway = await start_gateway(aiohttp_server, load_config(path), upstream)
    gateway.anthropic_upstream = anthropic_upstream
    gateway.gemini_upstream = gemini_upstream
    return gateway


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with gateway.client() as client:
        yield client


@pytest.fixture
async def claude(gateway: Gateway) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The anthropic SDK as the client."""
    async with gateway.anthropic() as client:
        yield client
