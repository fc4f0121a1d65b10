"""The passthrough tap for Responses streams: the final response object (for the gateway's
store and usage) from ``response.completed`` / ``response.incomplete`` / ``response.failed``,
an ``error`` event noticed. Every chunk goes on as it came."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from izzi_proxy.dialects import WatchingTap
from izzi_proxy.dialects.openai_responses import response
from izzi_proxy.errors import GatewayError

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class ResponsesTap(WatchingTap):
    NOTABLE = (*(kind.encode() for kind in _TERMINAL), b'"type":"error"', b'"type": "error"')
    __slots__ = ("events", "final")

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.final: dict[str, Any] | None = None
        self.events = 0  # seen so far: the next sequence_number, for an error of our own

    def feed(self, chunk: bytes) -> bytes:
        self.events += chunk.count(b"event:")
        return super().feed(chunk)

    def error_frame(self, error: GatewayError) -> bytes:
        return response.error_event(error, self.events)

    def inspect(self, data: bytes) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "error":
            self.error = True
        elif kind in _TERMINAL:
            self.done = True
            self.error |= kind == "response.failed"
            self.final = event.get("response")
            wire = (self.final or {}).get("usage")
            try:
                self.usage = response.usage_from_wire(msgspec.convert(wire, response.WireUsage)) if wire else None
            except msgspec.ValidationError:
                self.usage = None
