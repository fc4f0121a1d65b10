"""Every answer names the model the client asked for, not the upstream's name for it.

Clients compare the two: Claude Code drops the thinking blocks of a turn whose ``model``
differs from the one it asked for, and the next tool turn then fails Anthropic's
thinking-first rule. Translated answers are written with the asked name. Passthrough
answers are the upstream's own bytes: the upstream's ``"model":"<its name>"`` is learnt
from the first line that has one and replaced byte for byte, never by re-encoding JSON.
That byte sequence cannot occur inside a JSON string, whose quotes are escaped, so only a
``model`` key is ever changed; in a stream, every one with the learnt value (each OpenAI
chunk, Anthropic's ``message_start``, each Responses event holding the response object).
"""

from __future__ import annotations

import re

import orjson

_MODEL = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
_LINE_ENDS = (b"\n", b"\r")


def model_key(model: str) -> bytes:
    return b'"model":' + orjson.dumps(model)


class ModelEcho:
    """Renames the model in a passthrough stream, chunk by chunk. A chunk's unfinished last
    line is held back until its end arrives (no key is ever split across two chunks)."""

    __slots__ = ("_carry", "_new", "_old")

    def __init__(self, asked: str) -> None:
        self._new = model_key(asked)
        self._old: bytes | None = None  # the upstream's key and value, once seen
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk if self._carry else chunk
        if data.endswith(_LINE_ENDS):
            self._carry = b""
        else:
            end = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
            data, self._carry = data[:end], data[end:]
        return self._rename(data) if data else b""

    def finish(self) -> bytes:
        """An unterminated last line, at the stream's end."""
        rest, self._carry = self._carry, b""
        return self._rename(rest) if rest else b""

    def _rename(self, data: bytes) -> bytes:
        if self._old is None:
            if (found := _MODEL.search(data)) is None:
                return data
            self._old = found.group()
        return data.replace(self._old, self._new) if self._old != self._new else data


def echo_in_body(body: bytes, asked: str) -> bytes:
    """A plain answer with its (first) ``model`` key naming the asked model: the top-level
    one, which every API writes before the content."""
    found = _MODEL.search(body)
    if found is None:
        return body
    return body[: found.start()] + model_key(asked) + body[found.end() :]
