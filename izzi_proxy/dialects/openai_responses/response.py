"""OpenAI Responses answers: the response object and its typed stream events, written from
the canonical form.

Output items: ``reasoning`` (the thinking shown as ``summary`` when the client asked for a
summary; Claude's signature kept in ``encrypted_content`` when it asked for
``reasoning.encrypted_content``), ``message`` with ``output_text``, ``function_call``. Streams
carry a strictly increasing ``sequence_number``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.dialects.openai_responses.request import Responses, encrypt
from izzi_proxy.dialects.tool_ids import openai_id
from izzi_proxy.errors import GatewayError

DEFAULTS = {"parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "store": True,
            "text": {"format": {"type": "text"}}, "truncation": "disabled", "metadata": {}}  # fmt: skip
INCOMPLETE = {"max_tokens": "max_output_tokens", "model_context_window_exceeded": "max_output_tokens",
              "refusal": "content_filter"}  # fmt: skip


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# -- usage -----------------------------------------------------------------------------------


class _InputDetails(msgspec.Struct):
    cached_tokens: int | None = 0
    cache_write_tokens: int | None = 0


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int | None = 0


class WireUsage(msgspec.Struct):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


def usage_from_wire(u: WireUsage | None) -> c.Usage | None:
    if u is None:
        return None
    cached = (u.input_tokens_details and u.input_tokens_details.cached_tokens) or 0
    written = (u.input_tokens_details and u.input_tokens_details.cache_write_tokens) or 0
    reasoning = (u.output_tokens_details and u.output_tokens_details.reasoning_tokens) or 0
    return c.Usage(max((u.input_tokens or 0) - cached - written, 0), u.output_tokens or 0, cached, written, reasoning)


def usage_to_wire(u: c.Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


# -- the response object ---------------------------------------------------------------------


class Builder:
    """Writes the response object and its items for one request."""

    def __init__(self, parsed: ParsedRequest) -> None:
        view: Responses = parsed.typed
        self.model = parsed.model
        self.echo = {**DEFAULTS, **view.echo}
        reasoning = view.req.reasoning
        self.summary = bool(reasoning and reasoning.summary)
        self.encrypted = "reasoning.encrypted_content" in (view.req.include or ())
        self.id = new_id("resp")
        self.created_at = int(time.time())

    def response(self, status: str, output: list[dict[str, Any]], usage: c.Usage | None,
                 stop_reason: str | None = None) -> dict[str, Any]:  # fmt: skip
        incomplete = INCOMPLETE.get(stop_reason or "") if status != "in_progress" else None
        if incomplete:
            status = "incomplete"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "model": self.model,
            "output": output,
            "usage": usage_to_wire(usage) if usage is not None else None,
            **self.echo,
        }

    def reasoning_item(self, item_id: str, part: c.Thinking | c.RedactedThinking, status: str) -> dict[str, Any]:
        text = part.text if isinstance(part, c.Thinking) else ""
        item: dict[str, Any] = {
            "id": item_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}] if self.summary and text else [],
            "status": status,
        }
        if self.encrypted and (encrypted := encrypt(part)) is not None:
            item["encrypted_content"] = encrypted
        return item

    @staticmethod
    def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
        content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}

    @staticmethod
    def call_item(item_id: str, call: c.ToolCall, status: str) -> dict[str, Any]:
        return {"id": item_id, "type": "function_call", "call_id": openai_id(call.id), "name": call.name,
                "arguments": call.arguments, "status": status}  # fmt: skip

    def output(self, parts: list[c.Part]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        texts: list[str] = []
        for part in parts:
            if isinstance(part, c.Text):
                texts.append(part.text)
                continue
            if texts:
                items.append(self.message_item(new_id("msg"), "".join(texts), "completed"))
                texts = []
            if isinstance(part, (c.Thinking, c.RedactedThinking)):
                items.append(self.reasoning_item(new_id("rs"), part, "completed"))
            elif isinstance(part, c.ToolCall):
                items.append(self.call_item(new_id("fc"), part, "completed"))
        if texts:
            items.append(self.message_item(new_id("msg"), "".join(texts), "completed"))
        return items


def render_response(resp: c.Response, parsed: ParsedRequest) -> bytes:
    builder = Builder(parsed)
    return orjson.dumps(builder.response("completed", builder.output(resp.parts), resp.usage, resp.stop_reason))


def error_event(error: GatewayError, sequence_number: int) -> bytes:
    """The ``error`` event: OpenAI's flat fields, and the same under ``error``, which is what
    makes the openai SDK raise ``APIError`` from the stream."""
    detail = {"type": error.type, "code": error.type, "message": error.message, "param": error.param}
    event = {"type": "error", "code": error.type, "message": error.message, "param": error.param,
             "sequence_number": sequence_number, "error": detail}  # fmt: skip
    return sse.encode(orjson.dumps(event), event="error")


def failure_events(error: GatewayError, sequence_number: int, response: dict[str, Any] | None) -> bytes:
    """An ``error`` event, then ``response.failed`` with the response so far (what OpenAI
    sends; clients such as Codex wait for a terminal response event)."""
    out = error_event(error, sequence_number)
    if response is None:
        return out
    code = "server_error" if error.status >= 500 else "invalid_request"
    failed = {**response, "status": "failed", "error": {"code": code, "message": error.message}}
    event = {"type": "response.failed", "response": failed, "sequence_number": sequence_number + 1}
    return out + sse.encode(orjson.dumps(event), event="response.failed")


# -- streams: canonical events -> Responses events -------------------------------------------


@dataclass(slots=True)
class _Open:
    """An output item being written."""

    index: int  # its output_index
    item: dict[str, Any]
    part: c.Text | c.ToolCall | c.Thinking | c.RedactedThinking
    pieces: list[str] = field(default_factory=list)


class StreamRenderer:
    """Writes canonical events as a Responses stream; keeps the final response object."""

    def __init__(self, parsed: ParsedRequest) -> None:
        self.b = Builder(parsed)
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self._open: dict[int, _Open] = {}  # by canonical block index
        self._finish: c.Finish | None = None
        self._usage: c.Usage | None = None

    def _event(self, kind: str, **data: Any) -> bytes:
        frame = sse.encode(orjson.dumps({"type": kind, **data, "sequence_number": self.sequence}), event=kind)
        self.sequence += 1
        return frame

    def error_frame(self, error: GatewayError) -> bytes:
        """The stream's end after a failure: ``error`` and ``response.failed``."""
        out = failure_events(error, self.sequence, self.b.response("failed", self.output, self._usage))
        self.sequence += 2
        return out

    def render(self, event: c.StreamEvent) -> bytes:
        if isinstance(event, c.Delta):
            return self._delta(event)
        if isinstance(event, c.BlockStart):
            return self._start(event)
        if isinstance(event, c.BlockStop):
            return self._stop(event.index)
        if isinstance(event, c.Start):
            response = self.b.response("in_progress", [], None)
            created = self._event("response.created", response=response)
            return created + self._event("response.in_progress", response=response)
        if isinstance(event, c.Finish):
            self._finish = event
        elif isinstance(event, c.UsageUpdate):
            self._usage = event.usage
        elif isinstance(event, c.End):
            out = b"".join(self._stop(index) for index in list(self._open))
            stop = self._finish.stop_reason if self._finish else None
            self.final = self.b.response("completed", self.output, self._usage or c.Usage(), stop)
            kind = "response.incomplete" if self.final["status"] == "incomplete" else "response.completed"
            return out + self._event(kind, response=self.final)
        return b""

    def _start(self, event: c.BlockStart) -> bytes:
        part = event.part
        index = len(self.output)
        if isinstance(part, c.Text):
            item = self.b.message_item(new_id("msg"), None, "in_progress")
        elif isinstance(part, c.ToolCall):
            item = self.b.call_item(new_id("fc"), c.ToolCall(part.id, part.name, ""), "in_progress")
        else:
            item = self.b.reasoning_item(new_id("rs"), c.Thinking(""), "in_progress")
        self.output.append(item)
        self._open[event.index] = _Open(index, item, part)
        out = self._event("response.output_item.added", output_index=index, item=item)
        ids = {"item_id": item["id"], "output_index": index}
        if isinstance(part, c.Text):
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += self._event("response.content_part.added", **ids, content_index=0, part=empty)
        elif isinstance(part, c.Thinking) and self.b.summary:
            empty = {"type": "summary_text", "text": ""}
            out += self._event("response.reasoning_summary_part.added", **ids, summary_index=0, part=empty)
        return out

    def _delta(self, event: c.Delta) -> bytes:
        block = self._open.get(event.index)
        if block is None:
            return b""
        if event.kind == "signature":
            if isinstance(block.part, c.Thinking):
                block.part.signature = (block.part.signature or "") + event.value
            return b""
        block.pieces.append(event.value)
        ids = {"item_id": block.item["id"], "output_index": block.index}
        if event.kind == "text":
            return self._event("response.output_text.delta", **ids, content_index=0, delta=event.value, logprobs=[])
        if event.kind == "arguments":
            return self._event("response.function_call_arguments.delta", **ids, delta=event.value)
        if self.b.summary:
            return self._event("response.reasoning_summary_text.delta", **ids, summary_index=0, delta=event.value)
        return b""

    def _stop(self, index: int) -> bytes:
        block = self._open.pop(index, None)
        if block is None:
            return b""
        text = "".join(block.pieces)
        item_id = block.item["id"]
        ids = {"item_id": item_id, "output_index": block.index}
        out = b""
        if isinstance(block.part, c.Text):
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out += self._event("response.output_text.done", **ids, content_index=0, text=text, logprobs=[])
            out += self._event("response.content_part.done", **ids, content_index=0, part=part)
            done = self.b.message_item(item_id, text, "completed")
        elif isinstance(block.part, c.ToolCall):
            out += self._event("response.function_call_arguments.done", **ids, arguments=text)
            done = self.b.call_item(item_id, c.ToolCall(block.part.id, block.part.name, text), "completed")
        else:
            thinking = (
                block.part if isinstance(block.part, c.RedactedThinking) else c.Thinking(text, block.part.signature)
            )
            done = self.b.reasoning_item(item_id, thinking, "completed")
            if self.b.summary and isinstance(block.part, c.Thinking):
                summary = {"type": "summary_text", "text": text}
                out += self._event("response.reasoning_summary_text.done", **ids, summary_index=0, text=text)
                out += self._event("response.reasoning_summary_part.done", **ids, summary_index=0, part=summary)
        self.output[block.index] = done
        return out + self._event("response.output_item.done", output_index=block.index, item=done)
