"""The in-process mock: options validated at start, deterministic answers, real SSE."""

from __future__ import annotations

from types import MappingProxyType

import orjson
import pytest
from izzi_provider_mock import MockProvider
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from izzi_proxy import sse
from izzi_proxy.config import ConfigError, UpstreamConfig
from izzi_proxy.errors import UpstreamError
from izzi_proxy.providers import UpstreamCall


def mock(**options) -> MockProvider:
    return MockProvider.from_config(UpstreamConfig("m", "mock", options=MappingProxyType(options)), None)


def call(model: str = "any", stream: bool = False, **extra) -> UpstreamCall:
    body = {"model": model, "messages": [{"role": "user", "content": "ping pong"}], "stream": stream, **extra}
    return UpstreamCall("openai_chat", body, stream, "req_1")


@pytest.mark.parametrize(
    ("options", "words"),
    [({"chunkz": 1}, "unknown option"), ({"chunks": 0}, "at least 1"), ({"chunk_delay_ms": -1}, ">= 0"),
     ({"chunks": "many"}, "number")],
)  # fmt: skip
def test_options_validated(options, words) -> None:
    with pytest.raises(ConfigError, match=words):
        mock(**options)


async def test_plain_answer_is_deterministic_and_parses() -> None:
    provider = mock()
    first = orjson.loads((await provider.send(call())).head)
    second = orjson.loads((await provider.send(call())).head)
    ChatCompletion.model_validate(first)
    assert first["choices"] == second["choices"] and first["usage"] == second["usage"]
    assert first["choices"][0]["message"]["content"] == "Echo: ping pong"
    assert first["usage"]["completion_tokens"] == 4  # "Echo: ping pong" is 15 characters


async def test_stream_has_the_configured_chunks_and_usage() -> None:
    provider = mock(chunks=5, chunk_delay_ms=1)
    reply = await provider.send(call(stream=True, stream_options={"include_usage": True}))
    data = reply.head + b"".join([chunk async for chunk in reply.body])
    events = [e.data for e in sse.iter_events(data)]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(orjson.loads(e)) for e in events[:-1]]
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 5
    assert chunks[-1].usage is not None and chunks[-1].choices == []


async def test_errors_by_model_name() -> None:
    with pytest.raises(UpstreamError) as caught:
        await mock().send(call("error_503"))
    assert caught.value.upstream_status == 503 and caught.value.retryable
