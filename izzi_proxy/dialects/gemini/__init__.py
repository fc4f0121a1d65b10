"""Google's Gemini API: ``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent`` and ``:countTokens``; the client dialect and the wire format.

The model and the streaming choice are in the URL: ``parse`` takes them from the handler
(``gemini_api``). Errors use Google's envelope ``{"error": {"code", "message", "status"}}``;
after the first byte, an object ``{"error": …}`` in the stream, which the google-genai SDKs
raise as ``APIError``. The wire format joins the registry with the Gemini provider plugin
(``izzi-provider-gemini``), which brings it: only then is a Gemini upstream spoken to
natively, and a Gemini client's request passed through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from izzi_proxy import canonical as c
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.dialects.gemini import request, response, wire
from izzi_proxy.dialects.gemini.request import SKIP_SIGNATURE, GeminiCall
from izzi_proxy.dialects.gemini.response import Framing
from izzi_proxy.dialects.gemini.signatures import is_carried
from izzi_proxy.dialects.gemini.tap import GeminiArrayTap, GeminiTap
from izzi_proxy.errors import GatewayError


class _UsageCarrier(msgspec.Struct, rename="camel"):
    usage_metadata: response.WireUsage | None = None


class Gemini:
    name = "gemini"
    model_field = response.MODEL_FIELD

    # -- the client side

    def parse(self, raw: bytes, model: str = "", stream: bool = False, sse: bool = True) -> ParsedRequest:
        parsed = request.parse(raw, model, stream, sse)
        parsed.stream_type = Framing(sse).content_type
        return parsed

    def parse_count_tokens(self, raw: bytes, model: str) -> ParsedRequest:
        return request.parse_count_tokens(raw, model)

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {}

    def to_canonical(self, parsed: ParsedRequest) -> c.Request:
        return request.to_canonical(parsed)

    def render_response(self, resp: c.Response, parsed: ParsedRequest) -> bytes:
        view: GeminiCall = parsed.typed
        return response.render_response(resp, parsed.model, view.include_thoughts)

    def stream_renderer(self, parsed: ParsedRequest) -> response.StreamRenderer:
        view: GeminiCall = parsed.typed
        return response.StreamRenderer(parsed.model, Framing(view.sse), view.include_thoughts)

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return response.error_body(error)

    def stream_error(self, error: GatewayError) -> bytes:
        return Framing(sse=True).error(error)

    # -- passthrough

    def upstream_body(self, parsed: ParsedRequest, upstream_model: str) -> dict[str, Any]:
        """The body as it came, with the model for the provider's URL; a function call in
        the history that has no thought signature (another model made it) gets Google's
        placeholder, which Gemini 3 requires of every call in the current turn."""
        body = {**parsed.body, "model": upstream_model}
        contents = body.get("contents")
        if isinstance(contents, list) and any(_unsigned_calls(content) for content in contents):
            body["contents"] = [_signed(content) for content in contents]
        return body

    def stream_tap(self, parsed: ParsedRequest) -> GeminiTap | GeminiArrayTap:
        view: GeminiCall = parsed.typed
        return GeminiTap(parsed.model) if view.sse else GeminiArrayTap(parsed.model)

    def usage_of_body(self, body: bytes) -> c.Usage | None:
        try:
            return response.usage_from_wire(msgspec.json.decode(body, type=_UsageCarrier).usage_metadata)
        except msgspec.MsgspecError:
            return None


def _unsigned_calls(content: Any) -> bool:
    """Whether a model turn's first function call lacks a signature of Google's (another
    model made it: no signature, or one carrying Claude's thinking)."""
    if not isinstance(content, dict) or content.get("role") != "model" or not isinstance(content.get("parts"), list):
        return False
    first = next((p for p in content["parts"] if isinstance(p, dict) and "functionCall" in p), None)
    signature = first.get("thoughtSignature") if first is not None else None
    return first is not None and (not isinstance(signature, str) or not signature or is_carried(signature))


def _signed(content: Any) -> Any:
    if not _unsigned_calls(content):
        return content
    parts = list(content["parts"])
    at = next(i for i, p in enumerate(parts) if isinstance(p, dict) and "functionCall" in p)
    parts[at] = {**parts[at], "thoughtSignature": SKIP_SIGNATURE}
    return {**content, "parts": parts}


GEMINI = Gemini()


class GeminiWire:
    """The wire format of upstreams that speak Google's Gemini API. ``from_canonical`` puts
    the upstream's model name in the body under ``model``: the provider moves it to the URL."""

    name = "gemini"

    def from_canonical(self, req: c.Request, target: c.Target) -> dict[str, Any]:
        return wire.from_canonical(req, target)

    def parse_response(self, body: bytes, upstream: str) -> c.Response:
        return response.parse_response(body, upstream)

    def stream_parser(self, upstream: str) -> response.StreamParser:
        return response.StreamParser(upstream)


GEMINI_WIRE = GeminiWire()
