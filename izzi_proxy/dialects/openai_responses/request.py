"""OpenAI Responses requests: validation, history, and translation to the canonical form.

Responses clients (the openai SDK, Codex, n8n, LangChain) reach every model: an upstream
that speaks Responses gets the body as sent (``model`` rewritten; ``previous_response_id``
expanded from the gateway's own store, see ``with_history``), any other gets the
canonical form. Built-in tools (``web_search``, ``file_search``, ``local_shell``,
``custom``, ``mcp``, namespaced tools…) only run where Responses is spoken: toward other
upstreams they are dropped with a log line, and a request that *forces* one is refused
with a 400 naming it. Reasoning items carry Claude's thinking and its signature in
``encrypted_content`` (``ENCRYPTED_PREFIX``), so Codex-style clients that send reasoning back
keep multi-turn thinking working on Claude models.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from izzi_proxy import canonical as c
from izzi_proxy.bodies import decode_object
from izzi_proxy.dialects import ParsedRequest, parse_data_url
from izzi_proxy.dialects.openai_chat.request import Positive, Probability, Temperature, invalid
from izzi_proxy.errors import InvalidRequest

log = logging.getLogger("izzi.translate")

ENCRYPTED_PREFIX = "izzi-anthropic:"  # our encrypted_content: Claude's thinking and signature

# -- schema ----------------------------------------------------------------------------------


class _Part(msgspec.Struct):
    type: str
    text: str | None = None
    image_url: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    file_id: str | None = None
    filename: str | None = None
    refusal: str | None = None


class _Summary(msgspec.Struct):
    text: str = ""
    type: str = "summary_text"


class _Item(msgspec.Struct):
    type: str = "message"
    role: str | None = None
    content: str | list[_Part] | None = None
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[_Part] | None = None
    summary: list[_Summary] | None = None
    encrypted_content: str | None = None


class _Tool(msgspec.Struct):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _ToolChoice(msgspec.Struct):
    type: str
    name: str | None = None


class _Reasoning(msgspec.Struct):
    effort: str | None = None
    summary: str | None = None


class _Format(msgspec.Struct):
    type: str
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class _Text(msgspec.Struct):
    format: _Format | None = None


class ResponsesRequest(msgspec.Struct):
    model: str
    input: str | list[_Item] | None = None
    instructions: str | None = None
    max_output_tokens: Positive | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    tools: list[_Tool] | None = None
    tool_choice: str | _ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: _Reasoning | None = None
    text: _Text | None = None
    metadata: dict[str, str] | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    include: list[str] | None = None
    user: str | None = None
    safety_identifier: str | None = None


@dataclass(slots=True)
class Responses:
    """The Responses view of a parsed request: the validated body and what the answer echoes."""

    req: ResponsesRequest
    echo: dict[str, Any]  # request fields the response object repeats, as the client sent them
    history: list[dict[str, Any]] = field(default_factory=list)  # items before this turn's input


ROLES = ("user", "assistant", "system", "developer")
ECHOED = ("instructions", "max_output_tokens", "metadata", "parallel_tool_calls", "previous_response_id",
          "reasoning", "store", "temperature", "text", "tool_choice", "tools", "top_p", "user")  # fmt: skip


def _validated(body: dict[str, Any]) -> ResponsesRequest:
    try:
        req = msgspec.convert(body, ResponsesRequest)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    if req.input is None or req.input == "" or req.input == []:
        raise InvalidRequest("`input` must be a string or a non-empty array of items", param="input")
    for i, item in enumerate(req.input if isinstance(req.input, list) else ()):
        if item.type == "message" and item.role not in ROLES:
            raise InvalidRequest(f"`role` must be one of {', '.join(ROLES)}", param=f"input[{i}].role")
        if item.type in ("function_call", "function_call_output") and not item.call_id:
            raise InvalidRequest(f"A {item.type} item needs `call_id`", param=f"input[{i}].call_id")
    return req


def parse(raw: bytes) -> ParsedRequest:
    body = decode_object(raw)
    req = _validated(body)
    echo = {key: body[key] for key in ECHOED if key in body}
    return ParsedRequest(
        body=body, model=req.model, stream=bool(req.stream), typed=Responses(req, echo),
        max_output_tokens=req.max_output_tokens, raw=raw,
    )  # fmt: skip


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """This turn's input as a list of items (a string input is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return list(value or [])


def with_history(parsed: ParsedRequest, history: list[dict[str, Any]]) -> ParsedRequest:
    """``previous_response_id`` resolved: the stored conversation goes before this input, and
    the id is not sent upstream (the upstream may never have seen that response)."""
    body = {k: v for k, v in parsed.body.items() if k != "previous_response_id"}
    body["input"] = [*history, *input_items(parsed.body)]
    typed: Responses = parsed.typed
    view = Responses(_validated(body), typed.echo, history)
    return ParsedRequest(
        body=body, model=parsed.model, stream=parsed.stream, typed=view,
        max_output_tokens=parsed.max_output_tokens, raw=orjson.dumps(history) + parsed.raw,
    )  # fmt: skip


def strip_foreign_reasoning(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reasoning items whose encrypted content is ours (Claude's thinking): an OpenAI upstream
    could not verify them, so they are left out of a passthrough request."""
    return [
        item
        for item in items
        if not (item.get("type") == "reasoning" and str(item.get("encrypted_content", "")).startswith(ENCRYPTED_PREFIX))
    ]


# -- reasoning items <-> Claude's thinking -----------------------------------------------------


def encrypt(part: c.Thinking | c.RedactedThinking) -> str | None:
    if isinstance(part, c.RedactedThinking):
        payload: dict[str, str] = {"r": part.data}
    elif part.signature is not None:
        payload = {"t": part.text, "s": part.signature}
    else:
        return None
    return ENCRYPTED_PREFIX + base64.b64encode(orjson.dumps(payload)).decode()


def decrypt(value: str | None) -> c.Thinking | c.RedactedThinking | None:
    if not value or not value.startswith(ENCRYPTED_PREFIX):
        return None
    try:
        payload = orjson.loads(base64.b64decode(value[len(ENCRYPTED_PREFIX) :]))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(payload, dict):
        return None  # not what encrypt() writes: a forgery, left out like any foreign reasoning
    if isinstance(payload.get("r"), str):
        return c.RedactedThinking(payload["r"])
    text, signature = payload.get("t", ""), payload.get("s")
    if not isinstance(text, str) or not isinstance(signature, str):
        return None
    return c.Thinking(text, signature)


# -- to the canonical form -------------------------------------------------------------------


def _parts(content: str | list[_Part] | None, dropped: set[str]) -> list[c.Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [c.Text(content)] if content else []
    parts: list[c.Part] = []
    for part in content:
        if part.type in ("input_text", "output_text", "text") and part.text is not None:
            parts.append(c.Text(part.text))
        elif part.type == "refusal" and part.refusal is not None:
            parts.append(c.Text(part.refusal))
        elif part.type == "input_image" and part.image_url:
            inline = parse_data_url(part.image_url)
            parts.append(c.Image(*inline) if inline else c.Image(url=part.image_url))
        elif part.type == "input_file" and part.file_data:
            inline = parse_data_url(part.file_data)
            media, data = inline if inline else ("application/pdf", part.file_data)
            parts.append(c.Document(media, data, title=part.filename))
        elif part.type == "input_file" and part.file_url:
            parts.append(c.Document(url=part.file_url, title=part.filename))
        else:
            dropped.add(f"content part {part.type!r}" + (" (by file_id)" if part.file_id else ""))
    return parts


def _append(messages: list[c.Message], role: str, parts: list[c.Part]) -> None:
    """Add to the last turn when it has the same role (a function_call joins its assistant
    turn, parallel function_call_outputs one user turn)."""
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(c.Message(role, parts))  # type: ignore[arg-type]


def to_canonical(parsed: ParsedRequest) -> c.Request:
    view: Responses = parsed.typed
    req = view.req
    dropped: set[str] = set()
    system = [req.instructions] if req.instructions else []
    messages: list[c.Message] = []
    items = req.input if isinstance(req.input, list) else [_Item(role="user", content=req.input)]
    for item in items:
        if item.type == "message":
            parts = _parts(item.content, dropped)
            if item.role in ("system", "developer"):
                texts = [p for p in parts if isinstance(p, c.Text)]
                if messages:  # later instructions stay where they are
                    messages.append(c.Message("system", list(texts)))
                else:
                    system.extend(p.text for p in texts)
            elif parts:
                _append(messages, "assistant" if item.role == "assistant" else "user", parts)
        elif item.type == "function_call":
            _append(
                messages,
                "assistant",
                [c.ToolCall(item.call_id or "", item.name or "", item.arguments or "{}")],
            )
        elif item.type == "function_call_output":
            output = item.output if item.output is not None else ""
            content = [p for p in _parts(output, dropped) if isinstance(p, (c.Text, c.Image))]
            _append(messages, "user", [c.ToolResult(item.call_id or "", content)])
        elif item.type == "reasoning":
            thinking = decrypt(item.encrypted_content)
            if thinking is not None:
                _append(messages, "assistant", [thinking])
            # an OpenAI model's own encrypted reasoning means nothing to another vendor
        else:
            dropped.add(f"input item {item.type!r}")
    tools, forced = [], None
    for tool in req.tools or ():
        if tool.type == "function" and tool.name:
            tools.append(c.Tool(tool.name, tool.description, tool.parameters or {"type": "object", "properties": {}}))
        else:
            dropped.add(f"built-in tool {tool.type!r}")
    choice = _tool_choice(req.tool_choice)
    if isinstance(req.tool_choice, _ToolChoice) and req.tool_choice.type not in ("function", "allowed_tools"):
        forced = req.tool_choice.type
    if forced is not None:
        raise InvalidRequest(
            f"tool_choice forces the built-in tool {forced!r}, which model {req.model!r} cannot run: "
            "built-in tools need an upstream that speaks the Responses API",
            param="tool_choice",
        )
    if dropped:
        log.info("translating from openai_responses: dropped %s", ", ".join(sorted(dropped)))
    effort = req.reasoning.effort if req.reasoning else None
    return c.Request(
        model=req.model,
        messages=messages,
        system=system,
        max_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=req.parallel_tool_calls,
        reasoning=c.Reasoning(effort=effort) if effort else None,
        user=req.user or req.safety_identifier,
        stream=bool(req.stream),
        response_format=_response_format(req.text),
    )


def _tool_choice(choice: str | _ToolChoice | None) -> c.ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return c.ToolChoice({"auto": "auto", "none": "none", "required": "any"}.get(choice, "auto"))
    if choice.type == "function" and choice.name:
        return c.ToolChoice("tool", choice.name)
    return c.ToolChoice("auto")


def _response_format(text: _Text | None) -> dict[str, Any] | None:
    if text is None or text.format is None or text.format.type == "text":
        return None
    fmt = text.format
    if fmt.type == "json_schema":
        schema = {"name": fmt.name or "response", "schema": fmt.schema or {}}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description:
            schema["description"] = fmt.description
        return {"type": "json_schema", "json_schema": schema}
    return {"type": "json_object"} if fmt.type == "json_object" else None
