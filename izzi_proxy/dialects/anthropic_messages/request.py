"""Anthropic Messages requests: validation, and translation to and from the canonical form.

Passthrough forwards the body untouched but for ``model``; translation keeps what both
formats can carry and drops the rest by the rules in ``docs/translation.md``:
``cache_control``, ``context_management``, ``container``, ``mcp_servers`` and
server/beta tools have no OpenAI form (``top_k`` goes only where Gemini or Anthropic reads
it); thinking blocks are bound to Anthropic by their signature and never sent elsewhere.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import msgspec
import orjson

from izzi_proxy import canonical as c
from izzi_proxy.bodies import check_encodable, decode_object
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.dialects.openai_chat.request import Probability, invalid
from izzi_proxy.dialects.tool_ids import anthropic_id
from izzi_proxy.errors import InvalidRequest

log = logging.getLogger("izzi.translate")

# -- schema ----------------------------------------------------------------------------------


class _Source(msgspec.Struct):
    """An image's or document's source: base64 ``data``, a ``url``, text, or text blocks."""

    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    content: str | list[_Block] | None = None


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    source: _Source | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: str | list[_Block] | None = None
    is_error: bool | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    title: str | None = None


class _Message(msgspec.Struct):
    role: Literal["user", "assistant", "system"]  # system: mid-conversation, under its beta
    content: str | list[_Block]


class _Tool(msgspec.Struct):
    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class _ToolChoice(msgspec.Struct):
    type: Literal["auto", "any", "none", "tool"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class _Thinking(msgspec.Struct):
    type: str
    budget_tokens: int | None = None


class _Metadata(msgspec.Struct):
    user_id: str | None = None


class _OutputConfig(msgspec.Struct):
    effort: str | None = None


class CountTokensRequest(msgspec.Struct):
    model: str
    messages: list[_Message]
    system: str | list[_Block] | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    thinking: _Thinking | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = 0  # required: checked in parse (a Struct's required fields come first)
    stream: bool | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None  # Anthropic's range
    top_p: Probability | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    stop_sequences: list[str] | None = None
    metadata: _Metadata | None = None
    output_config: _OutputConfig | None = None


def parse(raw: bytes, schema: type[CountTokensRequest] = MessagesRequest) -> ParsedRequest:
    body = decode_object(raw)
    try:
        req = msgspec.convert(body, schema)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    if isinstance(req, MessagesRequest):
        if "max_tokens" not in body:
            raise InvalidRequest("Invalid request body: Object missing required field `max_tokens`", param="max_tokens")
        if req.max_tokens < 1:
            raise InvalidRequest("`max_tokens` must be at least 1", param="max_tokens")
    if not req.messages:
        raise InvalidRequest("`messages` must hold at least one message", param="messages")
    stream = bool(getattr(req, "stream", False))
    limit = req.max_tokens if isinstance(req, MessagesRequest) else None
    return ParsedRequest(body=body, model=req.model, stream=stream, typed=req, max_output_tokens=limit, raw=raw)


# -- to the canonical form -------------------------------------------------------------------


def _image(source: _Source | None) -> c.Image | None:
    if source is None:
        return None
    if source.type == "base64":
        return c.Image(source.media_type, source.data)
    if source.type == "url":
        return c.Image(url=source.url)
    return None


def _document(block: _Block) -> c.Document | None:
    source = block.source
    if source is None:
        return None
    kind = source.type
    if kind == "base64":
        return c.Document(source.media_type, source.data, title=block.title)
    if kind == "url":
        return c.Document(url=source.url, title=block.title)
    if kind == "text":
        return c.Document(text=source.data, title=block.title)
    if kind == "content" and isinstance(source.content, list):
        return c.Document(text="\n".join(b.text or "" for b in source.content), title=block.title)
    return None


def _result_content(content: str | list[_Block] | None) -> list[c.Text | c.Image]:
    if content is None:
        return []
    if isinstance(content, str):
        return [c.Text(content)]
    out: list[c.Text | c.Image] = []
    for block in content:
        if block.type == "text" and block.text is not None:
            out.append(c.Text(block.text))
        elif block.type == "image" and (image := _image(block.source)):
            out.append(image)
    return out


def _parts(content: str | list[_Block], dropped: set[str]) -> list[c.Part]:
    if isinstance(content, str):
        return [c.Text(content)]
    parts: list[c.Part] = []
    for block in content:
        part: c.Part | None = None
        if block.type == "text" and block.text is not None:
            part = c.Text(block.text)
        elif block.type == "image":
            part = _image(block.source)
        elif block.type == "document":
            part = _document(block)
        elif block.type == "tool_use" and block.id and block.name:
            part = c.ToolCall(block.id, block.name, orjson.dumps(block.input or {}).decode())
        elif block.type == "tool_result" and block.tool_use_id:
            part = c.ToolResult(block.tool_use_id, _result_content(block.content), bool(block.is_error))
        elif block.type == "thinking" and block.thinking is not None:
            part = c.Thinking(block.thinking, block.signature)
        elif block.type == "redacted_thinking" and block.data is not None:
            part = c.RedactedThinking(block.data)
        if part is None:
            dropped.add(f"content block {block.type!r}")
        else:
            parts.append(part)
    return parts


BILLING_HEADER = "x-anthropic-billing-header:"


def _system(system: str | list[_Block] | None) -> list[str]:
    """The system prompt's texts, but for Claude Code's per-request billing line (its first
    block, ``x-anthropic-billing-header: cc_version=…; cch=…;``): only Anthropic reads it,
    and it changes on every request, which would make every prefix cache elsewhere miss."""
    if system is None:
        return []
    texts = [system] if isinstance(system, str) else [b.text for b in system if b.type == "text" and b.text]
    return [text for text in texts if not text.startswith(BILLING_HEADER)]


def to_canonical(parsed: ParsedRequest) -> c.Request:
    req: MessagesRequest = parsed.typed
    dropped = {key for key in ("context_management", "container", "mcp_servers") if key in parsed.body}
    messages = [
        c.Message("system", [c.Text(t) for t in _system(m.content)]) if m.role == "system"
        else c.Message(m.role, _parts(m.content, dropped))
        for m in req.messages
    ]  # fmt: skip
    tools = []
    for tool in req.tools or ():
        if tool.type in (None, "custom") and tool.input_schema is not None:
            tools.append(c.Tool(tool.name, tool.description, tool.input_schema))
        else:
            dropped.add(f"tool {tool.name!r} of type {tool.type!r}")
    choice = req.tool_choice
    reasoning = None
    if req.thinking is not None and req.thinking.type == "enabled":
        reasoning = c.Reasoning(budget_tokens=req.thinking.budget_tokens)
    if req.output_config is not None and req.output_config.effort:
        reasoning = c.Reasoning(reasoning.budget_tokens if reasoning else None, req.output_config.effort)
    if dropped:
        log.info("translating from anthropic_messages: dropped %s", ", ".join(sorted(dropped)))
    return c.Request(
        model=req.model,
        messages=messages,
        system=_system(req.system),
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        stop=list(req.stop_sequences or ()),
        tools=tools,
        tool_choice=c.ToolChoice(choice.type, choice.name) if choice else None,
        parallel_tool_calls=False if choice and choice.disable_parallel_tool_use else None,
        reasoning=reasoning,
        user=req.metadata.user_id if req.metadata else None,
        stream=bool(req.stream),
    )


# -- from the canonical form (toward an Anthropic upstream) ------------------------------------

DEFAULT_MAX_TOKENS = 8192
MIN_THINKING_BUDGET = 1024
BUDGET_BY_EFFORT = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}


def _source(media_type: str | None, data: str | None, url: str | None) -> dict[str, Any]:
    if url is not None:
        return {"type": "url", "url": url}
    return {"type": "base64", "media_type": media_type or "image/png", "data": data or ""}


def _block(part: c.Part) -> dict[str, Any] | None:
    if isinstance(part, c.Text):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, c.Image):
        return {"type": "image", "source": _source(part.media_type, part.data, part.url)}
    if isinstance(part, c.Document):
        if part.text is not None:
            source = {"type": "text", "media_type": "text/plain", "data": part.text}
        else:
            source = _source(part.media_type or "application/pdf", part.data, part.url)
        return {"type": "document", "source": source} | ({"title": part.title} if part.title else {})
    if isinstance(part, c.ToolCall):
        arguments = tool_input(part.arguments)
        check_encodable(arguments, "tool call arguments")  # parsed here: nothing checked them yet
        return {"type": "tool_use", "id": anthropic_id(part.id), "name": part.name, "input": arguments}
    if isinstance(part, c.ToolResult):
        content = [b for p in part.content if (b := _block(p)) is not None]
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": anthropic_id(part.tool_call_id),
            "content": content,
        }
        if part.is_error:
            result["is_error"] = True
        return result
    if isinstance(part, c.Thinking):
        if part.signature is None:
            return None  # unsigned reasoning from another vendor: Anthropic would refuse it
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return {"type": "redacted_thinking", "data": part.data}


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as Anthropic's ``input`` object (what is not a JSON
    object is kept under ``arguments`` or ``value``)."""
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _messages(req: c.Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in req.messages:
        if message.role == "system":
            continue  # folded into ``system`` (no place for it in a turn without its beta)
        blocks = [b for p in message.parts if (b := _block(p)) is not None]
        if message.role == "user":  # tool results come first in a user turn
            blocks.sort(key=lambda b: b["type"] != "tool_result")
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": message.role, "content": blocks})
    return out


def _thinking(req: c.Request, target: c.Target, max_tokens: int) -> int | None:
    """The thinking budget to ask for, or None where Anthropic would refuse thinking."""
    if req.reasoning is None or not target.reasoning:
        return None
    budget = req.reasoning.budget_tokens or BUDGET_BY_EFFORT.get(req.reasoning.effort or "", 8192)
    if req.tool_choice is not None and req.tool_choice.mode in ("any", "tool"):
        return None  # Anthropic: thinking cannot be combined with a forced tool
    last = next((m.parts for m in reversed(req.messages) if m.role == "assistant"), [])
    calls = any(isinstance(p, c.ToolCall) for p in last)
    signed = any(isinstance(p, (c.Thinking, c.RedactedThinking)) and _block(p) for p in last)
    if calls and not signed:
        return None  # a tool turn without its signed thinking block cannot continue thinking
    budget = min(budget, max_tokens - 1)
    return budget if budget >= MIN_THINKING_BUDGET else None


def from_canonical(req: c.Request, target: c.Target) -> dict[str, Any]:
    if req.response_format is not None:
        log.info("translating to anthropic_messages: dropped response_format (no structured output)")
    max_tokens = req.max_tokens or DEFAULT_MAX_TOKENS
    if req.max_tokens is None and req.reasoning is not None and target.reasoning:
        max_tokens += BUDGET_BY_EFFORT.get(req.reasoning.effort or "", req.reasoning.budget_tokens or 8192)
    body: dict[str, Any] = {"model": target.model, "max_tokens": max_tokens, "messages": _messages(req)}
    later = [p.text for m in req.messages if m.role == "system" for p in m.parts if isinstance(p, c.Text)]
    if system := [*req.system, *later]:
        body["system"] = "\n\n".join(system)
    budget = _thinking(req, target, max_tokens)
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:  # with thinking on, Anthropic takes neither
        if req.temperature is not None:
            body["temperature"] = min(req.temperature, 1.0)  # OpenAI allows up to 2
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.top_k is not None:
            body["top_k"] = req.top_k
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.tools:
        body["tools"] = [
            {"name": t.name, "input_schema": t.parameters} | ({"description": t.description} if t.description else {})
            for t in req.tools
        ]
        if req.tool_choice is not None or req.parallel_tool_calls is False:
            choice = req.tool_choice or c.ToolChoice("auto")
            wire: dict[str, Any] = {"type": choice.mode}
            if choice.mode == "tool":
                wire["name"] = choice.name
            if req.parallel_tool_calls is False and choice.mode != "none":
                wire["disable_parallel_tool_use"] = True
            body["tool_choice"] = wire
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.stream:
        body["stream"] = True
    return body
