"""OpenAI chat answers: plain completions and stream chunks, to and from the canonical form.

Parsing reads an OpenAI-compatible upstream's answer (choice 0: the canonical form has no
``n``); rendering writes what an OpenAI client expects, thinking shown as
``reasoning_content`` (the field reasoning-aware OpenAI clients read), never in ``content``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import orjson

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects.tool_ids import openai_id
from izzi_proxy.errors import GatewayError, UpstreamConnectionError, UpstreamError
from izzi_proxy.masking import mask_secrets

FINISH_TO_STOP: dict[str, c.StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# -- usage -----------------------------------------------------------------------------------


class _Details(msgspec.Struct):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_write_tokens: int | None = None


class WireUsage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None


def usage_from_wire(u: WireUsage | None) -> c.Usage | None:
    if u is None:
        return None
    cached = (u.prompt_tokens_details and u.prompt_tokens_details.cached_tokens) or 0
    written = (u.prompt_tokens_details and u.prompt_tokens_details.cache_write_tokens) or 0
    reasoning = (u.completion_tokens_details and u.completion_tokens_details.reasoning_tokens) or 0
    return c.Usage(
        input_tokens=max((u.prompt_tokens or 0) - cached - written, 0),
        output_tokens=u.completion_tokens or 0,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
    )


def usage_to_wire(u: c.Usage) -> dict[str, Any]:
    """OpenAI's usage object; cache writes (an Anthropic notion) ride in the details."""
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


# -- plain answers -----------------------------------------------------------------------------


class _WireFunction(msgspec.Struct):
    name: str = ""
    arguments: str = ""


class _WireToolCall(msgspec.Struct):
    id: str = ""
    function: _WireFunction = msgspec.field(default_factory=_WireFunction)
    index: int | None = None


class _WireMessage(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # OpenRouter's name for it
    refusal: str | None = None
    tool_calls: list[_WireToolCall] | None = None


class _WireChoice(msgspec.Struct):
    message: _WireMessage | None = None
    delta: _WireMessage | None = None
    finish_reason: str | None = None
    index: int = 0


class _WireCompletion(msgspec.Struct):
    id: str = ""
    model: str = ""
    choices: list[_WireChoice] = []
    usage: WireUsage | None = None
    error: dict[str, Any] | None = None


def parse_response(body: bytes) -> c.Response:
    try:
        wire = msgspec.json.decode(body, type=_WireCompletion)
    except msgspec.MsgspecError as exc:
        raise UpstreamError(f"The upstream's answer is not an OpenAI chat completion: {exc}", upstream="-") from None
    choice = next((ch for ch in wire.choices if ch.index == 0), None)
    parts: list[c.Part] = []
    message = choice.message if choice is not None else None
    if message is not None:
        if thinking := message.reasoning_content or message.reasoning:
            parts.append(c.Thinking(thinking))
        if text := message.content or message.refusal:
            parts.append(c.Text(text))
        parts += [c.ToolCall(t.id, t.function.name, t.function.arguments) for t in message.tool_calls or ()]
    finish = choice.finish_reason if choice is not None else None
    return c.Response(
        id=wire.id,
        model=wire.model,
        parts=parts,
        stop_reason=FINISH_TO_STOP.get(finish or "", "end_turn"),
        usage=usage_from_wire(wire.usage) or c.Usage(),
    )


def completion_id(upstream_id: str) -> str:
    return "chatcmpl-" + upstream_id.removeprefix("msg_").removeprefix("chatcmpl-")


def render_response(resp: c.Response, model: str) -> bytes:
    text = "".join(p.text for p in resp.parts if isinstance(p, c.Text))
    thinking = "".join(p.text for p in resp.parts if isinstance(p, c.Thinking))
    calls = [
        {"id": openai_id(p.id), "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
        for p in resp.parts
        if isinstance(p, c.ToolCall)
    ]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text or None,
        "refusal": None,
        "annotations": [],
    }
    if thinking:
        message["reasoning_content"] = thinking
    if calls:
        message["tool_calls"] = calls
    finish = STOP_TO_FINISH.get(resp.stop_reason or "end_turn", "stop")
    return orjson.dumps(
        {
            "id": completion_id(resp.id),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage_to_wire(resp.usage),
        }
    )


# -- streams: chunks -> canonical events -------------------------------------------------------


class StreamParser:
    """Reads an OpenAI-compatible stream (choice 0) as canonical events."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.usage: c.Usage | None = None
        self.usage_final = False
        self.done = False
        self._started = False
        self._open: int | None = None  # index of the block being written
        self._kind: str | None = None  # "text" | "thinking" | "tool"
        self._blocks = 0
        self._tools: dict[int, int] = {}  # OpenAI tool index -> block index
        self._finish: str | None = None

    def feed(self, event: sse.SSEEvent) -> list[c.StreamEvent]:
        if event.data == "[DONE]":
            self.done = True
            return [*self._close(), *self._finish_events(), c.End()]
        try:
            chunk = msgspec.json.decode(event.data, type=_WireCompletion)
        except msgspec.MsgspecError:
            return []  # a keep-alive or a vendor's extra event
        if chunk.error is not None:
            raise UpstreamError(
                f"Upstream {self.upstream!r} failed mid-stream: {mask_secrets(str(chunk.error.get('message', '')))}",
                upstream=self.upstream,
            )
        out: list[c.StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(c.Start(chunk.id, chunk.model))
        if chunk.usage is not None:
            self.usage = usage_from_wire(chunk.usage)
            self.usage_final = self.usage is not None
        for choice in chunk.choices:
            if choice.index != 0 or choice.delta is None:
                continue
            delta = choice.delta
            if thinking := delta.reasoning_content or delta.reasoning:
                out += self._write("thinking", thinking)
            if text := delta.content or delta.refusal:
                out += self._write("text", text)
            for call in delta.tool_calls or ():
                out += self._tool(call)
            if choice.finish_reason:
                self._finish = choice.finish_reason
        return out

    def end_of_stream(self) -> None:
        if not self.done:
            raise UpstreamConnectionError(
                "The upstream ended the stream before it was complete", upstream=self.upstream
            )

    def _close(self) -> list[c.StreamEvent]:
        if self._open is None:
            return []
        index, self._open, self._kind = self._open, None, None
        return [c.BlockStop(index)]

    def _begin(self, kind: str, part: c.Text | c.Thinking | c.ToolCall) -> list[c.StreamEvent]:
        out = self._close()
        self._open, self._kind = self._blocks, kind
        self._blocks += 1
        return [*out, c.BlockStart(self._open, part)]

    def _write(self, kind: str, value: str) -> list[c.StreamEvent]:
        out = [] if self._kind == kind else self._begin(kind, c.Text("") if kind == "text" else c.Thinking(""))
        assert self._open is not None
        return [*out, c.Delta(self._open, kind, value)]  # type: ignore[arg-type]

    def _tool(self, call: _WireToolCall) -> list[c.StreamEvent]:
        key = call.index if call.index is not None else len(self._tools)
        out: list[c.StreamEvent] = []
        if key not in self._tools:
            out = self._begin("tool", c.ToolCall(call.id, call.function.name, ""))
            assert self._open is not None
            self._tools[key] = self._open
        block = self._tools[key]
        if call.function.arguments and block == self._open:
            out.append(c.Delta(block, "arguments", call.function.arguments))
        return out

    def _finish_events(self) -> list[c.StreamEvent]:
        out: list[c.StreamEvent] = [c.Finish(FINISH_TO_STOP.get(self._finish or "", "end_turn"))]
        if self.usage is not None:
            out.append(c.UsageUpdate(self.usage))
        return out


# -- streams: canonical events -> chunks --------------------------------------------------------


def error_body(error: GatewayError) -> dict[str, Any]:
    return {"error": {"type": error.type, "message": error.message, "param": error.param, "code": error.code}}


def stream_error(error: GatewayError) -> bytes:
    """An error after the first byte: a ``data: {"error": …}`` event (the SDK's ``APIError``)."""
    return sse.encode(orjson.dumps(error_body(error)))


class StreamRenderer:
    """Writes canonical events as an OpenAI chat stream for the client."""

    final = None  # a chat stream has no final answer object

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = "chatcmpl-"
        self.created = int(time.time())
        self._tools: dict[int, int] = {}  # block index -> OpenAI tool index
        self._finish: str | None = None
        self._usage: c.Usage | None = None

    def error_frame(self, error: GatewayError) -> bytes:
        return stream_error(error)

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None) -> bytes:
        """One chunk; ``delta`` None makes the usage chunk (no choices)."""
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            data["usage"] = usage
        return sse.encode(orjson.dumps(data))

    def render(self, event: c.StreamEvent) -> bytes:
        if isinstance(event, c.Delta):
            if event.kind == "text":
                return self._chunk({"content": event.value})
            if event.kind == "thinking":
                return self._chunk({"reasoning_content": event.value})
            if event.kind == "arguments" and event.index in self._tools:
                call = {"index": self._tools[event.index], "function": {"arguments": event.value}}
                return self._chunk({"tool_calls": [call]})
            return b""  # a signature: bound to Anthropic, nothing to show
        if isinstance(event, c.BlockStart) and isinstance(event.part, c.ToolCall):
            self._tools[event.index] = len(self._tools)
            call = {
                "index": self._tools[event.index],
                "id": openai_id(event.part.id),
                "type": "function",
                "function": {"name": event.part.name, "arguments": ""},
            }
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, c.Start):
            self.id = completion_id(event.id)
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, c.Finish):
            self._finish = STOP_TO_FINISH.get(event.stop_reason or "end_turn", "stop")
            return b""
        if isinstance(event, c.UsageUpdate):
            self._usage = event.usage
            return b""
        if isinstance(event, c.End):
            out = self._chunk({}, self._finish or "stop")
            if self.include_usage and self._usage is not None:
                out += self._chunk(None, usage=usage_to_wire(self._usage))
            return out + b"data: [DONE]\n\n"
        return b""
