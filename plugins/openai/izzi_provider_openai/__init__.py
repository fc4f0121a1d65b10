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

_PATHS = {"openai_chat": "/chat/completions", "openai_responses": "/responses"}


class OpenAIProvider:
    """Options: ``responses = true`` where the upstream serves the Responses API too
    (OpenAI does): Responses clients then pass through instead of being translated, and
    routes may say ``wire = "responses"`` (models served only there). The key of each call
    is the router's pick from the upstream's pool (``api_key`` / ``api_keys``)."""

    kind: ClassVar[str] = "openai"

    def __init__(self, upstream: UpstreamConfig, session: ClientSession) -> None:
        self.name = upstream.name
        responses = bool(upstream.options.get("responses", False))
        self.wire_formats = frozenset(_PATHS if responses else ("openai_chat",))
        self._http = HTTPUpstream(upstream, session)
        self._base = (upstream.base_url or "").rstrip("/")
        self._headers = {"Content-Type": "application/json", **upstream.extra_headers}

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, session: ClientSession) -> Self:
        if not upstream.base_url:
            raise ConfigError(upstream.source, "base_url", "an openai upstream needs a base_url")
        for key, value in upstream.options.items():
            if key != "responses":
                raise ConfigError(upstream.source, key, "unknown key for an openai upstream (options: responses)")
            if not isinstance(value, bool):
                raise ConfigError(upstream.source, key, f"must be true or false, got {value!r}")
        if missing := upstream.missing_keys():
            raise UpstreamUnavailable(missing)
        return cls(upstream, session)

    async def aclose(self) -> None:
        await self._http.aclose()  # the session itself belongs to the app

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        headers = {**self._headers, **call.headers, "X-Request-Id": call.request_id}
        if call.api_key:
            headers["Authorization"] = f"Bearer {call.api_key}"
        return await self._http.post(self._base + _PATHS[call.wire_format], call.body, headers, call.stream)
