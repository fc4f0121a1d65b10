"""The gateway's own bounds: a body must arrive in time (408), and before it has, it holds
none of its account's limits; the requests and body bytes in flight are capped (503 with
Retry-After), in the route's error format."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import openai
import orjson
import pytest

from izzi_proxy.config import load_config
from tests.conftest import Gateway, start_gateway, write_config
from tests.e2e.shapes import assert_anthropic_error, assert_openai_error

HELLO = [{"role": "user", "content": "Hello"}]


async def gateway_with(aiohttp_server, upstream, tmp_path, server: str, plan: str = "unlimited") -> Gateway:
    config = load_config(write_config(tmp_path, str(upstream.make_url("/v1")), server=server))
    return await start_gateway(aiohttp_server, config, upstream, plan=plan)


@pytest.fixture
async def connections() -> AsyncIterator[list[asyncio.StreamWriter]]:
    opened: list[asyncio.StreamWriter] = []
    yield opened
    for writer in opened:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def half_sent(
    gateway: Gateway, connections: list[asyncio.StreamWriter], path: str = "/v1/chat/completions"
) -> asyncio.StreamReader:
    """A request whose headers promise a body of which only the start ever comes."""
    url = gateway.server.make_url(path)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    connections.append(writer)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gateway.key}\r\n"
                 "Content-Type: application/json\r\nanthropic-version: 2023-06-01\r\n"
                 "Content-Length: 1000\r\n\r\n".encode() + b'{"model": "gpt-4o", ')  # fmt: skip
    await writer.drain()
    return reader


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
async def test_a_body_that_does_not_arrive_is_a_408(
    aiohttp_server, upstream, tmp_path, upstream_env, connections, path, shape
):
    gateway = await gateway_with(aiohttp_server, upstream, tmp_path, "body_timeout_s = 0.3")
    reader = await half_sent(gateway, connections, path)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 408")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
    )
    body = orjson.loads(await reader.readexactly(length))
    assert body["error"]["type"] == "invalid_request_error" and "0.3 s" in body["error"]["message"]
    assert (body.get("type") == "error") is (shape == "anthropic")


async def test_a_body_still_arriving_holds_no_slot_of_its_account(
    aiohttp_server, upstream, tmp_path, upstream_env, connections
):
    gateway = await gateway_with(aiohttp_server, upstream, tmp_path, "body_timeout_s = 5", plan="one")
    await half_sent(gateway, connections)  # the plan allows 1 request in flight
    async with gateway.client() as client:
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)


async def test_the_requests_in_flight_are_capped(aiohttp_server, upstream, tmp_path, upstream_env) -> None:
    gateway = await gateway_with(aiohttp_server, upstream, tmp_path, "max_requests_in_flight = 2")
    async with gateway.client() as client:
        streams = [await client.chat.completions.create(model="slow", messages=HELLO, stream=True) for _ in range(2)]
        for stream in streams:
            await stream.__anext__()
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert caught.value.status_code == 503 and caught.value.body["type"] == "service_unavailable"
        assert caught.value.response.headers["retry-after"] == "1"
        for stream in streams:
            _ = [chunk async for chunk in stream]
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)  # room again


async def test_the_body_bytes_in_flight_are_capped(aiohttp_server, upstream, tmp_path, upstream_env, connections):
    gateway = await gateway_with(aiohttp_server, upstream, tmp_path, "max_body_mb_in_flight = 0.001")  # ~1 KB
    await half_sent(gateway, connections)  # holds 1000 bytes of the cap while it waits
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 200}]}
    async with aiohttp.ClientSession() as session:
        url, headers = gateway.server.make_url("/v1/messages"), {"x-api-key": gateway.key}
        async with session.post(url, json={**big, "max_tokens": 5}, headers=headers) as resp:
            await assert_anthropic_error(resp, 503, "service_unavailable")
            assert resp.headers["Retry-After"] == "1"
        async with session.post(gateway.server.make_url("/v1/chat/completions"), data=b"{}", headers=headers) as resp:
            await assert_openai_error(resp, 400, "invalid_request_error")  # a small one still fits
