"""OpenAI Chat Completions: ``POST /v1/chat/completions``.

Requests are decoded once into a dict (forwarded with unknown fields untouched) and
validated with msgspec Structs, whose errors name the field (``$.messages[0].role``).
In passthrough the upstream's SSE bytes go to the client as they come; the tap reads
usage from the one chunk that carries it and, when the gateway (not the client) asked
for that chunk, keeps it from the client.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
import orjson

from izzi_proxy import sse
from izzi_proxy.canonical import Usage
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.errors import GatewayError, InvalidRequest

# -- request schema: what we check; every other field passes through untouched ---------


class _ImageURL(msgspec.Struct):
    url: str
    detail: str | None = None


class _ContentPart(msgspec.Struct):
    type: str
    text: str | None = None
    image_url: _ImageURL | None = None


class _Function(msgspec.Struct):
    name: str
    arguments: str


class _ToolCall(msgspec.Struct):
    id: str
    function: _Function
    type: str = "function"


class _Message(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_ContentPart] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None


class _FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _Tool(msgspec.Struct):
    type: str
    function: _FunctionDef | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct):
    model: str
    messages: list[_Message]
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[_Tool] | None = None


_AT = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_PART_NEEDS = {"text": "text", "image_url": "image_url"}


def _invalid(exc: msgspec.MsgspecError) -> InvalidRequest:
    """A 400 whose ``param`` is the offending field's path, e.g. ``messages[0].role``."""
    text = str(exc)
    at = m.group(1) if (m := _AT.search(text)) else ""
    if missing := _MISSING.search(text):
        at = f"{at}.{missing.group(1)}" if at else missing.group(1)
    return InvalidRequest(f"Invalid request body: {text}", param=at or None)


class OpenAIChat:
    name = "openai_chat"

    def parse(self, raw: bytes) -> ParsedRequest:
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidRequest("Request body must be a JSON object")
        try:
            req = msgspec.convert(body, ChatRequest)
        except msgspec.ValidationError as exc:
            raise _invalid(exc) from None
        if not req.messages:
            raise InvalidRequest("`messages` must hold at least one message", param="messages")
        for i, message in enumerate(req.messages):
            if isinstance(message.content, list):
                for j, part in enumerate(message.content):
                    needed = _PART_NEEDS.get(part.type)
                    if needed and getattr(part, needed) is None:
                        raise InvalidRequest(
                            f"Content part of type {part.type!r} needs `{needed}`",
                            param=f"messages[{i}].content[{j}].{needed}",
                        )
        if req.n is not None and req.n < 1:
            raise InvalidRequest("`n` must be at least 1", param="n")
        return ParsedRequest(body=body, model=req.model, stream=bool(req.stream))

    def upstream_body(self, parsed: ParsedRequest, upstream_model: str) -> dict[str, Any]:
        body = {**parsed.body, "model": upstream_model}
        if parsed.stream and not self._client_wants_usage(parsed):
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return body

    def stream_tap(self, parsed: ParsedRequest) -> OpenAIChatTap:
        return OpenAIChatTap(hide_usage=not self._client_wants_usage(parsed))

    @staticmethod
    def _client_wants_usage(parsed: ParsedRequest) -> bool:
        options = parsed.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    def usage_of_body(self, body: bytes) -> Usage | None:
        try:
            return _usage(msgspec.json.decode(body, type=_UsageCarrier).usage)
        except msgspec.MsgspecError:
            return None

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return {
            "error": {
                "type": error.type,
                "message": error.message,
                "param": error.param,
                "code": error.code,
            }
        }

    def stream_error(self, error: GatewayError) -> bytes:
        return sse.encode(orjson.dumps(self.error_body(error)))


# -- the passthrough tap ------------------------------------------------------------------


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class _OpenAIUsage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None


class _UsageCarrier(msgspec.Struct):
    usage: _OpenAIUsage | None = None
    choices: list[msgspec.Raw] | None = None


def _usage(u: _OpenAIUsage | None) -> Usage | None:
    if u is None:
        return None
    cached = (u.prompt_tokens_details and u.prompt_tokens_details.cached_tokens) or 0
    reasoning = (u.completion_tokens_details and u.completion_tokens_details.reasoning_tokens) or 0
    return Usage(
        input_tokens=max((u.prompt_tokens or 0) - cached, 0),
        output_tokens=u.completion_tokens or 0,
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
    )


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

    __slots__ = ("_dropped", "_hide", "_lines", "done", "error", "usage")

    def __init__(self, hide_usage: bool) -> None:
        self._hide = hide_usage
        self._dropped = False  # the last line was dropped: drop the blank line ending its event
        self._lines = sse.LineSplitter()
        self.usage: Usage | None = None
        self.done = False
        self.error = False

    def feed(self, chunk: bytes) -> bytes:
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
        """At the stream's end: an unterminated last line (already sent unless hiding)."""
        rest = [out for line in self._lines.finish() if (out := self._inspect(line)) is not None]
        if not self._hide:
            return b""
        return b"\n".join(rest) + b"\n" if rest else b""

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
                carrier = msgspec.json.decode(payload, type=_UsageCarrier)
            except msgspec.MsgspecError:
                return line
            if carrier.usage is None:
                return line  # a nested "usage" (e.g. Groq's x_groq), not the chunk's own
            self.usage = _usage(carrier.usage)
            if self._hide:
                if not carrier.choices:
                    self._dropped = True
                    return None  # the extra chunk the gateway asked for
                data = orjson.loads(payload)
                del data["usage"]
                return b"data: " + orjson.dumps(data)
        return line


OPENAI_CHAT = OpenAIChat()
