"""Client dialects: the formats clients speak to the gateway.

A dialect knows its request schema, its answer and stream shapes and its error shape; it
knows no upstream. How an upstream speaks is its wire format (``izzi_proxy.wires``): the
core's three dialect packages each hold the wire format of the same name too, so N
formats need N translators to and from the canonical form, shared by clients and upstreams.

Each route is served in exactly one dialect, so the errors middleware renders any
failure in the shape the client expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects.echo import ModelEcho
from izzi_proxy.errors import GatewayError


@dataclass(slots=True)
class ParsedRequest:
    """A client body, parsed once and validated: the raw dict plus what routing needs."""

    body: dict[str, Any]
    model: str
    stream: bool
    typed: Any = None  # the dialect's validated view of the body
    max_output_tokens: int | None = None  # what the client allows the answer (None: not said)
    raw: bytes = b""  # what the model reads, as the client sent it (the hold's input estimate)
    stream_type: str = "text/event-stream; charset=utf-8"  # a stream's Content-Type


class StreamTap(Protocol):
    """Turns upstream stream bytes into client stream bytes, chunk by chunk.

    In passthrough it reads the stream as it goes by and changes as little as it can: the
    model's name (``echo``), and an event the gateway asked for that the client did not.
    A translating tap decodes, translates and re-encodes. ``done`` says the stream ended
    properly, ``error`` that an in-stream error was relayed, ``usage_final`` that ``usage``
    is the answer's whole usage (not yet, e.g., Anthropic's ``message_start`` figures).
    ``final`` is the answer's final object where the client's format has one (Responses'
    ``response.completed``), and ``error_frame`` the client's in-stream error, numbered
    after what went out where the format numbers its events.
    """

    usage: c.Usage | None
    usage_final: bool
    done: bool
    error: bool
    final: dict[str, Any] | None

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...
    def error_frame(self, error: GatewayError) -> bytes: ...


class WatchingTap:
    """A passthrough tap that changes nothing but the model's name (``echo.ModelEcho``): it
    reads the lines of the chunks that hold one of ``NOTABLE`` with ``inspect``, and lets
    every chunk go on as it came. Anthropic's and Responses' streams need nothing hidden."""

    NOTABLE: tuple[bytes, ...] = ()
    MODEL_FIELD = "model"  # the key that names the model in the format's events
    final: dict[str, Any] | None = None
    __slots__ = ("_echo", "_lines", "done", "error", "usage", "usage_final")

    def __init__(self, model: str) -> None:
        self._echo = ModelEcho(model, self.MODEL_FIELD)
        self._lines = sse.LineSplitter()
        self.usage: c.Usage | None = None
        self.usage_final = False
        self.done = False
        self.error = False

    def feed(self, chunk: bytes) -> bytes:
        return self._watch(self._echo.feed(chunk))

    def _watch(self, chunk: bytes) -> bytes:
        """Whole lines (or the stream's unterminated last line), as they go on."""
        if self._lines.after_cr or any(word in chunk for word in self.NOTABLE):
            for line in self._lines.feed(chunk):
                if line.startswith(b"data:") and any(word in line for word in self.NOTABLE):
                    self.inspect(line[5:])
        return chunk

    def finish(self) -> bytes:
        out = self._watch(self._echo.finish())
        for line in self._lines.finish():
            if line.startswith(b"data:"):
                self.inspect(line[5:])
        return out

    def inspect(self, data: bytes) -> None:
        """A notable event's data (the bytes after ``data:``)."""
        raise NotImplementedError

    def error_frame(self, error: GatewayError) -> bytes:
        raise NotImplementedError


class StreamRenderer(Protocol):
    """Writes canonical events as the client's stream frames (``final`` and
    ``error_frame`` as for ``StreamTap``)."""

    final: dict[str, Any] | None

    def render(self, event: c.StreamEvent) -> bytes: ...
    def error_frame(self, error: GatewayError) -> bytes: ...


class ClientDialect(Protocol):
    name: str  # the format's name; an upstream of the wire format of this name passes through
    model_field: str  # the answer's key that names the model (echoed as the client asked it)

    # the client side
    def parse(self, raw: bytes) -> ParsedRequest: ...
    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]: ...
    def to_canonical(self, parsed: ParsedRequest) -> c.Request: ...
    def render_response(self, resp: c.Response, parsed: ParsedRequest) -> bytes: ...
    def stream_renderer(self, parsed: ParsedRequest) -> StreamRenderer: ...
    def error_body(self, error: GatewayError) -> dict[str, Any]: ...
    def stream_error(self, error: GatewayError) -> bytes: ...

    # passthrough (client and upstream speak this format)
    def upstream_body(self, parsed: ParsedRequest, upstream_model: str) -> dict[str, Any]: ...
    def stream_tap(self, parsed: ParsedRequest) -> StreamTap: ...
    def usage_of_body(self, body: bytes) -> c.Usage | None: ...


def data_url(media_type: str | None, data: str | None) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{data or ''}"


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:…;base64,…`` URL, or None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return header.removesuffix(";base64") or "application/octet-stream", data
