"""Anthropic's Messages API, or any API that speaks it.

Messages go over the app's shared aiohttp session (``izzi_proxy.upstream_http``): the
client's body as it came but for ``model``, its ``anthropic-version`` and
``anthropic-beta`` headers passed on. Token counts go through the official ``anthropic``
SDK (``messages.count_tokens``), the exact count Anthropic bills by.

``base_url`` is the API's root (``https://api.anthropic.com``, as ``ANTHROPIC_BASE_URL``
is for Anthropic's own SDK); a trailing ``/v1`` is accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import anthropic
from aiohttp import ClientSession

from izzi_proxy.config import ConfigError, UpstreamConfig
from izzi_proxy.errors import UpstreamConnectionError, upstream_error
from izzi_proxy.providers import UpstreamCall, UpstreamReply, UpstreamUnavailable
from izzi_proxy.upstream_http import HTTPUpstream

__all__ = ["AnthropicProvider"]

DEFAULT_VERSION = "2023-06-01"
_COUNT_PARAMS = ("messages", "model", "system", "thinking", "tool_choice", "tools")


class AnthropicProvider:
    kind: ClassVar[str] = "anthropic"
    wire_formats: ClassVar[frozenset[str]] = frozenset({"anthropic_messages"})

    def __init__(self, upstream: UpstreamConfig, session: ClientSession) -> None:
        self.name = upstream.name
        self._http = HTTPUpstream(upstream, session)
        self._base = (upstream.base_url or "").rstrip("/").removesuffix("/v1")
        keys = upstream.key_values()
        key = keys[0] if keys else None
        self._headers = {"Content-Type": "application/json", **upstream.extra_headers}
        self._sdk = anthropic.AsyncAnthropic(
            api_key=key or "none",
            base_url=self._base,
            max_retries=0,
            timeout=upstream.first_byte_timeout_s,
            default_headers=dict(upstream.extra_headers),
        )

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, session: ClientSession) -> Self:
        if not upstream.base_url:
            raise ConfigError(upstream.source, "base_url", "an anthropic upstream needs a base_url")
        if upstream.options:
            raise ConfigError(upstream.source, next(iter(upstream.options)), "unknown key for an anthropic upstream")
        if missing := upstream.missing_keys():
            raise UpstreamUnavailable(missing)
        return cls(upstream, session)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._sdk.close()

    def _call_headers(self, client: Mapping[str, str]) -> dict[str, str]:
        headers = {**self._headers, "anthropic-version": client.get("anthropic-version", DEFAULT_VERSION)}
        if beta := client.get("anthropic-beta"):
            headers["anthropic-beta"] = beta
        return headers

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        headers = {**self._call_headers(call.headers), "X-Request-Id": call.request_id}
        if call.api_key:
            headers["x-api-key"] = call.api_key
        return await self._http.post(self._base + "/v1/messages", call.body, headers, call.stream)

    async def count_tokens(self, body: dict[str, Any], headers: Mapping[str, str]) -> int:
        """Anthropic's own count for a Messages body (``model`` already the upstream's)."""
        known = {k: v for k, v in body.items() if k in _COUNT_PARAMS}
        extra = {k: v for k, v in body.items() if k not in _COUNT_PARAMS}
        beta = {"anthropic-beta": headers["anthropic-beta"]} if "anthropic-beta" in headers else {}
        try:
            counted = await self._sdk.messages.count_tokens(
                **known, extra_body=extra or None, extra_headers=beta or None
            )
        except anthropic.APIStatusError as exc:
            raise upstream_error(self.name, exc.status_code, exc.message) from None
        except anthropic.APIConnectionError as exc:
            raise UpstreamConnectionError(
                f"Could not reach upstream {self.name!r}: {exc}", upstream=self.name
            ) from None
        return counted.input_tokens
