"""The passthrough tap for Responses streams: the final response object (for the gateway's
store and usage) from ``response.completed`` / ``response.incomplete`` / ``response.failed``,
an ``error`` event noticed, and the upstream's last ``sequence_number``, so that an error of
the gateway's own continues the numbering. Every chunk goes on as it came."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from izzi_proxy.dialects import WatchingTap
from izzi_proxy.dialects.openai_responses import response
from izzi_proxy.errors import GatewayError

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_SEQUENCE_KEY = b'"sequence_number"'
_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')


class ResponsesTap(WatchingTap):
    NOTABLE = (b"response.created", *(kind.encode() for kind in _TERMINAL), b'"type":"error"', b'"type": "error"')
    __slots__ = ("final", "next_sequence", "started")

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.started: dict[str, Any] | None = None  # the response object as response.created showed it
        self.final: dict[str, Any] | None = None
        self.next_sequence = 0  # one past the upstream's last sequence_number

    def _watch(self, chunk: bytes) -> bytes:
        # Whole lines only, and the key can only be a key (a JSON string escapes its
        # quotes): the last one in a chunk is its highest number.
        at = chunk.rfind(_SEQUENCE_KEY)
        while at != -1:
            if found := _SEQUENCE.match(chunk, at):
                self.next_sequence = max(self.next_sequence, int(found.group(1)) + 1)
                break
            at = chunk.rfind(_SEQUENCE_KEY, 0, at)
        return super()._watch(chunk)

    def error_frame(self, error: GatewayError) -> bytes:
        """The gateway's own end of a broken stream, numbered after the upstream's events."""
        return response.failure_events(error, self.next_sequence, self.started)

    def inspect(self, data: bytes) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "error":
            self.error = True
        elif kind == "response.created" and isinstance(event.get("response"), dict):
            self.started = event["response"]
        elif kind in _TERMINAL:
            self.done = True
            self.error |= kind == "response.failed"
            self.final = event.get("response")
            wire = (self.final or {}).get("usage")
            try:
                self.usage = response.usage_from_wire(msgspec.convert(wire, response.WireUsage)) if wire else None
            except msgspec.ValidationError:
                self.usage = None
            self.usage_final = self.usage is not None
