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

_PATTERNS: dict[str, re.Pattern[bytes]] = {}


def _pattern(field: str) -> re.Pattern[bytes]:
    """The key and string value of ``field`` (``model``; Gemini's ``modelVersion``)."""
    found = _PATTERNS.get(field)
    if found is None:
        found = _PATTERNS[field] = re.compile(b'"' + re.escape(field.encode()) + rb'"\s*:\s*"(?:[^"\\]|\\.)*"')
    return found


def model_key(model: str, field: str = "model") -> bytes:
    return b'"' + field.encode() + b'":' + orjson.dumps(model)


class ModelEcho:
    """Renames the model in a passthrough stream, chunk by chunk. A chunk's unfinished last
    line is held back until its end arrives (no key is ever split across two chunks)."""

    __slots__ = ("_carry", "_new", "_old", "_pattern")

    def __init__(self, asked: str, field: str = "model") -> None:
        self._pattern = _pattern(field)
        self._new = model_key(asked, field)
        self._old: bytes | None = None  # the upstream's key and value once seen; b"" if the same
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        if self._carry or not (chunk.endswith(b"\n") or chunk.endswith(b"\r")):
            chunk = self._whole_lines(chunk)
        return self._rename(chunk)

    def finish(self) -> bytes:
        """An unterminated last line, at the stream's end."""
        rest, self._carry = self._carry, b""
        return self._rename(rest)

    def _rename(self, data: bytes) -> bytes:
        old = self._old
        if old:  # the usual case: one scan in C, no copy where the key is absent
            return data.replace(old, self._new)
        return data if old is not None or not data else self._learn(data)

    def _whole_lines(self, chunk: bytes) -> bytes:
        data = self._carry + chunk
        end = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        self._carry = data[end:]
        return data[:end]

    def _learn(self, data: bytes) -> bytes:
        if (found := self._pattern.search(data)) is None:
            return data
        self._old = b"" if found.group() == self._new else found.group()
        return data.replace(self._old, self._new) if self._old else data


def echo_in_body(body: bytes, asked: str, field: str = "model") -> bytes:
    """A plain answer with its (first) ``model`` key naming the asked model: the top-level
    one, which every API writes before the content (Gemini's ``modelVersion`` after it,
    but no content part has a key of that name)."""
    found = _pattern(field).search(body)
    if found is None:
        return body
    return body[: found.start()] + model_key(asked, field) + body[found.end() :]
