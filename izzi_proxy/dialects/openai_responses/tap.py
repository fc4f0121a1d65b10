"""The passthrough tap for Responses streams: the final response object (for the gateway's
store and usage) from ``response.completed`` / ``response.incomplete`` / ``response.failed``,
an ``error`` event noticed. Every chunk goes on as it came."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects.openai_responses import response
from izzi_proxy.errors import GatewayError

_FINAL = (b"response.completed", b"response.incomplete", b"response.failed")
_NOTABLE = (*_FINAL, b'"type":"error"', b'"type": "error"')


class ResponsesTap:
    __slots__ = ("_lines", "done", "error", "events", "final", "usage")

    def __init__(self) -> None:
        self._lines = sse.LineSplitter()
        self.usage: c.Usage | None = None
        self.final: dict[str, Any] | None = None
        self.done = False
        self.error = False
        self.events = 0  # seen so far: the next sequence_number, for an error of our own

    def feed(self, chunk: bytes) -> bytes:
        self.events += chunk.count(b"event:")
        clean = not (self._lines.pending or self._lines.after_cr) and chunk.endswith(b"\n")
        if not clean or any(word in chunk for word in _NOTABLE):
            for line in self._lines.feed(chunk):
                self._inspect(line)
        return chunk

    def finish(self) -> bytes:
        for line in self._lines.finish():
            self._inspect(line)
        return b""

    def error_frame(self, error: GatewayError) -> bytes:
        return response.error_event(error, self.events)

    def _inspect(self, line: bytes) -> None:
        if not line.startswith(b"data:") or not any(word in line for word in _NOTABLE):
            return
        try:
            event = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "error":
            self.error = True
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.done = True
            self.error |= kind == "response.failed"
            self.final = event.get("response")
            wire = (self.final or {}).get("usage")
            try:
                self.usage = response.usage_from_wire(msgspec.convert(wire, response.WireUsage)) if wire else None
            except msgspec.ValidationError:
                self.usage = None
