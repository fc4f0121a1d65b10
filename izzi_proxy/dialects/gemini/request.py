"""Gemini ``GenerateContentRequest``: validation, and translation to the canonical form
(``wire`` writes the other way, toward a Gemini upstream).

The model and the streaming choice come from the URL (``models/{model}:generateContent``),
not the body. Field names are Google's camelCase; the snake_case spellings its REST API
also takes (``system_instruction``, ``inline_data``…, as Google's curl examples write them)
are read too. Translation keeps what the canonical form carries and drops the rest by the
rules in ``docs/translation.md``: safety settings, cached content, penalties, seeds and
Google's server tools (search, code execution) have no form elsewhere.

Tool-call ids are mapped explicitly. A ``functionResponse`` names its call by ``id`` where
the client kept the one the answer gave (the Gemini CLI does; it invents one where the
answer had none and writes it back); a response whose id matches no call of the turn before
is paired with that turn's first unanswered call of the same name, in order, so parallel
calls to one tool stay paired. Calls that come without ids get ``call_<turn>_<n>``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import orjson

from izzi_proxy import canonical as c
from izzi_proxy.bodies import decode_object
from izzi_proxy.dialects import ParsedRequest
from izzi_proxy.dialects.gemini import schema, signatures
from izzi_proxy.dialects.openai_chat.request import Probability, invalid
from izzi_proxy.errors import InvalidRequest

log = logging.getLogger("izzi.translate")

# The placeholder Google documents for function calls whose thought signature is unknown
# (a conversation from another model); the Gemini CLI writes it too.
SKIP_SIGNATURE = "skip_thought_signature_validator"
MAX_STOP_SEQUENCES = 5

# -- schema ----------------------------------------------------------------------------------


class _Blob(msgspec.Struct, rename="camel"):
    mime_type: str = "application/octet-stream"
    data: str = ""


class _FileData(msgspec.Struct, rename="camel"):
    file_uri: str
    mime_type: str | None = None


class _FunctionCall(msgspec.Struct):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class _FunctionResponse(msgspec.Struct):
    name: str = ""
    response: dict[str, Any] | None = None
    id: str | None = None
    parts: list[_Part] | None = None  # multimodal results (inlineData)


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    thought_signature: str | None = None
    inline_data: _Blob | None = None
    file_data: _FileData | None = None
    function_call: _FunctionCall | None = None
    function_response: _FunctionResponse | None = None
    executable_code: dict[str, Any] | None = None
    code_execution_result: dict[str, Any] | None = None


class Content(msgspec.Struct):
    parts: list[_Part] = []
    role: str | None = None


class _FunctionDeclaration(msgspec.Struct, rename="camel"):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: Any = None


class _Tool(msgspec.Struct, rename="camel"):
    function_declarations: list[_FunctionDeclaration] | None = None


class _FunctionCallingConfig(msgspec.Struct, rename="camel"):
    mode: str | None = None
    allowed_function_names: list[str] | None = None


class _ToolConfig(msgspec.Struct, rename="camel"):
    function_calling_config: _FunctionCallingConfig | None = None


class _ThinkingConfig(msgspec.Struct, rename="camel"):
    include_thoughts: bool | None = None
    thinking_budget: int | None = None
    thinking_level: str | None = None


class _GenerationConfig(msgspec.Struct, rename="camel"):
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Probability | None = None
    top_k: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    stop_sequences: list[str] | None = None
    candidate_count: Annotated[int, msgspec.Meta(ge=1)] | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: Any = None
    thinking_config: _ThinkingConfig | None = None


class GenerateContentRequest(msgspec.Struct, rename="camel"):
    contents: list[Content] = []
    system_instruction: Content | None = None
    tools: list[_Tool] | None = None
    tool_config: _ToolConfig | None = None
    generation_config: _GenerationConfig | None = None


class _CountTokensRequest(msgspec.Struct, rename="camel"):
    contents: list[Content] | None = None
    generate_content_request: GenerateContentRequest | None = None


@dataclass(slots=True)
class GeminiCall:
    """The typed view of a Gemini request: the body, and what the URL said."""

    req: GenerateContentRequest
    sse: bool = True  # a stream as SSE (``?alt=sse``), else Google's JSON array

    @property
    def include_thoughts(self) -> bool:
        config = self.req.generation_config
        thinking = config.thinking_config if config is not None else None
        return bool(thinking is not None and thinking.include_thoughts)


# -- snake_case spellings ----------------------------------------------------------------------

_SNAKE = re.compile(r"_([a-z])")


def _camel(value: Any, nested: tuple[str, ...] = ()) -> Any:
    """``value``'s keys in camelCase, and those of the objects under ``nested`` keys."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = _SNAKE.sub(lambda m: m.group(1).upper(), key) if "_" in key else key
        out[name] = _camel(item) if name in nested else item
    return out


def _camel_content(content: Any) -> Any:
    if not isinstance(content, dict):
        return content
    out = _camel(content)
    if isinstance(out.get("parts"), list):
        out["parts"] = [_camel(p, ("inlineData", "fileData")) for p in out["parts"]]
    return out


def _camel_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body's structural keys in camelCase (never the keys inside arguments or schemas)."""
    out = _camel(body)
    if isinstance(out.get("contents"), list):
        out["contents"] = [_camel_content(content) for content in out["contents"]]
    if "systemInstruction" in out:
        out["systemInstruction"] = _camel_content(out["systemInstruction"])
    if isinstance(out.get("tools"), list):
        tools = [_camel(tool) for tool in out["tools"]]
        for tool in tools:
            if isinstance(tool, dict) and isinstance(tool.get("functionDeclarations"), list):
                tool["functionDeclarations"] = [_camel(f) for f in tool["functionDeclarations"]]
        out["tools"] = tools
    if "toolConfig" in out:
        out["toolConfig"] = _camel(out["toolConfig"], ("functionCallingConfig",))
    if "generationConfig" in out:
        out["generationConfig"] = _camel(out["generationConfig"], ("thinkingConfig",))
    if "generateContentRequest" in out and isinstance(out["generateContentRequest"], dict):
        out["generateContentRequest"] = _camel_body(out["generateContentRequest"])
    return out


# -- parsing -------------------------------------------------------------------------------------

_ROLES = {"user": "user", "model": "assistant", "function": "user", None: "user"}
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")  # standard or URL-safe (as pydantic writes bytes)


def standard_base64(data: str) -> str:
    """``data`` in standard base64 with its padding (Google takes the URL-safe alphabet too;
    data URLs and Anthropic do not)."""
    if "-" in data or "_" in data:
        data = data.replace("-", "+").replace("_", "/")
    return data + "=" * (-len(data) % 4)


def _check(req: GenerateContentRequest, where: str = "") -> None:
    if not req.contents:
        raise InvalidRequest("* GenerateContentRequest.contents: contents is not specified", param=f"{where}contents")
    for i, content in enumerate(req.contents):
        if content.role not in _ROLES:
            raise InvalidRequest(
                f"Please use a valid role: user, model (contents[{i}].role is {content.role!r})",
                param=f"{where}contents[{i}].role",
            )
        for j, part in enumerate(content.parts):
            if part.inline_data is not None and not _BASE64.fullmatch(part.inline_data.data):
                raise InvalidRequest(
                    "Invalid value at 'inline_data.data': not base64",
                    param=f"{where}contents[{i}].parts[{j}].inlineData.data",
                )
    config = req.generation_config
    if config is not None and config.stop_sequences and len(config.stop_sequences) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"generationConfig.stopSequences: at most {MAX_STOP_SEQUENCES} stop sequences are allowed",
            param=f"{where}generationConfig.stopSequences",
        )


def parse(raw: bytes, model: str, stream: bool, sse: bool = True) -> ParsedRequest:
    body = _camel_body(decode_object(raw))
    try:
        req = msgspec.convert(body, GenerateContentRequest)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    _check(req)
    config = req.generation_config
    limit = config.max_output_tokens if config is not None else None
    typed = GeminiCall(req, sse)
    return ParsedRequest(body=body, model=model, stream=stream, typed=typed, max_output_tokens=limit, raw=raw)


def parse_count_tokens(raw: bytes, model: str) -> ParsedRequest:
    """``countTokens``: ``{"contents": …}``, or ``{"generateContentRequest": {…}}``."""
    body = _camel_body(decode_object(raw)) if raw.strip() else {}
    try:
        wrapper = msgspec.convert(body, _CountTokensRequest)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    if wrapper.generate_content_request is not None:
        req, where = wrapper.generate_content_request, "generateContentRequest."
    else:
        req, where = GenerateContentRequest(contents=wrapper.contents or []), ""
    _check(req, where)
    return ParsedRequest(body=body, model=model, stream=False, typed=GeminiCall(req), raw=raw)


# -- to the canonical form -----------------------------------------------------------------------


def _blob(blob: _Blob, dropped: set[str]) -> c.Part | None:
    mime, data = blob.mime_type, standard_base64(blob.data)
    if mime.startswith("image/"):
        return c.Image(mime, data)
    if mime == "application/pdf":
        return c.Document(mime, data)
    if mime.startswith("text/"):
        try:
            return c.Document(text=base64.b64decode(data).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            return None
    dropped.add(f"inlineData of type {mime!r}")
    return None


def _file(file: _FileData) -> c.Part:
    mime = file.mime_type or ""
    if mime.startswith("image/") or (not mime and re.search(r"\.(png|jpe?g|gif|webp)$", file.file_uri, re.I)):
        return c.Image(url=file.file_uri)
    return c.Document(mime or None, url=file.file_uri)


def _result_content(response: _FunctionResponse, dropped: set[str]) -> tuple[list[c.Text | c.Image], bool]:
    """A function response's content, and whether it reports an error. ``{"output": "…"}``
    (the CLI's), ``{"result": …}`` or ``{"content": …}`` give their text; other objects
    their JSON; ``{"error": …}`` marks an error."""
    body = response.response or {}
    is_error = set(body) == {"error"}
    only = next(iter(body.values())) if len(body) == 1 else None
    if len(body) == 1 and isinstance(only, str) and set(body) <= {"output", "result", "content", "error"}:
        text = only
    else:
        text = orjson.dumps(body).decode() if body else ""
    content: list[c.Text | c.Image] = [c.Text(text)] if text else []
    for part in response.parts or ():
        if part.inline_data is not None and isinstance(found := _blob(part.inline_data, dropped), c.Image):
            content.append(found)
        elif part.text:
            content.append(c.Text(part.text))
    return content, is_error


class _CallIds:
    """Pairs each function response with its call (see the module's docstring)."""

    def __init__(self) -> None:
        self._open: list[tuple[str, str]] = []  # (id, name) of the last model turn's unanswered calls

    def call(self, call: _FunctionCall, turn: int, n: int) -> str:
        call_id = call.id or f"call_{turn}_{n}"
        self._open.append((call_id, call.name))
        return call_id

    def new_turn(self) -> None:
        self._open = []

    def response(self, response: _FunctionResponse, turn: int, n: int) -> str:
        ids = [call_id for call_id, _ in self._open]
        if response.id and response.id in ids:
            chosen = ids.index(response.id)
        else:
            named = [i for i, (_, name) in enumerate(self._open) if name == response.name]
            chosen = named[0] if named else (0 if self._open else -1)
        if chosen < 0:
            return response.id or f"call_{turn}_{n}"
        return self._open.pop(chosen)[0]


def _turn_parts(content: Content, turn: int, ids: _CallIds, dropped: set[str]) -> list[c.Part]:
    parts: list[c.Part] = []
    if content.role == "model":  # Claude's signed thinking, carried by a call's signature (``signatures``)
        carried = (signatures.carried(p.thought_signature) for p in content.parts if p.thought_signature)
        parts += next((blocks for blocks in carried if blocks), [])
    for n, part in enumerate(content.parts):
        if part.function_call is not None:
            call = part.function_call
            parts.append(c.ToolCall(ids.call(call, turn, n), call.name, orjson.dumps(call.args or {}).decode()))
        elif part.function_response is not None:
            content_parts, is_error = _result_content(part.function_response, dropped)
            parts.append(c.ToolResult(ids.response(part.function_response, turn, n), content_parts, is_error))
        elif part.text is not None:
            if part.thought:
                parts.append(c.Thinking(part.text))  # unsigned: only ever shown, never sent to Anthropic
            elif part.text:
                parts.append(c.Text(part.text))
        elif part.inline_data is not None:
            if (blob := _blob(part.inline_data, dropped)) is not None:
                parts.append(blob)
        elif part.file_data is not None:
            parts.append(_file(part.file_data))
        elif part.executable_code is not None or part.code_execution_result is not None:
            dropped.add("code execution parts")
    return parts


def _messages(req: GenerateContentRequest, dropped: set[str]) -> list[c.Message]:
    ids = _CallIds()
    messages = []
    for turn, content in enumerate(req.contents):
        role = _ROLES[content.role]
        if role == "assistant":
            ids.new_turn()
        messages.append(c.Message(role, _turn_parts(content, turn, ids, dropped)))  # type: ignore[arg-type]
    return messages


def _tools(req: GenerateContentRequest, dropped: set[str]) -> list[c.Tool]:
    tools = []
    for tool in req.tools or ():
        if tool.function_declarations is None:
            dropped.add("Google's server tools")
            continue
        for declared in tool.function_declarations:
            if declared.parameters_json_schema is not None:
                parameters = declared.parameters_json_schema
            elif declared.parameters is not None:
                parameters = schema.to_json_schema(declared.parameters)
            else:
                parameters = {"type": "object", "properties": {}}
            tools.append(c.Tool(declared.name, declared.description, parameters))
    return tools


_MODES = {"AUTO": "auto", "VALIDATED": "auto", "ANY": "any", "NONE": "none"}


def _tool_choice(req: GenerateContentRequest, tools: list[c.Tool]) -> tuple[c.ToolChoice | None, list[c.Tool]]:
    config = req.tool_config.function_calling_config if req.tool_config is not None else None
    if config is None or config.mode is None:
        return None, tools
    mode = _MODES.get(config.mode.upper())
    if mode is None:
        raise InvalidRequest(
            f"toolConfig.functionCallingConfig.mode: {config.mode!r} is not one of AUTO, ANY, NONE, VALIDATED",
            param="toolConfig.functionCallingConfig.mode",
        )
    allowed = config.allowed_function_names
    if mode == "any" and allowed:
        tools = [tool for tool in tools if tool.name in allowed]
        if len(allowed) == 1:
            return c.ToolChoice("tool", allowed[0]), tools
    return c.ToolChoice(mode), tools  # type: ignore[arg-type]


def _reasoning(config: _GenerationConfig | None) -> c.Reasoning | None:
    thinking = config.thinking_config if config is not None else None
    if thinking is None:
        return None
    if thinking.thinking_level:
        return c.Reasoning(effort=thinking.thinking_level.lower())
    budget = thinking.thinking_budget
    if budget is None or budget == 0:
        return None  # not said, or thinking off
    if budget < 0:
        return c.Reasoning(effort="medium")  # -1: dynamic
    return c.Reasoning(budget_tokens=budget)


def _response_format(config: _GenerationConfig | None) -> dict[str, Any] | None:
    if config is None or config.response_mime_type != "application/json":
        return None
    found = config.response_json_schema
    if found is None and config.response_schema is not None:
        found = schema.to_json_schema(config.response_schema)
    if found is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": found}}


def to_canonical(parsed: ParsedRequest) -> c.Request:
    view: GeminiCall = parsed.typed
    req = view.req
    config = req.generation_config
    if config is not None and (config.candidate_count or 1) > 1:
        raise InvalidRequest(
            f"generationConfig.candidateCount: this model answers one candidate at a time (asked for "
            f"{config.candidate_count}); only Gemini models take more",
            param="generationConfig.candidateCount",
        )
    dropped = {
        name for name in ("safetySettings", "cachedContent") if name in parsed.body
    } | {f"generationConfig.{name}" for name in ("presencePenalty", "frequencyPenalty", "seed", "responseModalities")
         if name in (parsed.body.get("generationConfig") or {})}  # fmt: skip
    system = [p.text for p in (req.system_instruction.parts if req.system_instruction else ()) if p.text]
    messages = _messages(req, dropped)
    tool_choice, tools = _tool_choice(req, _tools(req, dropped))
    if dropped:
        log.info("translating from gemini: dropped %s", ", ".join(sorted(dropped)))
    return c.Request(
        model=parsed.model,
        messages=messages,
        system=system,
        max_tokens=config.max_output_tokens if config else None,
        temperature=config.temperature if config else None,
        top_p=config.top_p if config else None,
        top_k=config.top_k if config else None,
        stop=list(config.stop_sequences or ()) if config else [],
        tools=tools,
        tool_choice=tool_choice,
        reasoning=_reasoning(config),
        stream=parsed.stream,
        response_format=_response_format(config),
    )
