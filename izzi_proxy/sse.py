"""Server-sent events at the byte level.

Knows nothing about JSON or vendors. Lines end in CR, LF or CRLF (the SSE spec); they
are split on bytes, never with ``str.splitlines()``, which also splits on U+2028 and
friends that JSON strings may carry unescaped. A multi-byte UTF-8 character split across
two chunks is decoded only once its line is complete.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
# An event ends at an empty line: two line ends in a row, whatever their kind.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")


class LineSplitter:
    """Split a byte stream into lines (without their line ends), across chunk boundaries."""

    __slots__ = ("_buffer", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip_lf = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        start = 0
        view = memoryview(chunk)
        for match in _LINE_END.finditer(chunk):
            end = match.start()
            if self._skip_lf and end == start == 0 and chunk[0] == 10:
                # the LF of a CRLF whose CR ended the previous chunk
                self._skip_lf = False
                start = 1
                continue
            self._skip_lf = False
            if self._buffer:
                self._buffer += view[start:end]
                line = bytes(self._buffer)
                self._buffer.clear()
            else:
                line = chunk[start:end]
            start = match.end()
            if match.group() == b"\r" and start == len(chunk):
                self._skip_lf = True
            yield line
        if start < len(chunk):
            self._skip_lf = False
            self._buffer += view[start:]

    def finish(self) -> Iterator[bytes]:
        """The last line, if the stream did not end with a line end."""
        if self._buffer:
            line = bytes(self._buffer)
            self._buffer.clear()
            yield line

    @property
    def pending(self) -> int:
        """How many bytes of an unfinished line are held."""
        return len(self._buffer)

    @property
    def after_cr(self) -> bool:
        """The last chunk ended in CR: an LF starting the next one belongs to it."""
        return self._skip_lf


@dataclass(slots=True, frozen=True)
class SSEEvent:
    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None


class EventDecoder:
    """Turn lines into events, per the WHATWG event-stream interpretation."""

    __slots__ = ("_data", "_event", "_id", "_retry", "_started")

    def __init__(self) -> None:
        self._started = False
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def decode_line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            if self._event is None and not self._data and self._retry is None:
                return None
            event = SSEEvent(self._event, "\n".join(self._data), self._id, self._retry)
            self._event, self._data, self._retry = None, [], None
            return event
        if not self._started:
            self._started = True
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # one leading byte-order mark is ignored
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return None  # a comment or keep-alive
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None


async def aiter_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSEEvent]:
    """Decode a byte stream into events (used by translated streams, not by passthrough)."""
    lines, decoder = LineSplitter(), EventDecoder()
    async for chunk in chunks:
        for line in lines.feed(chunk):
            if (event := decoder.decode_line(line)) is not None:
                yield event
    for line in [*lines.finish(), b""]:
        if (event := decoder.decode_line(line)) is not None:
            yield event


def iter_events(data: bytes) -> Iterator[SSEEvent]:
    """Decode a complete block of SSE bytes (a stream's head, a test body)."""
    lines, decoder = LineSplitter(), EventDecoder()
    for line in [*lines.feed(data), *lines.finish(), b""]:
        if (event := decoder.decode_line(line)) is not None:
            yield event


def has_complete_event(buffer: bytes | bytearray) -> bool:
    """Whether ``buffer`` holds at least one event terminated by an empty line."""
    return _EVENT_END.search(buffer) is not None


def encode(data: str | bytes, event: str | None = None) -> bytes:
    """One SSE frame. ``data`` must not contain line ends (JSON from orjson never does)."""
    payload = data if isinstance(data, bytes) else data.encode()
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
