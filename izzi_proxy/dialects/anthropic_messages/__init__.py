"""Anthropic Messages: ``POST /v1/messages`` (and ``/v1/messages/count_tokens``); the
client dialect and the wire format.

Errors use Anthropic's envelope ``{"type": "error", "error": {"type", "message"}}`` with
the gateway's error types and statuses (the anthropic SDK picks its exception class by
status); after the first byte, an ``event: error`` frame, which the SDK raises as
``APIStatusError``. ``anthropic-version`` and ``anthropic-beta`` go to Anthropic upstreams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from izzi_proxy import canonical as c
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.dialects.anthropic_messages import request, response
from izzi_proxy.dialects.anthropic_messages.tap import AnthropicTap
from izzi_proxy.errors import GatewayError

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


class _UsageCarrier(msgspec.Struct):
    usage: response.WireUsage | None = None


class AnthropicMessages:
    name = "anthropic_messages"
    model_field = "model"

    # -- the client side

    def parse(self, raw: bytes) -> ParsedRequest:
        return request.parse(raw)

    def parse_count_tokens(self, raw: bytes) -> ParsedRequest:
        return request.parse(raw, request.CountTokensRequest)

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {name: value for name in FORWARDED_HEADERS if (value := headers.get(name))}

    def to_canonical(self, parsed: ParsedRequest) -> c.Request:
        return request.to_canonical(parsed)

    def render_response(self, resp: c.Response, parsed: ParsedRequest) -> bytes:
        return response.render_response(resp, parsed.model)

    def stream_renderer(self, parsed: ParsedRequest) -> response.StreamRenderer:
        return response.StreamRenderer(parsed.model)

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return response.error_body(error)

    def stream_error(self, error: GatewayError) -> bytes:
        return response.stream_error(error)

    # -- passthrough

    def upstream_body(self, parsed: ParsedRequest, upstream_model: str) -> dict[str, Any]:
        return {**parsed.body, "model": upstream_model}

    def stream_tap(self, parsed: ParsedRequest) -> AnthropicTap:
        return AnthropicTap(parsed.model)

    def usage_of_body(self, body: bytes) -> c.Usage | None:
        try:
            return response.merge_usage(None, msgspec.json.decode(body, type=_UsageCarrier).usage)
        except msgspec.MsgspecError:
            return None


ANTHROPIC_MESSAGES = AnthropicMessages()


class AnthropicMessagesWire:
    """The wire format of upstreams that speak Anthropic's Messages API."""

    name = "anthropic_messages"

    def from_canonical(self, req: c.Request, target: c.Target) -> dict[str, Any]:
        return request.from_canonical(req, target)

    def parse_response(self, body: bytes, upstream: str) -> c.Response:
        return response.parse_response(body, upstream)

    def stream_parser(self, upstream: str) -> response.StreamParser:
        return response.StreamParser(upstream)


ANTHROPIC_MESSAGES_WIRE = AnthropicMessagesWire()
