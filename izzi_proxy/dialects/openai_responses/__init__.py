"""OpenAI Responses: ``POST /v1/responses`` (and ``GET`` / ``DELETE /v1/responses/{id}``).

A client dialect for every model, and the wire format of upstreams that speak it (an
openai upstream with ``responses = true``): Responses clients pass through, and other
clients are translated into it for routes that say ``wire = "responses"`` (the models
OpenAI serves only there, such as the codex family). Errors are OpenAI's envelope; after
the first byte, an ``error`` event with the stream's next ``sequence_number``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from izzi_proxy import canonical as c
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.dialects.openai_responses import request, response, wire
from izzi_proxy.dialects.openai_responses.tap import ResponsesTap
from izzi_proxy.errors import GatewayError


class _UsageCarrier(msgspec.Struct):
    usage: response.WireUsage | None = None


class OpenAIResponses:
    name = "openai_responses"
    model_field = "model"

    # -- the client side

    def parse(self, raw: bytes) -> ParsedRequest:
        return request.parse(raw)

    def with_history(self, parsed: ParsedRequest, history: list[dict[str, Any]]) -> ParsedRequest:
        return request.with_history(parsed, history)

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {}

    def to_canonical(self, parsed: ParsedRequest) -> c.Request:
        return request.to_canonical(parsed)

    def render_response(self, resp: c.Response, parsed: ParsedRequest) -> bytes:
        return response.render_response(resp, parsed)

    def stream_renderer(self, parsed: ParsedRequest) -> response.StreamRenderer:
        return response.StreamRenderer(parsed)

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return {"error": {"type": error.type, "message": error.message, "param": error.param, "code": error.code}}

    def stream_error(self, error: GatewayError) -> bytes:
        return response.error_event(error, 0)

    # -- passthrough

    def upstream_body(self, parsed: ParsedRequest, upstream_model: str) -> dict[str, Any]:
        body = {**parsed.body, "model": upstream_model}
        if isinstance(body.get("input"), list):
            body["input"] = request.strip_foreign_reasoning(body["input"])
        return body

    def stream_tap(self, parsed: ParsedRequest) -> ResponsesTap:
        return ResponsesTap(parsed.model)

    def usage_of_body(self, body: bytes) -> c.Usage | None:
        try:
            return response.usage_from_wire(msgspec.json.decode(body, type=_UsageCarrier).usage)
        except msgspec.MsgspecError:
            return None


OPENAI_RESPONSES = OpenAIResponses()


class OpenAIResponsesWire:
    """The wire format of upstreams that serve ``POST /responses`` (``wire.py``)."""

    name = "openai_responses"

    def from_canonical(self, req: c.Request, target: c.Target) -> dict[str, Any]:
        return wire.from_canonical(req, target)

    def parse_response(self, body: bytes, upstream: str) -> c.Response:
        return wire.parse_response(body, upstream)

    def stream_parser(self, upstream: str) -> wire.StreamParser:
        return wire.StreamParser(upstream)


OPENAI_RESPONSES_WIRE = OpenAIResponsesWire()
