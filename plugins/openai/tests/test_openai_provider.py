"""The openai provider against a fake OpenAI server: what it sends, how it commits, how it fails."""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import aiohttp
import pytest
from aiohttp import web
from izzi_provider_openai import OpenAIProvider

from izzi_proxy import sse
from izzi_proxy.config import ConfigError, Secret, UpstreamConfig
from izzi_proxy.errors import UpstreamConnectionError, UpstreamError, UpstreamRejected
from izzi_proxy.providers import UpstreamCall, UpstreamUnavailable
from izzi_proxy.testing import DISCONNECTS, RECEIVED, fake_openai_app

KEY = "sk-fake"


def upstream(base_url: str, **overrides) -> UpstreamConfig:
    values = dict(
        name="up", kind="openai", base_url=base_url, api_keys=(Secret("K", KEY),),
        first_byte_timeout_s=1.0, idle_timeout_s=0.5, extra_headers=MappingProxyType({"X-Title": "Izzi"}),
    )  # fmt: skip
    values.update(overrides)
    return UpstreamConfig(**values)


def call(model: str, stream: bool = False) -> UpstreamCall:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return UpstreamCall("openai_chat", body, stream, "req_test", api_key=KEY)


@pytest.fixture
async def provider(aiohttp_server):
    server = await aiohttp_server(fake_openai_app(api_key=KEY))
    async with aiohttp.ClientSession() as session:
        provider = OpenAIProvider.from_config(upstream(str(server.make_url("/v1"))), session)
        provider.server = server
        yield provider


async def test_plain_answer_with_headers(provider) -> None:
    reply = await provider.send(call("gpt-4o"))
    assert reply.status == 200 and b'"Echo: hi"' in reply.head
    received = provider.server.app[RECEIVED][-1]
    assert received.headers["Authorization"] == f"Bearer {KEY}"
    assert received.headers["X-Title"] == "Izzi" and received.headers["X-Request-Id"] == "req_test"


async def test_stream_commits_after_the_first_event(provider) -> None:
    reply = await provider.send(call("gpt-4o", stream=True))
    assert sse.has_complete_event(reply.head)
    rest = b"".join([chunk async for chunk in reply.body])
    events = list(sse.iter_events(reply.head + rest))
    assert events[-1].data == "[DONE]"
    await reply.aclose()


async def test_a_stream_read_to_its_end_gives_its_connection_back(provider) -> None:
    for model in ("gpt-4o", "linger"):  # linger: the upstream does not end its answer by itself
        reply = await provider.send(call(model, stream=True))
        if b"[DONE]" not in reply.head:
            async for chunk in reply.body:
                if b"[DONE]" in chunk:
                    break
        await reply.aclose(finished=True)
    await provider.send(call("gpt-4o"))
    peers = [r.peer for r in provider.server.app[RECEIVED]]
    assert peers[0] == peers[1] != peers[2]  # reused at once; the lingering answer is still being read


async def test_an_abandoned_stream_cancels_the_upstream_request(provider) -> None:
    reply = await provider.send(call("slow_100", stream=True))
    await reply.aclose(finished=False)
    assert await asyncio.wait_for(provider.server.app[DISCONNECTS].get(), timeout=5) == "slow_100"


@pytest.mark.parametrize(
    ("model", "error", "retryable"),
    [("error_500", UpstreamError, True), ("error_429", UpstreamError, True),
     ("error_401", UpstreamError, True), ("error_400", UpstreamRejected, False)],
)  # fmt: skip
async def test_error_statuses(provider, model, error, retryable) -> None:
    with pytest.raises(error) as caught:
        await provider.send(call(model))
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert caught.value.upstream_status == int(model.split("_")[1])
    # the upstream's text reaches the client, but for a refusal of the gateway's own key
    assert ("Mock upstream error" in caught.value.message) is (model != "error_401")


async def test_error_as_first_stream_event_is_raised_before_commit(provider) -> None:
    with pytest.raises(UpstreamError) as caught:
        await provider.send(call("stream_error_after_0", stream=True))
    assert caught.value.retryable and "failed the stream at its start" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_first_byte_timeout(provider, stream) -> None:
    with pytest.raises(UpstreamConnectionError) as caught:
        await provider.send(call("hang", stream=stream))
    assert "did not answer within 1 s" in caught.value.message


async def test_idle_timeout_after_the_first_event(aiohttp_server) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": []}\n\n')
        await asyncio.sleep(5)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stalls)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        provider = OpenAIProvider.from_config(upstream(str(server.make_url("/v1"))), session)
        reply = await provider.send(call("x", stream=True))
        with pytest.raises(UpstreamConnectionError) as caught:
            _ = [chunk async for chunk in reply.body]
    assert "sent nothing for 0.5 s" in caught.value.message


async def test_connection_refused(unused_tcp_port) -> None:
    async with aiohttp.ClientSession() as session:
        provider = OpenAIProvider.from_config(upstream(f"http://127.0.0.1:{unused_tcp_port}/v1"), session)
        with pytest.raises(UpstreamConnectionError) as caught:
            await provider.send(call("gpt-4o"))
    assert caught.value.retryable and "Could not reach upstream 'up'" in caught.value.message


async def test_config_validation() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match="needs a base_url"):
            OpenAIProvider.from_config(upstream(None), session)
        with pytest.raises(ConfigError, match="unknown key"):
            OpenAIProvider.from_config(upstream("http://x/v1", options=MappingProxyType({"chunks": 1})), session)
        with pytest.raises(UpstreamUnavailable, match="set K to use it"):
            OpenAIProvider.from_config(upstream("http://x/v1", api_keys=(Secret("K", None),)), session)
        keyless = OpenAIProvider.from_config(upstream("http://x/v1", api_keys=()), session)
        assert "Authorization" not in keyless._headers  # e.g. a local vLLM or Ollama
