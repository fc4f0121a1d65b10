"""Gemini answers: ``GenerateContentResponse`` objects, plain and streamed, to and from the
canonical form; Google's error envelope.

A Gemini stream is a sequence of whole ``GenerateContentResponse`` objects, as SSE
(``?alt=sse``: ``data: {…}`` frames) or as one JSON array written as it goes. Text comes as
it is generated, a function call whole in one object, and the finish reason with the usage
in the last. There is no terminal event: the stream is complete once the finish reason is out.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import msgspec
import orjson

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects.anthropic_messages.request import tool_input
from izzi_proxy.dialects.gemini import signatures
from izzi_proxy.errors import GatewayError, UpstreamError
from izzi_proxy.masking import mask_secrets

MODEL_FIELD = "modelVersion"  # the key that names the model in every answer and stream object

# -- errors ------------------------------------------------------------------------------------

# Google's canonical status names (google.rpc.Code), by the gateway's HTTP statuses.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT",
    426: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip


def error_body(error: GatewayError) -> dict[str, Any]:
    """Google's envelope, with the gateway's error type as an ``ErrorInfo`` reason (so a
    client can tell ``insufficient_balance`` from ``quota_exceeded``)."""
    info: dict[str, Any] = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": (error.code or error.type).upper(),
        "domain": "izzi",
        "metadata": {"type": error.type} | ({"param": error.param} if error.param else {}),
    }
    status = STATUS_NAMES.get(error.status, "UNKNOWN" if error.status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": error.status, "message": error.message, "status": status, "details": [info]}}


# -- usage -------------------------------------------------------------------------------------


class WireUsage(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int = 0
    tool_use_prompt_token_count: int = 0


def usage_from_wire(wire: WireUsage | None) -> c.Usage | None:
    """Gemini's counts: ``promptTokenCount`` includes the cached part; thoughts are
    counted apart from ``candidatesTokenCount`` (the canonical output includes them)."""
    if wire is None:
        return None
    cached = wire.cached_content_token_count
    return c.Usage(
        input_tokens=max(0, wire.prompt_token_count + wire.tool_use_prompt_token_count - cached),
        output_tokens=wire.candidates_token_count + wire.thoughts_token_count,
        cache_read_tokens=cached,
        reasoning_tokens=wire.thoughts_token_count,
    )


def usage_to_wire(u: c.Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
        "totalTokenCount": u.total_tokens,
    }
    if u.cache_read_tokens:
        out["cachedContentTokenCount"] = u.cache_read_tokens
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    return out


# -- finish reasons ------------------------------------------------------------------------------

_REFUSALS = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE")


def stop_of(finish: str | None, calls: bool) -> c.StopReason:
    if finish == "MAX_TOKENS":
        return "max_tokens"
    if finish in _REFUSALS:
        return "refusal"
    return "tool_use" if calls else "end_turn"


def finish_of(stop: c.StopReason | None) -> str:
    if stop in ("max_tokens", "model_context_window_exceeded"):
        return "MAX_TOKENS"
    if stop == "refusal":
        return "SAFETY"
    return "STOP"


# -- reading Gemini answers (from a Gemini upstream) -------------------------------------------


class _WireCall(msgspec.Struct):
    name: str = ""
    args: dict[str, Any] | None = None
    id: str | None = None


class _WirePart(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    function_call: _WireCall | None = None


class _WireContent(msgspec.Struct):
    parts: list[_WirePart] = []


class _WireCandidate(msgspec.Struct, rename="camel"):
    content: _WireContent | None = None
    finish_reason: str | None = None


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class WireResponse(msgspec.Struct, rename="camel"):
    candidates: list[_WireCandidate] = []
    usage_metadata: WireUsage | None = None
    model_version: str = ""
    response_id: str = ""
    prompt_feedback: _PromptFeedback | None = None
    error: dict[str, Any] | None = None


def _call_id(call: _WireCall, response_id: str, n: int) -> str:
    return call.id or f"call_{response_id or secrets.token_hex(6)}_{n}"


def _arguments(args: dict[str, Any] | None, upstream: str) -> str:
    try:
        return orjson.dumps(args or {}).decode()
    except orjson.JSONEncodeError:
        raise UpstreamError(
            "The upstream's function call args are nested too deeply to relay", upstream=upstream
        ) from None


def parse_response(body: bytes, upstream: str) -> c.Response:
    try:
        wire = msgspec.json.decode(body, type=WireResponse)
    except msgspec.MsgspecError as exc:
        raise UpstreamError(
            f"Upstream {upstream!r} did not answer with a GenerateContentResponse: {exc}", upstream=upstream
        ) from None
    parts: list[c.Part] = []
    finish = None
    if wire.candidates:
        candidate = wire.candidates[0]
        finish = candidate.finish_reason
        for n, part in enumerate(candidate.content.parts if candidate.content else ()):
            if part.function_call is not None:
                call = part.function_call
                parts.append(
                    c.ToolCall(_call_id(call, wire.response_id, n), call.name, _arguments(call.args, upstream))
                )
            elif part.text is not None:
                parts.append(c.Thinking(part.text) if part.thought else c.Text(part.text))
    elif wire.prompt_feedback is not None and wire.prompt_feedback.block_reason:
        finish = "SAFETY"
    calls = any(isinstance(p, c.ToolCall) for p in parts)
    return c.Response(
        id=wire.response_id,
        model=wire.model_version,
        parts=parts,
        stop_reason=stop_of(finish, calls),
        usage=usage_from_wire(wire.usage_metadata) or c.Usage(),
    )


class StreamParser:
    """Reads a Gemini SSE stream (``?alt=sse``) as canonical events."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.usage: c.Usage | None = None
        self.usage_final = False
        self.done = False
        self._started = False
        self._open: tuple[int, str] | None = None  # the open block: index, "text" | "thinking"
        self._blocks = 0
        self._calls = 0

    def _close(self) -> list[c.StreamEvent]:
        if self._open is None:
            return []
        index, self._open = self._open[0], None
        return [c.BlockStop(index)]

    def _text(self, kind: str, text: str) -> list[c.StreamEvent]:
        out: list[c.StreamEvent] = []
        if self._open is None or self._open[1] != kind:
            out += self._close()
            self._open = (self._blocks, kind)
            self._blocks += 1
            out.append(c.BlockStart(self._open[0], c.Thinking("") if kind == "thinking" else c.Text("")))
        out.append(c.Delta(self._open[0], kind, text))  # type: ignore[arg-type]
        return out

    def feed(self, event: sse.SSEEvent) -> list[c.StreamEvent]:
        if not event.data or self.done:
            return []
        try:
            wire = msgspec.json.decode(event.data, type=WireResponse)
        except msgspec.MsgspecError:
            return []
        if wire.error is not None:
            message = wire.error.get("message", event.data)
            raise UpstreamError(
                f"Upstream {self.upstream!r} failed mid-stream: {mask_secrets(str(message))}", upstream=self.upstream
            )
        out: list[c.StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(c.Start(wire.response_id, wire.model_version))
        if wire.usage_metadata is not None:
            self.usage = usage_from_wire(wire.usage_metadata)
        finish = None
        if wire.candidates:
            candidate = wire.candidates[0]
            finish = candidate.finish_reason
            for part in candidate.content.parts if candidate.content else ():
                if part.function_call is not None:
                    call = part.function_call
                    out += self._close()
                    index, self._blocks = self._blocks, self._blocks + 1
                    call_id = _call_id(call, wire.response_id, self._calls)
                    self._calls += 1
                    out.append(c.BlockStart(index, c.ToolCall(call_id, call.name, "")))
                    out.append(c.Delta(index, "arguments", _arguments(call.args, self.upstream)))
                    out.append(c.BlockStop(index))
                elif part.text:
                    out += self._text("thinking" if part.thought else "text", part.text)
        elif wire.prompt_feedback is not None and wire.prompt_feedback.block_reason:
            finish = "SAFETY"
        if finish:
            out += self._close()
            out.append(c.Finish(stop_of(finish, self._calls > 0)))
            if self.usage is not None:
                self.usage_final = True
                out.append(c.UsageUpdate(self.usage))
            out.append(c.End())
            self.done = True
        return out


# -- writing Gemini answers (for a Gemini client) ----------------------------------------------


def response_id(upstream_id: str) -> str:
    return upstream_id.removeprefix("chatcmpl-").removeprefix("msg_").removeprefix("resp_") or secrets.token_hex(12)


def _wire_part(part: c.Part, thoughts: bool) -> dict[str, Any] | None:
    if isinstance(part, c.Text):
        return {"text": part.text}
    if isinstance(part, c.Thinking):
        return {"text": part.text, "thought": True} if thoughts and part.text else None
    if isinstance(part, c.ToolCall):
        return {"functionCall": {"id": part.id, "name": part.name, "args": tool_input(part.arguments)}}
    return None


def _candidate(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return candidate


def render_response(resp: c.Response, model: str, thoughts: bool) -> bytes:
    parts = [p for part in resp.parts if (p := _wire_part(part, thoughts)) is not None]
    thinking = [p for p in resp.parts if isinstance(p, c.Thinking | c.RedactedThinking)]
    first_call = next((p for p in parts if "functionCall" in p), None)
    if first_call is not None and (carrying := signatures.carry(thinking)):
        first_call["thoughtSignature"] = carrying
    return orjson.dumps(
        {
            "candidates": [_candidate(parts, finish_of(resp.stop_reason))],
            "usageMetadata": usage_to_wire(resp.usage),
            MODEL_FIELD: model,
            "responseId": response_id(resp.id),
        }
    )


class Framing:
    """How a stream's objects are written: SSE frames (``data: {…}`` and a blank line, with
    CRLFs as Google writes them), or the elements of one JSON array."""

    __slots__ = ("_opened", "sse")

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self._opened = False

    @property
    def content_type(self) -> str:
        return "text/event-stream; charset=utf-8" if self.sse else "application/json; charset=utf-8"

    def frame(self, data: bytes) -> bytes:
        if self.sse:
            return b"data: " + data + b"\r\n\r\n"
        lead = b",\r\n" if self._opened else b"["
        self._opened = True
        return lead + data

    def close(self) -> bytes:
        """The end of the stream (the array's ``]``)."""
        if self.sse:
            return b""
        return b"]" if self._opened else b"[]"

    def error(self, error: GatewayError) -> bytes:
        """An in-stream error, as the last object of the stream."""
        return self.frame(orjson.dumps(error_body(error))) + self.close()


class StreamRenderer:
    """Writes canonical events as a Gemini stream: each piece of text as it comes, each
    function call whole once its arguments are complete, the finish with the usage last."""

    final = None

    def __init__(self, model: str, framing: Framing, thoughts: bool) -> None:
        self.model = model
        self._framing = framing
        self._thoughts = thoughts
        self._id = ""
        self._calls: dict[int, c.ToolCall] = {}  # open function calls by canonical index
        self._thinking: dict[int, c.Thinking | c.RedactedThinking] = {}  # for the first call's signature
        self._carried = False
        self._finish: c.StopReason | None = None
        self._usage = c.Usage()

    def error_frame(self, error: GatewayError) -> bytes:
        return self._framing.error(error)

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None) -> bytes:
        data: dict[str, Any] = {"candidates": [_candidate(parts, finish)]}
        if finish is not None:
            data["usageMetadata"] = usage_to_wire(self._usage)
        data[MODEL_FIELD] = self.model
        data["responseId"] = self._id
        return self._framing.frame(orjson.dumps(data))

    def render(self, event: c.StreamEvent) -> bytes:
        if isinstance(event, c.Delta):
            if event.kind == "text":
                return self._chunk([{"text": event.value}]) if event.value else b""
            block = self._thinking.get(event.index)
            if isinstance(block, c.Thinking):
                if event.kind == "thinking":
                    block.text += event.value
                elif event.kind == "signature":
                    block.signature = (block.signature or "") + event.value
            if event.kind == "thinking":
                return self._chunk([{"text": event.value, "thought": True}]) if self._thoughts and event.value else b""
            if event.kind == "arguments" and (call := self._calls.get(event.index)) is not None:
                call.arguments += event.value
            return b""
        if isinstance(event, c.BlockStart):
            part = event.part
            if isinstance(part, c.ToolCall):
                self._calls[event.index] = c.ToolCall(part.id, part.name, "")
            elif isinstance(part, c.Thinking):
                self._thinking[event.index] = c.Thinking(part.text, part.signature)
            elif isinstance(part, c.RedactedThinking):
                self._thinking[event.index] = part
            return b""
        if isinstance(event, c.BlockStop):
            call = self._calls.pop(event.index, None)
            if call is None:
                return b""
            wire: dict[str, Any] = _wire_part(call, False)  # type: ignore[assignment]
            if not self._carried and (carrying := signatures.carry(list(self._thinking.values()))):
                wire["thoughtSignature"], self._carried = carrying, True
            return self._chunk([wire])
        if isinstance(event, c.Start):
            self._id = response_id(event.id)
            if event.usage is not None:
                self._usage = event.usage
            return b""
        if isinstance(event, c.Finish):
            self._finish = event.stop_reason
            return b""
        if isinstance(event, c.UsageUpdate):
            self._usage = dataclasses.replace(event.usage)
            return b""
        if isinstance(event, c.End):
            return self._chunk([{"text": ""}], finish_of(self._finish)) + self._framing.close()
        return b""
