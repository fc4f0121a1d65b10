"""Any OpenAI-compatible upstream: OpenAI, OpenRouter, Cerebras, xAI, Google's OpenAI
endpoint, vLLM, Ollama… over the app's shared aiohttp session.

The wire path stays lean: the body is encoded once with orjson, and the answer is read
just far enough to commit (status, headers, a stream's first event) before the gateway
relays the rest (``izzi_proxy.upstream_http``).
"""

from __future__ import annotations

from typing import ClassVar, Self

from aiohttp import ClientSession

from izzi_proxy.config import ConfigError, UpstreamConfig
from izzi_proxy.providers import UpstreamCall, UpstreamReply, UpstreamUnavailable
from izzi_proxy.upstream_http import HTTPUpstream

__all__ = ["OpenAIProvider"]

_PATHS = {"openai_chat": "/chat/completions"}


class OpenAIProvider:
    kind: ClassVar[str] = "openai"
    wire_formats: ClassVar[frozenset[str]] = frozenset(_PATHS)

    def __init__(self, upstream: UpstreamConfig, session: ClientSession) -> None:
        self.name = upstream.name
        self._http = HTTPUpstream(upstream, session)
        self._base = (upstream.base_url or "").rstrip("/")
        self._headers = {"Content-Type": "application/json", **upstream.extra_headers}
        if upstream.api_key is not None and upstream.api_key.value:
            self._headers["Authorization"] = f"Bearer {upstream.api_key.value}"

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, session: ClientSession) -> Self:
        if not upstream.base_url:
            raise ConfigError(upstream.source, "base_url", "an openai upstream needs a base_url")
        if upstream.options:
            raise ConfigError(
                upstream.source, next(iter(upstream.options)), "unknown key for an openai upstream"
            )
        if upstream.api_key is not None and not upstream.api_key.value:
            raise UpstreamUnavailable(f"set {upstream.api_key.env} to use it")
        return cls(upstream, session)

    async def aclose(self) -> None:
        pass  # the session belongs to the app

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        headers = {**self._headers, **call.headers, "X-Request-Id": call.request_id}
        return await self._http.post(self._base + _PATHS[call.wire_format], call.body, headers, call.stream)
