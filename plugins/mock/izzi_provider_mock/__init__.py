"""A deterministic upstream inside the gateway process: no socket, no account.

It plays ``izzi_proxy.testing.ChatScript`` (``ResponseScript`` for routes that speak the
Responses API, ``wire = "responses"``): the answer echoes the last user message,
tools are called when the model name says ``tools``, errors and cut streams are picked by
the model name (see that module's table). Usage is realistic (about 4 characters per
token). Options in the upstream's table::

    [upstreams.mock]
    kind = "mock"
    chunks = 8                # content chunks per streamed answer
    chunk_delay_ms = 20       # pause before each chunk
    first_byte_delay_ms = 0   # pause before answering at all
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar, Self

import orjson
from aiohttp import ClientSession

from izzi_proxy.config import ConfigError, UpstreamConfig
from izzi_proxy.errors import upstream_error
from izzi_proxy.providers import UpstreamCall, UpstreamReply
from izzi_proxy.testing import ChatScript, ResponseScript

__all__ = ["MockProvider"]

_OPTIONS: dict[str, tuple[type, Any]] = {
    "chunks": (int, 8),
    "chunk_delay_ms": (float, 0.0),
    "first_byte_delay_ms": (float, 0.0),
}
_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8"}


class MockProvider:
    kind: ClassVar[str] = "mock"
    wire_formats: ClassVar[frozenset[str]] = frozenset({"openai_chat", "openai_responses"})

    def __init__(self, name: str, chunks: int, chunk_delay_s: float, first_byte_delay_s: float) -> None:
        self.name = name
        self.chunks = chunks
        self.chunk_delay_s = chunk_delay_s
        self.first_byte_delay_s = first_byte_delay_s

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, session: ClientSession) -> Self:
        values = {}
        for key, value in upstream.options.items():
            if key not in _OPTIONS:
                raise ConfigError(
                    upstream.source, key, f"unknown option for a mock upstream; known: {', '.join(_OPTIONS)}"
                )
            kind, _ = _OPTIONS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(upstream.source, key, f"must be a number >= 0, got {value!r}")
            values[key] = kind(value)
        get = lambda key: values.get(key, _OPTIONS[key][1])  # noqa: E731
        if get("chunks") < 1:
            raise ConfigError(upstream.source, "chunks", "must be at least 1")
        return cls(upstream.name, get("chunks"), get("chunk_delay_ms") / 1000, get("first_byte_delay_ms") / 1000)

    async def aclose(self) -> None:
        pass

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        script: ChatScript | ResponseScript
        if call.wire_format == "openai_responses":
            script = ResponseScript(call.body, chunks=self.chunks)
            answer = script.response
        else:
            script = ChatScript(call.body, chunks=self.chunks)
            answer = script.completion
        if self.first_byte_delay_s:
            await asyncio.sleep(self.first_byte_delay_s)
        if script.error_status:
            raise upstream_error(
                self.name, script.error_status, script.error_body(script.error_status)["error"]["message"]
            )
        if not call.stream:
            return UpstreamReply(200, _HEADERS, orjson.dumps(answer()))
        frames = script.frames()
        head = next(frames)
        return UpstreamReply(200, _SSE_HEADERS, head, self._rest(frames))

    async def _rest(self, frames: Iterator[bytes]) -> AsyncIterator[bytes]:
        for frame in frames:
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            yield frame
