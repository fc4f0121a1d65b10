"""The passthrough taps for Gemini streams (client and upstream both speak Gemini).

The upstream is always asked for SSE (``?alt=sse``). A client that asked for SSE gets the
upstream's bytes as they came but for ``modelVersion`` (``GeminiTap``); one that asked for
Google's JSON array gets the same objects as the array's elements (``GeminiArrayTap``).
Both read each object's usage, finish reason and error on the way: the stream is complete
at the object with a finish reason (Gemini has no terminal event).
"""

from __future__ import annotations

import msgspec

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects import WatchingTap
from izzi_proxy.dialects.echo import ModelEcho
from izzi_proxy.dialects.gemini.response import MODEL_FIELD, Framing, WireUsage, usage_from_wire
from izzi_proxy.errors import GatewayError


class _Candidate(msgspec.Struct, rename="camel"):
    finish_reason: str | None = None


class _Feedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class _Notable(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] = []
    usage_metadata: WireUsage | None = None
    prompt_feedback: _Feedback | None = None
    error: dict | None = None


class _Watch:
    """What a Gemini stream's objects say about its end and usage."""

    __slots__ = ()
    usage: c.Usage | None
    usage_final: bool
    done: bool
    error: bool

    def read(self, data: bytes | str) -> None:
        try:
            event = msgspec.json.decode(data, type=_Notable)
        except msgspec.MsgspecError:
            return
        if event.error is not None:
            self.error = True
            return
        if event.usage_metadata is not None:
            self.usage = usage_from_wire(event.usage_metadata)
        blocked = event.prompt_feedback is not None and event.prompt_feedback.block_reason
        if blocked or any(candidate.finish_reason for candidate in event.candidates):
            self.done = True
            self.usage_final = self.usage is not None


class GeminiTap(_Watch, WatchingTap):
    NOTABLE = (b"usageMetadata", b"finishReason", b"blockReason", b'"error"')
    MODEL_FIELD = MODEL_FIELD
    __slots__ = ()

    def inspect(self, data: bytes) -> None:
        self.read(data)

    def error_frame(self, error: GatewayError) -> bytes:
        return Framing(sse=True).error(error)


class GeminiArrayTap(_Watch):
    """An SSE stream written as the elements of one JSON array."""

    final = None
    __slots__ = ("_echo", "_events", "_framing", "_lines", "done", "error", "usage", "usage_final")

    def __init__(self, model: str) -> None:
        self._echo = ModelEcho(model, MODEL_FIELD)
        self._framing = Framing(sse=False)
        self._lines, self._events = sse.LineSplitter(), sse.EventDecoder()
        self.usage: c.Usage | None = None
        self.usage_final = False
        self.done = False
        self.error = False

    def feed(self, chunk: bytes) -> bytes:
        return self._write(self._lines.feed(chunk))

    def finish(self) -> bytes:
        return self._write([*self._lines.finish(), b""]) + self._framing.close()

    def _write(self, lines) -> bytes:
        out = []
        for line in lines:
            event = self._events.decode_line(line)
            if event is None or not event.data:
                continue
            data = event.data.encode()
            self.read(data)
            out.append(self._framing.frame(self._echo.feed(data + b"\n").removesuffix(b"\n")))
        return b"".join(out)

    def error_frame(self, error: GatewayError) -> bytes:
        return self._framing.error(error)
