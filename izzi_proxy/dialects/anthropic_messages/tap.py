"""The passthrough tap for Anthropic streams: usage from ``message_start`` and
``message_delta``, the end at ``message_stop``, an ``error`` event noticed. Nothing is
ever hidden (Anthropic always reports usage), so every chunk goes on as it came."""

from __future__ import annotations

import msgspec

from izzi_proxy.dialects import WatchingTap
from izzi_proxy.dialects.anthropic_messages.response import WireUsage, merge_usage, stream_error
from izzi_proxy.errors import GatewayError


class _Message(msgspec.Struct):
    usage: WireUsage | None = None


class _Event(msgspec.Struct):
    type: str
    message: _Message | None = None
    usage: WireUsage | None = None


class AnthropicTap(WatchingTap):
    NOTABLE = (b"message_start", b"message_delta", b"message_stop", b"error")
    __slots__ = ()

    def error_frame(self, error: GatewayError) -> bytes:
        return stream_error(error)

    def inspect(self, data: bytes) -> None:
        try:
            event = msgspec.json.decode(data, type=_Event)
        except msgspec.MsgspecError:
            return
        if event.type == "message_start" and event.message is not None:
            self.usage = merge_usage(self.usage, event.message.usage)
        elif event.type == "message_delta":
            self.usage = merge_usage(self.usage, event.usage)
            self.usage_final = self.usage is not None
        elif event.type == "message_stop":
            self.done = True
        elif event.type == "error":
            self.error = True
