"""How a stream ends, and what its usage record says: a stream ends at its terminal event
(whatever the connections do next), and a client that hangs up, an upstream that cuts the
stream or sends an error are recorded as what they were. Each in aiohttp's default mode
(a write after a hang-up fails) and with ``handler_cancellation`` (the handler task is
cancelled), which ``serve`` uses."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from izzi_proxy.app import create_app
from izzi_proxy.config import load_config
from izzi_proxy.keys import LEDGER, USAGE_WRITER
from izzi_proxy.ledger import UsageRecord
from izzi_proxy.pricing import MICRO
from izzi_proxy.testing import DISCONNECTS
from tests.conftest import write_config

HELLO = [{"role": "user", "content": "Hello"}]


@dataclass
class Served:
    url: str  # the gateway's root
    key: str
    app: web.Application

    async def record(self, request_id: str) -> UsageRecord:
        for _ in range(200):
            await self.app[USAGE_WRITER].flush()
            if records := await self.app[LEDGER].usage_records(request_id=request_id):
                return records[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no usage record for {request_id}")


@pytest.fixture(params=[False, True], ids=["default-mode", "handler-cancellation"])
async def served(request, upstream, anthropic_upstream, tmp_path, upstream_env) -> AsyncIterator[Served]:
    path = write_config(tmp_path, str(upstream.make_url("/v1")), anthropic_url=str(anthropic_upstream.make_url("")))
    app = create_app(load_config(path))
    runner = web.AppRunner(app, handler_cancellation=request.param, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    account = await app[LEDGER].create_account("a", "unlimited")
    await app[LEDGER].add_credits(account.id, 1000 * MICRO)
    _, secret = await app[LEDGER].create_key(account.id, "k")
    try:
        yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}", secret, app)
    finally:
        await runner.cleanup()


async def settled_once(served: Served, record) -> None:
    """Charged once, for the prompt and what was produced (never 0), its hold released: the
    account's books sum to the micro-credit."""
    ledger = served.app[LEDGER]
    assert record.usage_source in ("reported", "partial", "estimated") and record.usage.output_tokens > 0
    assert record.cost > record.usage.output_tokens > 0  # 1 µcr per input token and 2 per output token
    assert len(await ledger.usage_records(limit=10, account_id=record.account_id)) == 1
    balance = await ledger.balance_of(record.account_id)
    assert (balance.held, balance.holds, balance.balance) == (0, 0, 1000 * MICRO - record.cost)


# route, body, terminal line of each client format
FORMATS = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, b"data: [DONE]"),
    "messages": ("/v1/messages", {"max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
                 b"event: message_stop"),
    "responses": ("/v1/responses", {"input": "hi"}, b"event: response.completed"),
}  # fmt: skip


async def _stream_until(served: Served, kind: str, model: str, stop_at: bytes | None) -> tuple[str, list[bytes]]:
    """POST a stream, read its lines until ``stop_at`` (None: a few lines in), then hang up
    at once. Returns the request id and the lines read."""
    path, body, _ = FORMATS[kind]
    headers = {"Authorization": f"Bearer {served.key}", "anthropic-version": "2023-06-01"}
    lines: list[bytes] = []
    async with aiohttp.ClientSession() as http:
        resp = await http.post(served.url + path, json={"model": model, "stream": True, **body}, headers=headers)
        assert resp.status == 200, await resp.text()
        async with asyncio.timeout(10):
            async for line in resp.content:
                lines.append(line.rstrip(b"\r\n"))
                if (stop_at is None and len(lines) == 3) or lines[-1] == stop_at:
                    break
        request_id = resp.headers["x-request-id"]
        resp.close()  # drop the connection, as Codex and LangChain do after the terminal event
    return request_id, lines


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("chat", "linger"),  # passthrough
        ("messages", "claude-linger"),
        ("responses", "linger"),
        ("chat", "claude-linger"),  # translated
        ("messages", "linger"),
        ("responses", "claude-linger"),
    ],
)
async def test_a_stream_ends_at_its_terminal_event(served: Served, kind: str, model: str) -> None:
    """The upstream keeps its connection open after the terminal event; the client hangs up
    as soon as it has read it. The answer was complete, and its record says so."""
    terminal = FORMATS[kind][2]
    request_id, lines = await _stream_until(served, kind, model, terminal)
    assert lines[-1] == terminal
    record = await served.record(request_id)
    assert (record.status, record.outcome, record.error_type) == (200, "ok", None)
    assert record.usage is not None and record.usage.output_tokens > 0
    assert record.usage_source == "reported"
    await settled_once(served, record)


async def test_sdks_get_the_end_of_a_stream_without_waiting_for_the_upstream(served: Served) -> None:
    async with asyncio.timeout(10):
        async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0) as client:
            chunks = [c async for c in await client.chat.completions.create(
                model="linger", messages=[{"role": "user", "content": "hi"}], stream=True)]  # fmt: skip
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hi"
        async with (
            anthropic.AsyncAnthropic(base_url=served.url, api_key=served.key, max_retries=0) as claude,
            claude.messages.stream(model="claude-linger", max_tokens=50,
                                   messages=[{"role": "user", "content": "hi"}]) as stream,
        ):  # fmt: skip
            assert (await stream.get_final_text()) == "Echo: hi"


@pytest.mark.parametrize(
    ("kind", "model", "stop_at", "expected"),
    [
        # the client hangs up mid-stream
        ("chat", "slow", None, (499, "client_closed", None)),
        ("messages", "claude-slow", None, (499, "client_closed", None)),
        ("responses", "claude-slow", None, (499, "client_closed", None)),
        # the upstream ends the stream early, or drops the connection
        ("chat", "cut", b"data: [DONE]", (200, "error", "connection_error")),
        ("messages", "claude-cut", b"event: error", (200, "error", "connection_error")),
        ("chat", "claude-abort", b"data: [DONE]", (200, "error", "connection_error")),
        # the upstream sends an error event
        ("chat", "stream-error", b"data: [DONE]", (200, "error", "upstream_error")),
        ("messages", "claude-stream-error", b"event: error", (200, "error", "upstream_error")),
        ("responses", "stream-error", b"event: response.failed", (200, "error", "upstream_error")),
    ],
)
async def test_every_other_end_is_recorded_as_what_it_was(
    served: Served, upstream, anthropic_upstream, kind, model, stop_at, expected
) -> None:
    request_id, _ = await _stream_until(served, kind, model, stop_at)
    record = await served.record(request_id)
    assert (record.status, record.outcome, record.error_type) == expected
    await settled_once(served, record)
    if expected[1] == "client_closed":  # the upstream request was cancelled too
        fake = anthropic_upstream if model.startswith("claude") else upstream
        assert await asyncio.wait_for(fake.app[DISCONNECTS].get(), timeout=5)


async def test_client_hang_up_cancels_upstream_and_is_metered(served: Served, upstream) -> None:
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="slow", messages=[{"role": "user", "content": "a long answer please"}], stream=True
        )
        stream = raw.parse()
        first = await stream.__anext__()
        assert first.choices[0].delta.role == "assistant"
        await stream.close()
    # the upstream sees its connection closed while it still had chunks to send
    assert await asyncio.wait_for(upstream.app[DISCONNECTS].get(), timeout=5) == "slow_100"
    record = await served.record(raw.headers["x-request-id"])
    assert (record.status, record.outcome) == (499, "client_closed")
    assert record.stream and record.model == "slow"


async def test_a_finished_stream_frees_its_upstream_response_without_the_cyclic_collector(served: Served) -> None:
    """Reference counting alone frees what a stream held (its upstream response, buffers and
    connection state): an idle gateway runs no full collection, and 2,000 streams' worth of
    cycles measured ~16 MB that stayed until one did."""
    gc.collect()
    gc.disable()
    try:
        async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0) as client:
            for _ in range(2):  # chunks apart in time: relayed past the first read
                stream = await client.chat.completions.create(model="slow", messages=HELLO, stream=True)
                _ = [chunk async for chunk in stream]
        await asyncio.sleep(0.1)  # the connections' release callbacks
        alive = [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientResponse)]
    finally:
        gc.enable()
    assert alive == [], f"{len(alive)} upstream responses outlived their streams"
