"""Google's Gemini API, natively (``generateContent`` and ``streamGenerateContent``).

The provider brings the ``gemini`` wire format to the registry (``wires.BringsWireFormats``):
a Gemini client's request goes through as it came (thought signatures survive), and other
clients' requests are translated into it. The body's ``model`` (which the wire format and
passthrough put there) becomes the URL's ``models/{model}:…``; streams are asked for as SSE
(``?alt=sse``). The key goes in ``x-goog-api-key``.

``base_url`` is the API's versioned root (``https://generativelanguage.googleapis.com/v1beta``).
Google answers a wrong key with 400 ``API_KEY_INVALID``: it is read as the 401 it means,
so the router rests that key and tries the next route instead of blaming the client.
"""

from __future__ import annotations

from typing import ClassVar, Self
from urllib.parse import quote

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
        url = f"{self._base}/models/{quote(model, safe='.-_')}:{method}"
        headers = {**self._headers, "X-Request-Id": call.request_id}
        if call.api_key:
            headers["x-goog-api-key"] = call.api_key
        try:
            return await self._http.post(url, body, headers, call.stream)
        except UpstreamError as err:
            if err.upstream_status == 400 and any(word in err.message for word in _KEY_REFUSED):
                raise upstream_error(self.name, 401, err.message) from None
            raise
