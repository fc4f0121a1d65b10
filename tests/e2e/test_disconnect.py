"""A client that hangs up mid-stream cancels the upstream request and still leaves its
usage record, in aiohttp's default mode (the next write fails) and with
``handler_cancellation`` (the handler task is cancelled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp import web

from izzi_proxy.app import create_app
from izzi_proxy.config import load_config
from izzi_proxy.keys import LEDGER
from izzi_proxy.ledger import UsageRecord
from izzi_proxy.testing import DISCONNECTS
from tests.conftest import write_config


@pytest.fixture(params=[False, True], ids=["default-mode", "handler-cancellation"])
async def gateway_url_key(request, upstream, tmp_path, upstream_env) -> AsyncIterator[tuple[str, str, web.Application]]:
    app = create_app(load_config(write_config(tmp_path, str(upstream.make_url("/v1")))))
    runner = web.AppRunner(app, handler_cancellation=request.param, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    account = await app[LEDGER].create_account("a", "unlimited")
    _, secret = await app[LEDGER].create_key(account.id, "k")
    try:
        yield f"http://127.0.0.1:{port}/v1", secret, app
    finally:
        await runner.cleanup()


async def _record(app: web.Application, request_id: str) -> UsageRecord:
    for _ in range(100):
        if records := await app[LEDGER].usage_records(request_id=request_id):
            return records[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no usage record for {request_id}")


async def test_client_hang_up_cancels_upstream_and_is_metered(gateway_url_key, upstream) -> None:
    url, key, app = gateway_url_key
    async with openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="slow", messages=[{"role": "user", "content": "a long answer please"}], stream=True
        )
        stream = raw.parse()
        first = await stream.__anext__()
        assert first.choices[0].delta.role == "assistant"
        await stream.close()
    # the upstream sees its connection closed while it still had chunks to send
    assert await asyncio.wait_for(upstream.app[DISCONNECTS].get(), timeout=5) == "slow_100"
    record = await _record(app, raw.headers["x-request-id"])
    assert record.outcome == "client_closed"
    assert record.stream and record.model == "slow"


async def test_finished_stream_is_metered_once(gateway_url_key) -> None:
    url, key, app = gateway_url_key
    async with openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        _ = [chunk async for chunk in raw.parse()]
    record = await _record(app, raw.headers["x-request-id"])
    assert (record.outcome, record.status) == ("ok", 200)
    assert record.usage is not None and record.usage.output_tokens > 0
