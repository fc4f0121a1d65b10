"""Anthropic answers: Messages and their stream events, to and from the canonical form.

The stream follows Anthropic's sequence exactly: ``message_start``, ``ping``, then per
block ``content_block_start`` / ``content_block_delta``… / ``content_block_stop``, then
``message_delta`` (stop reason and usage) and ``message_stop``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import orjson

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.bodies import check_encodable
from izzi_proxy.dialects.anthropic_messages.request import tool_input
from izzi_proxy.dialects.tool_ids import anthropic_id
from izzi_proxy.errors import GatewayError, InvalidRequest, UpstreamConnectionError, UpstreamError
from izzi_proxy.masking import mask_secrets

STOP_REASONS = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)

# -- usage -----------------------------------------------------------------------------------


class WireUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


def merge_usage(usage: c.Usage | None, wire: WireUsage | None) -> c.Usage | None:
    """``usage`` updated with what ``wire`` reports (a message_delta repeats only some fields)."""
    if wire is None:
        return usage
    usage = c.Usage() if usage is None else dataclasses.replace(usage)
    if wire.input_tokens is not None:
        usage.input_tokens = wire.input_tokens
    if wire.output_tokens is not None:
        usage.output_tokens = wire.output_tokens
    if wire.cache_creation_input_tokens is not None:
        usage.cache_write_tokens = wire.cache_creation_input_tokens
    if wire.cache_read_input_tokens is not None:
        usage.cache_read_tokens = wire.cache_read_input_tokens
    return usage


def usage_to_wire(u: c.Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }


# -- plain answers -----------------------------------------------------------------------------


class _WireBlock(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class _WireMessage(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[_WireBlock] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: WireUsage | None = None


def _part(block: _WireBlock) -> c.Part | None:
    if block.type == "text":
        return c.Text(block.text or "")
    if block.type == "tool_use":
        try:
            arguments = orjson.dumps(block.input or {}).decode()
        except orjson.JSONEncodeError:  # an upstream's input the encoder cannot write
            raise UpstreamError("The upstream's tool call input is nested too deeply to relay", upstream="-") from None
        return c.ToolCall(block.id or "", block.name or "", arguments)
    if block.type == "thinking":
        return c.Thinking(block.thinking or "", block.signature)
    if block.type == "redacted_thinking":
        return c.RedactedThinking(block.data or "")
    return None  # server tool blocks and the like: no canonical form


def parse_response(body: bytes, upstream: str) -> c.Response:
    try:
        wire = msgspec.json.decode(body, type=_WireMessage)
    except msgspec.MsgspecError as exc:
        raise UpstreamError(f"Upstream {upstream!r} did not answer with a Message: {exc}", upstream=upstream) from None
    return c.Response(
        id=wire.id,
        model=wire.model,
        parts=[p for b in wire.content if (p := _part(b)) is not None],
        stop_reason=wire.stop_reason if wire.stop_reason in STOP_REASONS else "end_turn",  # type: ignore[arg-type]
        usage=merge_usage(None, wire.usage) or c.Usage(),
        stop_sequence=wire.stop_sequence,
    )


def message_id(upstream_id: str) -> str:
    return "msg_" + upstream_id.removeprefix("chatcmpl-").removeprefix("msg_")


def _block(part: c.Part) -> dict[str, Any] | None:
    if isinstance(part, c.Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, c.ToolCall):
        arguments = tool_input(part.arguments)
        try:
            check_encodable(arguments)
        except InvalidRequest:  # an upstream's arguments nested too deep to write: kept as text
            arguments = {"arguments": part.arguments}
        return {"type": "tool_use", "id": anthropic_id(part.id), "name": part.name, "input": arguments}
    return None  # reasoning from another vendor has no signature: an Anthropic client could not send it back


def render_response(resp: c.Response, model: str) -> bytes:
    return orjson.dumps(
        {
            "id": message_id(resp.id),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [b for p in resp.parts if (b := _block(p)) is not None],
            "stop_reason": resp.stop_reason or "end_turn",
            "stop_sequence": resp.stop_sequence,
            "usage": usage_to_wire(resp.usage),
        }
    )


# -- streams: Anthropic events -> canonical events ------------------------------------------


class _WireEvent(msgspec.Struct):
    type: str
    index: int | None = None
    message: _WireMessage | None = None
    content_block: _WireBlock | None = None
    delta: dict[str, Any] | None = None
    usage: WireUsage | None = None
    error: dict[str, Any] | None = None


_DELTA_KINDS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("signature", "signature"),
    "input_json_delta": ("arguments", "partial_json"),
}


class StreamParser:
    """Reads an Anthropic stream as canonical events."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.usage: c.Usage | None = None
        self.usage_final = False
        self.done = False
        self._blocks: dict[int, int] = {}  # Anthropic block index -> canonical index

    def feed(self, event: sse.SSEEvent) -> list[c.StreamEvent]:
        if not event.data or event.event == "ping":
            return []
        try:
            wire = msgspec.json.decode(event.data, type=_WireEvent)
        except msgspec.MsgspecError:
            return []
        kind = wire.type
        if kind == "error":
            message = (wire.error or {}).get("message", event.data)
            raise UpstreamError(
                f"Upstream {self.upstream!r} failed mid-stream: {mask_secrets(str(message))}", upstream=self.upstream
            )
        if kind == "message_start" and wire.message is not None:
            self.usage = merge_usage(None, wire.message.usage)
            return [c.Start(wire.message.id, wire.message.model, self.usage)]
        if kind == "content_block_start" and wire.index is not None and wire.content_block is not None:
            part = _part(wire.content_block)
            if part is None or isinstance(part, c.ToolResult):
                return []
            if isinstance(part, c.ToolCall):
                part.arguments = ""  # the input arrives as input_json_delta
            self._blocks[wire.index] = len(self._blocks)
            return [c.BlockStart(self._blocks[wire.index], part)]
        if kind == "content_block_delta" and wire.index in self._blocks and wire.delta is not None:
            mapped = _DELTA_KINDS.get(wire.delta.get("type", ""))
            if mapped is None:
                return []
            return [c.Delta(self._blocks[wire.index], mapped[0], wire.delta.get(mapped[1], ""))]  # type: ignore[arg-type]
        if kind == "content_block_stop" and wire.index in self._blocks:
            return [c.BlockStop(self._blocks[wire.index])]
        if kind == "message_delta":
            self.usage = merge_usage(self.usage, wire.usage)
            self.usage_final = self.usage is not None
            delta = wire.delta or {}
            reason = delta.get("stop_reason")
            out: list[c.StreamEvent] = [
                c.Finish(reason if reason in STOP_REASONS else "end_turn", delta.get("stop_sequence"))
            ]
            if self.usage is not None:
                out.append(c.UsageUpdate(self.usage))
            return out
        if kind == "message_stop":
            self.done = True
            return [c.End()]
        return []

    def end_of_stream(self) -> None:
        if not self.done:
            raise UpstreamConnectionError(
                "The upstream ended the stream before it was complete", upstream=self.upstream
            )


# -- streams: canonical events -> Anthropic events -------------------------------------------


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    return sse.encode(orjson.dumps({"type": kind, **data}), event=kind)


def error_body(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error.type, "message": error.message}}


def stream_error(error: GatewayError) -> bytes:
    """An error after the first byte: an ``event: error`` frame (the SDK's ``APIStatusError``)."""
    return sse.encode(orjson.dumps(error_body(error)), event="error")


class StreamRenderer:
    """Writes canonical events as an Anthropic stream for the client."""

    final = None  # a Messages stream has no final answer object

    def __init__(self, model: str) -> None:
        self.model = model
        self._blocks: dict[int, int] = {}  # canonical index -> Anthropic index (shown blocks)
        self._finish = c.Finish("end_turn")
        self._usage = c.Usage()

    def error_frame(self, error: GatewayError) -> bytes:
        return stream_error(error)

    def render(self, event: c.StreamEvent) -> bytes:
        if isinstance(event, c.Delta):
            index = self._blocks.get(event.index)
            if index is None or event.kind in ("thinking", "signature"):
                return b""
            if event.kind == "text":
                delta = {"type": "text_delta", "text": event.value}
            else:
                delta = {"type": "input_json_delta", "partial_json": event.value}
            return _frame("content_block_delta", {"index": index, "delta": delta})
        if isinstance(event, c.BlockStart):
            part = event.part
            if isinstance(part, c.Text):
                block: dict[str, Any] = {"type": "text", "text": ""}
            elif isinstance(part, c.ToolCall):
                block = {"type": "tool_use", "id": anthropic_id(part.id), "name": part.name, "input": {}}
            else:
                return b""  # unsigned reasoning from another vendor: not shown (see _block)
            self._blocks[event.index] = len(self._blocks)
            return _frame("content_block_start", {"index": self._blocks[event.index], "content_block": block})
        if isinstance(event, c.BlockStop):
            index = self._blocks.get(event.index)
            return b"" if index is None else _frame("content_block_stop", {"index": index})
        if isinstance(event, c.Start):
            if event.usage is not None:
                self._usage = event.usage
            message = {
                "id": message_id(event.id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage_to_wire(self._usage),
            }
            return _frame("message_start", {"message": message}) + _frame("ping", {})
        if isinstance(event, c.Finish):
            self._finish = event
            return b""
        if isinstance(event, c.UsageUpdate):
            self._usage = event.usage
            return b""
        if isinstance(event, c.End):
            delta = {
                "stop_reason": self._finish.stop_reason or "end_turn",
                "stop_sequence": self._finish.stop_sequence,
            }
            return _frame("message_delta", {"delta": delta, "usage": usage_to_wire(self._usage)}) + _frame(
                "message_stop", {}
            )
        return b""
