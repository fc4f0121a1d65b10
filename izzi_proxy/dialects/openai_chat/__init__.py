"""OpenAI Chat Completions: ``POST /v1/chat/completions``; the client dialect and the wire format.

``request`` validates bodies and translates them, ``response`` translates answers and
streams, ``tap`` reads passthrough streams. Errors are OpenAI's envelope
``{"error": {"type", "message", "param", "code"}}``; after the first byte, a
``data: {"error": ...}`` event, which the openai SDK raises as ``APIError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from izzi_proxy import canonical as c
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.dialects.openai_chat import request, response
from izzi_proxy.dialects.openai_chat.tap import OpenAIChatTap, UsageCarrier
from izzi_proxy.errors import GatewayError


class OpenAIChat:
    name = "openai_chat"
    model_field = "model"

    # -- the client side

    def parse(self, raw: bytes) -> ParsedRequest:
        return request.parse(raw)

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {}

    def to_canonical(self, parsed: ParsedRequest) -> c.Request:
        return request.to_canonical(parsed)

    def render_response(self, resp: c.Response, parsed: ParsedRequest) -> bytes:
        return response.render_response(resp, parsed.model)

    def stream_renderer(self, parsed: ParsedRequest) -> response.StreamRenderer:
        return response.StreamRenderer(parsed.model, self._client_wants_usage(parsed))

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return response.error_body(error)

    def stream_error(self, error: GatewayError) -> bytes:
        return response.stream_error(error)

    # -- passthrough

    def upstream_body(self, parsed: ParsedRequest, upstream_model: str) -> dict[str, Any]:
        body = {**parsed.body, "model": upstream_model}
        if parsed.stream and not self._client_wants_usage(parsed):
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    def stream_tap(self, parsed: ParsedRequest) -> OpenAIChatTap:
        return OpenAIChatTap(parsed.model, hide_usage=not self._client_wants_usage(parsed))

    @staticmethod
    def _client_wants_usage(parsed: ParsedRequest) -> bool:
        options = parsed.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    def usage_of_body(self, body: bytes) -> c.Usage | None:
        try:
            return response.usage_from_wire(msgspec.json.decode(body, type=UsageCarrier).usage)
        except msgspec.MsgspecError:
            return None


OPENAI_CHAT = OpenAIChat()


class OpenAIChatWire:
    """The wire format of OpenAI-compatible upstreams."""

    name = "openai_chat"

    def from_canonical(self, req: c.Request, target: c.Target) -> dict[str, Any]:
        return request.from_canonical(req, target)

    def parse_response(self, body: bytes, upstream: str) -> c.Response:
        return response.parse_response(body)

    def stream_parser(self, upstream: str) -> response.StreamParser:
        return response.StreamParser(upstream)


OPENAI_CHAT_WIRE = OpenAIChatWire()
