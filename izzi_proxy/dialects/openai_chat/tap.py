"""The passthrough tap for OpenAI chat streams.

The upstream's SSE bytes go to the client as they come, the model renamed to the client's
(``echo``); the tap reads usage from the one chunk that carries it and, when the gateway
(not the client) asked for that chunk, keeps it from the client.
"""

from __future__ import annotations

import re

import msgspec
import orjson

from izzi_proxy import sse
from izzi_proxy.canonical import Usage
from izzi_proxy.dialects.echo import ModelEcho
from izzi_proxy.dialects.openai_chat.response import WireUsage, stream_error, usage_from_wire
from izzi_proxy.errors import GatewayError


class UsageCarrier(msgspec.Struct):
    usage: WireUsage | None = None
    choices: list[msgspec.Raw] | None = None


_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_ERROR_FIRST = re.compile(rb'^\s*\{\s*"error"\s*:')


def _notable(chunk: bytes) -> bool:
    """Whether any line of ``chunk`` may matter: ``[DONE]``, an error, a non-null usage.

    Plain substring scans (a regex alternation costs four times as much): with usage asked
    for, every chunk carries ``"usage":null``, so a chunk is notable when it holds a
    ``"usage"`` that is not written exactly that way.
    """
    if b"[DONE]" in chunk or b'"error"' in chunk:
        return True
    usages = chunk.count(b'"usage"')
    return usages != 0 and usages != chunk.count(b'"usage":null')


class OpenAIChatTap:
    """Usage, end and error of an OpenAI chat stream, read from its lines as they pass."""

    __slots__ = ("_dropped", "_echo", "_hide", "_lines", "done", "error", "usage", "usage_final")
    final = None  # a chat stream has no final answer object

    def __init__(self, model: str, hide_usage: bool) -> None:
        self._echo = ModelEcho(model)
        self._hide = hide_usage
        self._dropped = False  # the last line was dropped: drop the blank line ending its event
        self._lines = sse.LineSplitter()
        self.usage: Usage | None = None
        self.usage_final = False  # OpenAI reports usage once, whole
        self.done = False
        self.error = False

    def feed(self, chunk: bytes) -> bytes:
        return self._pass(self._echo.feed(chunk))

    def error_frame(self, error: GatewayError) -> bytes:
        return stream_error(error)

    def _pass(self, chunk: bytes) -> bytes:
        """Whole lines (or the stream's unterminated last line), as they go on."""
        clean = not (self._lines.pending or self._lines.after_cr or self._dropped)
        if clean and chunk.endswith(b"\n") and not _notable(chunk):
            return chunk  # whole lines, nothing to read or hide: one scan, no split
        if not self._hide:
            for line in self._lines.feed(chunk):
                self._inspect(line)
            return chunk
        whole_lines = not (self._lines.pending or self._lines.after_cr) and chunk.endswith(b"\n")
        kept, changed = [], False
        for line in self._lines.feed(chunk):
            out = self._inspect(line)
            changed |= out is not line
            if out is not None:
                kept.append(out)
        if whole_lines and not changed:
            return chunk
        return b"\n".join(kept) + b"\n" if kept else b""

    def finish(self) -> bytes:
        """At the stream's end: an unterminated last line."""
        out = self._pass(self._echo.finish())  # sent as is unless hiding
        rest = [kept for line in self._lines.finish() if (kept := self._inspect(line)) is not None]
        if not self._hide:
            return out
        return out + b"\n".join(rest) + b"\n" if rest else out

    def _inspect(self, line: bytes) -> bytes | None:
        """The line to send on (``line`` itself, a rewrite, or None to drop it)."""
        if self._dropped:
            self._dropped = False
            if not line:
                return None
        if not line.startswith(b"data:"):
            return line
        payload = line[5:]
        if payload.strip() == b"[DONE]":
            self.done = True
        elif _ERROR_FIRST.match(payload):
            self.error = True
        elif b'"usage"' in payload and _USAGE_OBJECT.search(payload):
            try:
                carrier = msgspec.json.decode(payload, type=UsageCarrier)
            except msgspec.MsgspecError:
                return line
            if carrier.usage is None:
                return line  # a nested "usage" (e.g. Groq's x_groq), not the chunk's own
            self.usage = usage_from_wire(carrier.usage)
            self.usage_final = self.usage is not None
            if self._hide:
                if not carrier.choices:
                    self._dropped = True
                    return None  # the extra chunk the gateway asked for
                data = orjson.loads(payload)
                del data["usage"]
                return b"data: " + orjson.dumps(data)
        return line
