"""The translating tap: an upstream stream in one format, the client's stream in another.

Upstream bytes are split into SSE events, read as canonical events by the upstream
format's parser and written by the client dialect's renderer, chunk by chunk, so a
translated stream keeps the upstream's pace and holds at most one unfinished line.
"""

from __future__ import annotations

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects import StreamRenderer
from izzi_proxy.errors import GatewayError
from izzi_proxy.wires import StreamParser


class TranslatingTap:
    __slots__ = ("_events", "_failure", "_lines", "_parser", "_renderer", "error")

    def __init__(self, parser: StreamParser, renderer: StreamRenderer) -> None:
        self._parser, self._renderer = parser, renderer
        self._lines, self._events = sse.LineSplitter(), sse.EventDecoder()
        self._failure: GatewayError | None = None
        self.error = False  # an upstream error event raises UpstreamError instead

    @property
    def usage(self) -> c.Usage | None:
        return self._parser.usage

    @property
    def usage_final(self) -> bool:
        return self._parser.usage_final

    @property
    def done(self) -> bool:
        return self._parser.done

    def error_frame(self, error: GatewayError) -> bytes:
        return self._renderer.error_frame(error)

    @property
    def final(self) -> dict | None:
        return self._renderer.final

    def feed(self, chunk: bytes) -> bytes:
        return self._translate(self._lines.feed(chunk))

    def finish(self) -> bytes:
        return self._translate([*self._lines.finish(), b""])

    def _translate(self, lines) -> bytes:
        """The client's bytes for these lines. An upstream error among them is raised on the
        next call, so what was translated before it in the same chunk still gets sent."""
        if self._failure is not None:
            raise self._failure
        out = []
        for line in lines:
            if (event := self._events.decode_line(line)) is None:
                continue
            try:
                events = self._parser.feed(event)
            except GatewayError as err:
                self._failure = err
                break
            out.extend(self._renderer.render(e) for e in events)
        return b"".join(out)
