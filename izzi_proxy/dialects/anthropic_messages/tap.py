"""The passthrough tap for Anthropic streams: usage from ``message_start`` and
``message_delta``, the end at ``message_stop``, an ``error`` event noticed. Nothing is
ever hidden (Anthropic always reports usage), so every chunk goes on as it came."""

from __future__ import annotations

import msgspec

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects.anthropic_messages.response import WireUsage, merge_usage


class _Message(msgspec.Struct):
    usage: WireUsage | None = None


class _Event(msgspec.Struct):
    type: str
    message: _Message | None = None
    usage: WireUsage | None = None


_NOTABLE = (b"message_start", b"message_delta", b"message_stop", b"error")


class AnthropicTap:
    __slots__ = ("_lines", "done", "error", "usage")

    def __init__(self) -> None:
        self._lines = sse.LineSplitter()
        self.usage: c.Usage | None = None
        self.done = False
        self.error = False

    def feed(self, chunk: bytes) -> bytes:
        """``chunk`` itself, always; its lines are read only when one may matter."""
        clean = not (self._lines.pending or self._lines.after_cr) and chunk.endswith(b"\n")
        if not clean or any(word in chunk for word in _NOTABLE):
            for line in self._lines.feed(chunk):
                self._inspect(line)
        return chunk

    def finish(self) -> bytes:
        for line in self._lines.finish():
            self._inspect(line)
        return b""

    def _inspect(self, line: bytes) -> None:
        if not line.startswith(b"data:") or not any(word in line for word in _NOTABLE):
            return
        try:
            event = msgspec.json.decode(line[5:], type=_Event)
        except msgspec.MsgspecError:
            return
        if event.type == "message_start" and event.message is not None:
            self.usage = merge_usage(self.usage, event.message.usage)
        elif event.type == "message_delta":
            self.usage = merge_usage(self.usage, event.usage)
        elif event.type == "message_stop":
            self.done = True
        elif event.type == "error":
            self.error = True
