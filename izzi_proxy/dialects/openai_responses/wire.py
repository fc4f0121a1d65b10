"""OpenAI Responses as an upstream's wire format: the canonical request written as a
``POST /v1/responses`` body, and its answers (the response object, its typed stream
events) read back as canonical ones.

The body always says ``store: false`` (the gateway keeps its own store), asks reasoning
models for ``summary: "auto"`` so that their thinking comes back as summaries, and leaves
out what Responses cannot carry: thinking from other vendors (OpenAI could not verify it)
and ``stop`` (no such field; logged). Tool-call ids are written in OpenAI's ``call_…``
convention, as toward an OpenAI chat upstream (``tool_ids``).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects import data_url
from izzi_proxy.dialects.openai_chat.request import effort_of, sampling
from izzi_proxy.dialects.openai_responses.response import WireUsage, usage_from_wire
from izzi_proxy.dialects.tool_ids import openai_id
from izzi_proxy.errors import UpstreamConnectionError, UpstreamError
from izzi_proxy.masking import mask_secrets

log = logging.getLogger("izzi.translate")

MIN_OUTPUT_TOKENS = 16  # OpenAI refuses a smaller max_output_tokens

# -- from the canonical form (toward a Responses upstream) -----------------------------------


def _input_part(part: c.Part) -> dict[str, Any] | None:
    """A user content part (``input_text`` / ``input_image`` / ``input_file``)."""
    if isinstance(part, c.Text):
        return {"type": "input_text", "text": part.text} if part.text else None
    if isinstance(part, c.Image):
        url = part.url or data_url(part.media_type, part.data)
        return {"type": "input_image", "image_url": url, "detail": "auto"}  # detail: required in a message
    if isinstance(part, c.Document):
        if part.text is not None:
            return {"type": "input_text", "text": part.text}
        if part.data is not None:
            return {"type": "input_file", "filename": part.title or "document.pdf",
                    "file_data": data_url(part.media_type or "application/pdf", part.data)}  # fmt: skip
        if part.url is not None:
            return {"type": "input_file", "file_url": part.url} | ({"filename": part.title} if part.title else {})
    return None  # tool calls, thinking (bound to its vendor): nothing to write here


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _output(result: c.ToolResult) -> str | list[dict[str, Any]]:
    """A tool result's ``output``: its text, or input parts when it holds images."""
    if any(isinstance(p, c.Image) for p in result.content):
        return [p for part in result.content if (p := _input_part(part)) is not None]
    text = "\n".join(p.text for p in result.content if isinstance(p, c.Text))
    return text or ("(error)" if result.is_error else "")


def _assistant(parts: list[c.Part]) -> list[dict[str, Any]]:
    """An assistant turn as items, in order: its text as output messages, its tool calls as
    ``function_call`` items (thinking is left out)."""
    items: list[dict[str, Any]] = []
    texts: list[str] = []

    def flush() -> None:
        if text := "".join(texts):
            items.append(_message("assistant", [{"type": "output_text", "text": text, "annotations": []}]))
        texts.clear()

    for part in parts:
        if isinstance(part, c.Text):
            texts.append(part.text)
        elif isinstance(part, c.ToolCall):
            flush()
            items.append({"type": "function_call", "call_id": openai_id(part.id), "name": part.name,
                          "arguments": part.arguments or "{}"})  # fmt: skip
    flush()
    return items


def _input(req: c.Request) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in req.messages:
        if message.role == "system":
            texts = [p.text for p in message.parts if isinstance(p, c.Text) and p.text]
            if content := [{"type": "input_text", "text": text} for text in texts]:
                items.append(_message("developer", content))
        elif message.role == "assistant":
            items += _assistant(message.parts)
        else:
            rest: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, c.ToolResult):
                    items.append({"type": "function_call_output", "call_id": openai_id(part.tool_call_id),
                                  "output": _output(part)})  # fmt: skip
                elif (written := _input_part(part)) is not None:
                    rest.append(written)
            if rest:
                items.append(_message("user", rest))
    return items


def _text_format(response_format: dict[str, Any], dropped: set[str]) -> dict[str, Any] | None:
    """OpenAI chat's ``response_format`` as Responses' ``text.format``."""
    kind = response_format.get("type")
    if kind == "json_schema" and isinstance(schema := response_format.get("json_schema"), dict):
        fmt: dict[str, Any] = {"type": "json_schema", "name": schema.get("name") or "response",
                               "schema": schema.get("schema") or {}}  # fmt: skip
        if schema.get("strict") is not None:
            fmt["strict"] = schema["strict"]
        if schema.get("description"):
            fmt["description"] = schema["description"]
        return fmt
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "text":
        dropped.add(f"response_format {kind!r}")
    return None


def _tool_choice(choice: c.ToolChoice) -> Any:
    if choice.mode == "tool":
        return {"type": "function", "name": choice.name}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.mode]


def from_canonical(req: c.Request, target: c.Target) -> dict[str, Any]:
    dropped: set[str] = set()
    body: dict[str, Any] = {"model": target.model}
    if req.system:
        body["instructions"] = "\n\n".join(req.system)
    body["input"] = _input(req)
    if req.max_tokens is not None:
        body["max_output_tokens"] = max(req.max_tokens, MIN_OUTPUT_TOKENS)
    body.update(sampling(req, target))
    if target.reasoning and req.reasoning is not None:
        body["reasoning"] = {"effort": effort_of(req.reasoning), "summary": "auto"}
    if req.stop:
        dropped.add("stop")
    if req.tools:
        body["tools"] = [
            {"type": "function", "name": t.name, "parameters": t.parameters, "strict": False}
            | ({"description": t.description} if t.description else {})
            for t in req.tools
        ]
        if req.tool_choice is not None:
            body["tool_choice"] = _tool_choice(req.tool_choice)
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.user:
        body["user"] = req.user
    if req.response_format is not None and (fmt := _text_format(req.response_format, dropped)) is not None:
        body["text"] = {"format": fmt}
    if req.stream:
        body["stream"] = True
    body["store"] = False
    if dropped:
        log.info("translating to openai_responses: dropped %s", ", ".join(sorted(dropped)))
    return body


# -- answers ---------------------------------------------------------------------------------


class _Content(msgspec.Struct):
    """A part of a message (``output_text``, ``refusal``) or of a reasoning item
    (``summary_text``, ``reasoning_text``)."""

    type: str = ""
    text: str | None = None
    refusal: str | None = None


class _Item(msgspec.Struct):
    type: str = ""
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    content: list[_Content] | None = None
    summary: list[_Content] | None = None


class _Incomplete(msgspec.Struct):
    reason: str | None = None


class _Error(msgspec.Struct):
    message: str | None = None
    code: str | None = None


class _Response(msgspec.Struct):
    id: str = ""
    model: str = ""
    status: str | None = None
    error: _Error | None = None
    incomplete_details: _Incomplete | None = None
    output: list[dict[str, Any]] = []
    usage: WireUsage | None = None


class _StreamResponse(msgspec.Struct):
    """The response object in a stream event, without its output (the events carry it)."""

    id: str = ""
    model: str = ""
    status: str | None = None
    error: _Error | None = None
    incomplete_details: _Incomplete | None = None
    usage: WireUsage | None = None


_KNOWN_ITEMS = frozenset({"message", "function_call", "reasoning"})
_INCOMPLETE: dict[str, c.StopReason] = {"max_output_tokens": "max_tokens", "content_filter": "refusal"}


def _stop_reason(resp: _Response | _StreamResponse, calls: bool, refused: bool) -> c.StopReason:
    details = resp.incomplete_details if resp.status == "incomplete" else None
    if details is not None and (reason := _INCOMPLETE.get(details.reason or "")) is not None:
        return reason
    return "tool_use" if calls else "refusal" if refused else "end_turn"


def _failure(upstream: str, error: _Error | None, fallback: str, mid_stream: bool) -> UpstreamError:
    message = mask_secrets(str((error.message if error else None) or fallback))
    where = "failed mid-stream" if mid_stream else "failed"
    return UpstreamError(f"Upstream {upstream!r} {where}: {message}", upstream=upstream)


def _thinking_text(item: _Item) -> str:
    """A reasoning item's text: its summaries, else its reasoning text, joined with blank lines."""
    texts = [s.text for s in item.summary or () if s.text]
    if not texts:
        texts = [p.text for p in item.content or () if p.type == "reasoning_text" and p.text]
    return "\n\n".join(texts)


def _item_parts(item: _Item) -> tuple[list[c.Part], bool]:
    """An output item's canonical parts, and whether it holds a refusal."""
    if item.type == "function_call":
        return [c.ToolCall(item.call_id or item.id or "", item.name or "", item.arguments or "")], False
    if item.type == "reasoning":
        text = _thinking_text(item)
        return ([c.Thinking(text)] if text else []), False
    parts: list[c.Part] = []
    refused = False
    for part in item.content or ():
        if part.type == "refusal" and part.refusal:
            parts.append(c.Text(part.refusal))
            refused = True
        elif part.type == "output_text" and part.text:
            parts.append(c.Text(part.text))
    return parts, refused


def parse_response(body: bytes, upstream: str) -> c.Response:
    try:
        wire = msgspec.json.decode(body, type=_Response)
        items = [msgspec.convert(i, _Item) for i in wire.output if i.get("type") in _KNOWN_ITEMS]
    except msgspec.MsgspecError as exc:
        raise UpstreamError(f"Upstream {upstream!r} did not answer with a Response: {exc}", upstream=upstream) from None
    if wire.error is not None or wire.status == "failed":
        raise _failure(upstream, wire.error, "the response failed", mid_stream=False)
    parts: list[c.Part] = []
    refused = False
    for item in items:  # other kinds (web_search_call, …) have no canonical form
        found, refusal = _item_parts(item)
        parts += found
        refused |= refusal
    calls = any(isinstance(p, c.ToolCall) for p in parts)
    return c.Response(
        id=wire.id,
        model=wire.model,
        parts=parts,
        stop_reason=_stop_reason(wire, calls, refused),
        usage=usage_from_wire(wire.usage) or c.Usage(),
    )


# -- streams: Responses events -> canonical events ---------------------------------------------


class _WireEvent(msgspec.Struct):
    type: str = ""
    output_index: int | None = None
    content_index: int | None = None
    summary_index: int | None = None
    delta: str | None = None
    text: str | None = None
    arguments: str | None = None
    refusal: str | None = None
    item: _Item | None = None
    part: _Content | None = None
    response: _StreamResponse | None = None
    message: str | None = None
    error: _Error | None = None


# event type -> (canonical delta kind, the sub-part family, the field naming the sub-part)
_DELTAS = {
    "response.output_text.delta": ("text", "text", "content_index"),
    "response.refusal.delta": ("text", "refusal", "content_index"),
    "response.reasoning_summary_text.delta": ("thinking", "summary", "summary_index"),
    "response.reasoning_text.delta": ("thinking", "reasoning", "content_index"),
    "response.function_call_arguments.delta": ("arguments", "args", None),
}
# a sub-part's done event, with the field holding its whole value
_DONES = {
    "response.output_text.done": ("text", "text", "content_index", "text"),
    "response.refusal.done": ("text", "refusal", "content_index", "refusal"),
    "response.reasoning_summary_text.done": ("thinking", "summary", "summary_index", "text"),
    "response.reasoning_text.done": ("thinking", "reasoning", "content_index", "text"),
    "response.function_call_arguments.done": ("arguments", "args", None, "arguments"),
}
_TERMINAL = ("response.completed", "response.incomplete")

Key = tuple[int, str, int]  # (output_index, family, sub-part index)


class StreamParser:
    """Reads a Responses stream as canonical events, one block open at a time: a text block
    per message content part, one thinking block per reasoning item (its summary parts
    joined with blank lines, as ``parse_response`` joins them), a block per function call.
    A sub-part whose deltas never came is written whole from its ``.done`` event."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.usage: c.Usage | None = None
        self.usage_final = False
        self.done = False
        self._started = False
        self._blocks = 0
        self._open: tuple[int, str, int] | None = None  # the open block's key
        self._open_index = 0  # its canonical index
        self._last_part: Key | None = None  # the sub-part last written in the open block
        self._written: set[Key] = set()  # sub-parts that had text
        self._calls: dict[int, c.ToolCall] = {}  # output_index -> the call (id and name)
        self._refused = False

    def feed(self, event: sse.SSEEvent) -> list[c.StreamEvent]:
        if not event.data or self.done:
            return []
        try:
            wire = msgspec.json.decode(event.data, type=_WireEvent)
        except msgspec.MsgspecError:
            return []  # a keep-alive, [DONE], or an event of a shape the gateway does not read
        kind = wire.type
        if kind == "error":
            error = wire.error or _Error(wire.message)
            raise _failure(self.upstream, error, event.data, mid_stream=True)
        if kind == "response.failed":
            error = wire.response.error if wire.response else None
            raise _failure(self.upstream, error, "the response failed", mid_stream=True)
        out: list[c.StreamEvent] = []
        if not self._started and wire.response is not None:
            self._started = True
            out.append(c.Start(wire.response.id, wire.response.model))
        index = wire.output_index if wire.output_index is not None else -1
        if kind in _DELTAS:
            delta_kind, family, field = _DELTAS[kind]
            sub = (getattr(wire, field) if field else 0) or 0
            out += self._write(delta_kind, (index, family, sub), wire.delta or "")
        elif kind in _DONES:
            delta_kind, family, field, value = _DONES[kind]
            sub = (getattr(wire, field) if field else 0) or 0
            out += self._fill(delta_kind, (index, family, sub), getattr(wire, value) or "")
        elif kind == "response.content_part.done" and wire.part is not None:
            out += self._fill_part(index, wire.content_index or 0, wire.part)
        elif kind == "response.output_item.added" and wire.item is not None and wire.item.type == "function_call":
            out += self._call(index, wire.item)
        elif kind == "response.output_item.done" and wire.item is not None:
            out += self._item_done(index, wire.item)
        elif kind in _TERMINAL and wire.response is not None:
            out += self._close()
            self.usage = usage_from_wire(wire.response.usage)
            self.usage_final = self.usage is not None
            out.append(c.Finish(_stop_reason(wire.response, bool(self._calls), self._refused)))
            if self.usage is not None:
                out.append(c.UsageUpdate(self.usage))
            out.append(c.End())
            self.done = True
        return out

    def end_of_stream(self) -> None:
        if not self.done:
            raise UpstreamConnectionError(
                "The upstream ended the stream before it was complete", upstream=self.upstream
            )

    # -- blocks

    @staticmethod
    def _block_key(kind: str, key: Key) -> tuple[int, str, int]:
        """Text blocks are per content part; thinking and a call are per item."""
        if kind == "text":
            return (key[0], "text", key[2])
        return (key[0], "thinking" if kind == "thinking" else "tool", 0)

    def _close(self) -> list[c.StreamEvent]:
        if self._open is None:
            return []
        self._open, self._last_part = None, None
        return [c.BlockStop(self._open_index)]

    def _begin(self, block: tuple[int, str, int], part: c.Text | c.Thinking | c.ToolCall) -> list[c.StreamEvent]:
        out = self._close()
        if not self._started:  # an upstream that skipped response.created
            self._started = True
            out.append(c.Start("", ""))
        self._open, self._open_index = block, self._blocks
        self._blocks += 1
        return [*out, c.BlockStart(self._open_index, part)]

    def _call(self, index: int, item: _Item) -> list[c.StreamEvent]:
        call = c.ToolCall(item.call_id or item.id or "", item.name or "", "")
        self._calls[index] = call
        return self._begin((index, "tool", 0), c.ToolCall(call.id, call.name, ""))

    def _write(self, kind: str, key: Key, value: str) -> list[c.StreamEvent]:
        if not value:
            return []
        block = self._block_key(kind, key)
        out: list[c.StreamEvent] = []
        if block != self._open:
            if kind == "arguments":
                return []  # a call's block opens with its item; closed, it takes no more arguments
            out += self._begin(block, c.Text("") if kind == "text" else c.Thinking(""))
        elif kind == "thinking" and self._last_part is not None and self._last_part != key:
            out.append(c.Delta(self._open_index, "thinking", "\n\n"))  # the next summary part
        if key[1] == "refusal":
            self._refused = True
        self._last_part = key
        self._written.add(key)
        return [*out, c.Delta(self._open_index, kind, value)]  # type: ignore[arg-type]

    def _fill(self, kind: str, key: Key, value: str) -> list[c.StreamEvent]:
        """A sub-part's whole value, written if none of its deltas came."""
        return [] if key in self._written else self._write(kind, key, value)

    def _fill_part(self, index: int, sub: int, part: _Content) -> list[c.StreamEvent]:
        if part.type == "refusal":
            return self._fill("text", (index, "refusal", sub), part.refusal or "")
        if part.type == "output_text":
            return self._fill("text", (index, "text", sub), part.text or "")
        return []

    def _item_done(self, index: int, item: _Item) -> list[c.StreamEvent]:
        out: list[c.StreamEvent] = []
        if item.type == "message":
            for sub, part in enumerate(item.content or ()):
                out += self._fill_part(index, sub, part)
        elif item.type == "reasoning":
            summaries = [s for s in item.summary or () if s.text]
            for sub, summary in enumerate(item.summary or ()):
                out += self._fill("thinking", (index, "summary", sub), summary.text or "")
            if not summaries:
                for sub, part in enumerate(item.content or ()):
                    if part.type == "reasoning_text":
                        out += self._fill("thinking", (index, "reasoning", sub), part.text or "")
        elif item.type == "function_call":
            if index not in self._calls:  # its output_item.added never came
                out += self._call(index, item)
            out += self._fill("arguments", (index, "args", 0), item.arguments or "")
        if self._open is not None and self._open[0] == index:
            out += self._close()
        return out
