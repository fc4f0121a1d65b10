"""Google's Gemini API, natively (``generateContent`` and ``streamGenerateContent``).

The provider brings the ``gemini`` wire format to the registry (``wires.BringsWireFormats``):
a Gemini client's request goes through as it came (thought signatures survive), and other
clients' requests are translated into it. The body's ``model`` (which the wire format and
passthrough put there) becomes the URL's ``models/{model}:…``; streams are asked for as SSE
(``?alt=sse``). The key goes in ``x-goog-api-key``. ``countTokens`` gives Google's own count
(``providers.CountsTokens``, for a Gemini body).

``base_url`` is the API's versioned root (``https://generativelanguage.googleapis.com/v1beta``).
Google answers a wrong key with 400 ``API_KEY_INVALID``: it is read as the 401 it means,
so the router rests that key and tries the next route instead of blaming the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self
from urllib.parse import quote

import orjson
from aiohttp import ClientSession

from izzi_proxy.config import ConfigError, UpstreamConfig
from izzi_proxy.dialects.gemini import GEMINI_WIRE
from izzi_proxy.errors import UpstreamError, upstream_error
from izzi_proxy.providers import UpstreamCall, UpstreamReply, UpstreamUnavailable
from izzi_proxy.upstream_http import HTTPUpstream
from izzi_proxy.wires import WireFormat

__all__ = ["GeminiProvider"]

_KEY_REFUSED = ("API_KEY_INVALID", "API key not valid", "API key expired")


class GeminiProvider:
    kind: ClassVar[str] = "gemini"
    wire_formats: ClassVar[frozenset[str]] = frozenset({"gemini"})
    wire_codecs: ClassVar[tuple[WireFormat, ...]] = (GEMINI_WIRE,)

    def __init__(self, upstream: UpstreamConfig, session: ClientSession) -> None:
        self.name = upstream.name
        self._http = HTTPUpstream(upstream, session)
        self._base = (upstream.base_url or "").rstrip("/")
        self._headers = {"Content-Type": "application/json", **upstream.extra_headers}
        self._keys = upstream.key_values()  # counts use the first, as the anthropic plugin's do

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, session: ClientSession) -> Self:
        if not upstream.base_url:
            raise ConfigError(upstream.source, "base_url", "a gemini upstream needs a base_url")
        if upstream.options:
            raise ConfigError(upstream.source, next(iter(upstream.options)), "unknown key for a gemini upstream")
        if missing := upstream.missing_keys():
            raise UpstreamUnavailable(missing)
        return cls(upstream, session)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        body = dict(call.body)
        model = str(body.pop("model", "")).removeprefix("models/")
        method = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
        return await self._post(model, method, body, call.stream, call.request_id, call.api_key)

    async def count_tokens(self, body: dict[str, Any], headers: Mapping[str, str]) -> int:
        """Google's own count of a ``GenerateContentRequest`` (``model`` the upstream's)."""
        request = dict(body)
        model = str(request.pop("model", "")).removeprefix("models/")
        wrapped = {"generateContentRequest": {"model": f"models/{model}", **request}}
        reply = await self._post(model, "countTokens", wrapped, False, "", self._keys[0] if self._keys else None)
        try:
            return int(orjson.loads(reply.head)["totalTokens"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError(
                f"Upstream {self.name!r} did not answer with a token count", upstream=self.name
            ) from None

    async def _post(
        self, model: str, method: str, body: dict[str, Any], stream: bool, request_id: str, key: str | None
    ) -> UpstreamReply:
        url = f"{self._base}/models/{quote(model, safe='.-_')}:{method}"
        headers = {**self._headers, "X-Request-Id": request_id} if request_id else dict(self._headers)
        if key:
            headers["x-goog-api-key"] = key
        try:
            return await self._http.post(url, body, headers, stream)
        except UpstreamError as err:
            if err.upstream_status == 400 and any(word in err.message for word in _KEY_REFUSED):
                raise upstream_error(self.name, 401, err.message) from None
            raise
