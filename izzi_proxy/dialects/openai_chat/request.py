"""OpenAI chat requests: validation, and translation to and from the canonical form.

The body is decoded once into a dict (forwarded with unknown fields untouched in
passthrough) and checked against msgspec Structs, whose errors name the field
(``$.messages[0].role``). Only the fields the gateway reads or translates are typed.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal

import msgspec

from izzi_proxy import canonical as c
from izzi_proxy.bodies import decode_object
from izzi_proxy.dialects import ParsedRequest, data_url, parse_data_url
from izzi_proxy.dialects.tool_ids import openai_id
from izzi_proxy.errors import InvalidRequest

log = logging.getLogger("izzi.translate")

# -- schema ----------------------------------------------------------------------------------


class _ImageURL(msgspec.Struct):
    url: str
    detail: str | None = None


class _File(msgspec.Struct):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class _ContentPart(msgspec.Struct):
    type: str
    text: str | None = None
    image_url: _ImageURL | None = None
    file: _File | None = None
    refusal: str | None = None


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


class _NamedFunction(msgspec.Struct):
    name: str


class _NamedToolChoice(msgspec.Struct):
    type: str
    function: _NamedFunction | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


# The ranges OpenAI's API enforces, so that what it would refuse is refused here, naming it.
Positive = Annotated[int, msgspec.Meta(ge=1)]
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]


class ChatRequest(msgspec.Struct):
    model: str
    messages: list[_Message]
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    max_tokens: Positive | None = None
    max_completion_tokens: Positive | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    stop: str | list[str] | None = None
    tools: list[_Tool] | None = None
    tool_choice: str | _NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    user: str | None = None


_AT = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_PART_NEEDS = {"text": "text", "image_url": "image_url", "file": "file"}


def invalid(exc: msgspec.MsgspecError) -> InvalidRequest:
    """A 400 whose ``param`` is the offending field's path, e.g. ``messages[0].role``."""
    text = str(exc)
    at = m.group(1) if (m := _AT.search(text)) else ""
    if missing := _MISSING.search(text):
        at = f"{at}.{missing.group(1)}" if at else missing.group(1)
    return InvalidRequest(f"Invalid request body: {text}", param=at or None)


def parse(raw: bytes) -> ParsedRequest:
    body = decode_object(raw)
    try:
        req = msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
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
    return ParsedRequest(
        body=body, model=req.model, stream=bool(req.stream), typed=req,
        max_output_tokens=req.max_completion_tokens or req.max_tokens, raw=raw,
    )  # fmt: skip


# -- to the canonical form -------------------------------------------------------------------


def _parts(content: str | list[_ContentPart] | None, dropped: set[str]) -> list[c.Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [c.Text(content)] if content else []
    parts: list[c.Part] = []
    for part in content:
        if part.type == "text" and part.text is not None:
            parts.append(c.Text(part.text))
        elif part.type == "refusal" and part.refusal is not None:
            parts.append(c.Text(part.refusal))
        elif part.type == "image_url" and part.image_url is not None:
            inline = parse_data_url(part.image_url.url)
            parts.append(c.Image(*inline) if inline else c.Image(url=part.image_url.url))
        elif part.type == "file" and part.file is not None and part.file.file_data:
            inline = parse_data_url(part.file.file_data)
            if inline:
                parts.append(c.Document(inline[0], inline[1], title=part.file.filename))
            else:
                dropped.add("file part without inline data")
        else:
            dropped.add(f"content part {part.type!r}")
    return parts


def to_canonical(parsed: ParsedRequest) -> c.Request:
    req: ChatRequest = parsed.typed
    dropped: set[str] = set()
    system: list[str] = []
    messages: list[c.Message] = []
    for message in req.messages:
        if message.role in ("system", "developer"):
            texts = [p for p in _parts(message.content, dropped) if isinstance(p, c.Text)]
            if messages:  # later instructions stay where they are
                messages.append(c.Message("system", list(texts)))
            else:
                system.extend(p.text for p in texts)
        elif message.role in ("tool", "function"):
            result = c.ToolResult(
                message.tool_call_id or message.name or "",
                [p for p in _parts(message.content, dropped) if isinstance(p, (c.Text, c.Image))],
            )
            if (
                messages
                and messages[-1].role == "user"
                and all(isinstance(p, c.ToolResult) for p in messages[-1].parts)
            ):
                messages[-1].parts.append(result)  # parallel results: one user turn
            else:
                messages.append(c.Message("user", [result]))
        elif message.role == "user":
            messages.append(c.Message("user", _parts(message.content, dropped)))
        else:
            parts = _parts(message.content, dropped)
            parts += [c.ToolCall(t.id, t.function.name, t.function.arguments) for t in message.tool_calls or ()]
            messages.append(c.Message("assistant", parts))
    tools = []
    for tool in req.tools or ():
        if tool.type == "function" and tool.function is not None:
            params = tool.function.parameters or {"type": "object", "properties": {}}
            tools.append(c.Tool(tool.function.name, tool.function.description, params))
        else:
            dropped.add(f"tool of type {tool.type!r}")
    if dropped:
        log.info("translating from openai_chat: dropped %s", ", ".join(sorted(dropped)))
    return c.Request(
        model=req.model,
        messages=messages,
        system=system,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=[req.stop] if isinstance(req.stop, str) else list(req.stop or ()),
        tools=tools,
        tool_choice=_tool_choice(req.tool_choice),
        parallel_tool_calls=req.parallel_tool_calls,
        reasoning=c.Reasoning(effort=req.reasoning_effort) if req.reasoning_effort else None,
        user=req.user,
        stream=bool(req.stream),
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
    )


def _tool_choice(choice: str | _NamedToolChoice | None) -> c.ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return c.ToolChoice({"auto": "auto", "none": "none", "required": "any"}.get(choice, "auto"))
    if choice.function is not None:
        return c.ToolChoice("tool", choice.function.name)
    return c.ToolChoice("auto")


# -- from the canonical form (toward an OpenAI-compatible upstream) ----------------------------

EFFORT_BY_BUDGET = ((2048, "low"), (8192, "medium"))  # above: high
MAX_STOP_SEQUENCES = 4


def effort_of(reasoning: c.Reasoning) -> str:
    if reasoning.effort:
        return reasoning.effort
    budget = reasoning.budget_tokens or 0
    return next((effort for limit, effort in EFFORT_BY_BUDGET if budget <= limit), "high")


def _content(parts: list[c.Part]) -> str | list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, c.Text):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, c.Image):
            url = part.url or data_url(part.media_type, part.data)
            out.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(part, c.Document):
            if part.text is not None:
                out.append({"type": "text", "text": part.text})
            elif part.data is not None:
                file = {
                    "filename": part.title or "document.pdf",
                    "file_data": data_url(part.media_type, part.data),
                }
                out.append({"type": "file", "file": file})
            else:
                out.append({"type": "text", "text": f"[document: {part.url}]"})
    if len(out) == 1 and out[0]["type"] == "text":
        return out[0]["text"]
    return out


def sampling(req: c.Request, target: c.Target) -> dict[str, float]:
    """``temperature`` and ``top_p`` as the request gives them; OpenAI's reasoning models
    take neither (so toward them both are dropped)."""
    if target.reasoning:
        return {}
    return {
        name: value for name, value in (("temperature", req.temperature), ("top_p", req.top_p)) if value is not None
    }


def from_canonical(req: c.Request, target: c.Target) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": "\n\n".join(req.system)})
    for message in req.messages:
        if message.role == "system":
            if text := "\n\n".join(p.text for p in message.parts if isinstance(p, c.Text)):
                messages.append({"role": "system", "content": text})
            continue
        if message.role == "assistant":
            text = "".join(p.text for p in message.parts if isinstance(p, c.Text))
            calls = [
                {"id": openai_id(p.id), "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
                for p in message.parts
                if isinstance(p, c.ToolCall)
            ]
            if not (text or calls):
                continue  # only thinking, which is bound to Anthropic: nothing to send
            out: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                out["tool_calls"] = calls
            messages.append(out)
            continue
        rest: list[c.Part] = []
        for part in message.parts:
            if isinstance(part, c.ToolResult):
                texts = [p.text for p in part.content if isinstance(p, c.Text)]
                content = "\n".join(texts) or ("(error)" if part.is_error else "")
                messages.append({"role": "tool", "tool_call_id": openai_id(part.tool_call_id), "content": content})
                rest.extend(p for p in part.content if isinstance(p, c.Image))  # images follow as user
            else:
                rest.append(part)
        if rest:
            messages.append({"role": "user", "content": _content(rest)})
    body: dict[str, Any] = {"model": target.model, "messages": messages}
    if req.max_tokens is not None:
        body["max_completion_tokens" if target.reasoning else "max_tokens"] = req.max_tokens
    body.update(sampling(req, target))
    if target.reasoning and req.reasoning is not None:
        body["reasoning_effort"] = effort_of(req.reasoning)
    if req.stop:
        body["stop"] = req.stop[:MAX_STOP_SEQUENCES]
    if req.tools:
        body["tools"] = [{"type": "function", "function": _function(tool)} for tool in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = _wire_tool_choice(req.tool_choice)
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.user:
        body["user"] = req.user
    if req.response_format is not None:
        body["response_format"] = req.response_format
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _function(tool: c.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return function


def _wire_tool_choice(choice: c.ToolChoice) -> Any:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.mode]
