"""A fake Anthropic Messages API upstream, strict about what it accepts.

``MessageScript`` writes Anthropic Messages answers (plain and streamed) for a request body,
with the scenario picked from the model name, using the same words as the OpenAI fake:

==========================  ==================================================================
model name contains          behaviour
==========================  ==================================================================
(anything else)              echo: "Echo: <last user text>" (+ "[N image(s)]"); usage ~ chars/4;
                             after ``tool_result`` blocks: "Tool results: <a>; <b>"
``tools``                    ``tool_use`` blocks for the first two tools offered, ``input``
                             sampled from their ``input_schema``, stop_reason ``tool_use``; a
                             prompt saying ``call <tool> <JSON>``: that one call
``redacted``                 with thinking on, a ``redacted_thinking`` block after ``thinking``
``max_tokens``               stop_reason ``max_tokens``
``stop_seq``                 stop_reason ``stop_sequence``, the first of ``stop_sequences``
``error_<status>``           answer that HTTP status with Anthropic's error envelope (401:
                             ``authentication_error`` "invalid x-api-key"; 429:
                             ``rate_limit_error`` with ``Retry-After: 1``; 529:
                             ``overloaded_error`` "Overloaded")
``retry_<s>``                with an error answer: ``Retry-After: <s>`` (on any status)
``fail_first_<n>``           the first n requests for this exact model name (counted per app)
                             answer 500 ``api_error``; later ones answer normally
``reset``                    drop the TCP connection after reading the request, before any
                             status line
``first_byte_<ms>``          wait that long before the status and headers (of any answer)
``preamble_error``           streamed: ``message_start``, ``ping``, then ``event: error``
                             (``overloaded_error`` "Overloaded"), no content
``stream_error_after_<n>``   stream n content deltas, then ``event: error`` (overloaded_error);
                             n=0: the error is the first event, before ``message_start``
``cut_after_<n>``            stream n content deltas, then end cleanly without ``message_stop``
``abort_after_<n>``          stream n content deltas, then drop the connection
``stall_after_<n>``          stream n content deltas, then send nothing more, keeping the
                             connection open until the client goes (noted in ``DISCONNECTS``)
``slow_<ms>``                wait that long before the answer / each event
``hang``                     never answer
``linger``                   stream the whole answer, then keep the connection open without
                             ending it (until the client goes)
==========================  ==================================================================

The stream words shape streamed answers only. The scenario words apply to
``/v1/messages``; ``count_tokens`` always answers.

With ``thinking`` enabled (or adaptive) the answer starts with a ``thinking`` block whose
``signature`` is an HMAC of its text under a secret only the fake holds; every ``thinking``
or ``redacted_thinking`` block sent back in an assistant turn must verify, else 400, as
Anthropic answers altered thinking; and, as Anthropic requires, the assistant turn whose
tool calls the last turn answers must start with its thinking. ``role: "system"`` messages
in ``messages`` are taken only under the ``mid-conversation-system-2026-04-07`` beta.

``fake_anthropic_app()`` serves ``POST /v1/messages`` and ``/v1/messages/count_tokens``. It
checks the key (``x-api-key``, or ``Authorization: Bearer`` as the SDK 2.x sends it) and
``anthropic-version``, validates bodies against the ``anthropic`` SDK's request TypedDicts
(plus rules the API enforces that they cannot express: ``max_tokens``, the thinking budget,
roles, ``tool_use``/``tool_result`` pairing, ``cache_control``, signatures), and records every
request under ``RECEIVED``, rejected ones too. Cache breakpoints report 11 cache-creation and
22 cache-read tokens each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from izzi_proxy.testing.openai import (
    ScenarioScript,
    _sample,
    estimate_tokens,
    fake_app,
    open_scenario,
    received,
    schema_problem,
    scripted_calls,
    stream_frames,
)

__all__ = ["MessageScript", "fake_anthropic_app", "sign_thinking"]

_SECRET = b"izzi-fake-anthropic-thinking-key"
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 529: "overloaded_error"}  # fmt: skip
_MESSAGES = {401: "invalid x-api-key", 529: "Overloaded"}  # what Anthropic says with these
_CACHE_CREATION, _CACHE_READ = 11, 22  # tokens reported per cache_control breakpoint


def _mac(domain: bytes, data: bytes) -> bytes:
    return hmac.new(_SECRET, domain + b"\0" + data, hashlib.sha256).digest()


def sign_thinking(text: str) -> str:
    """The ``signature`` the fake gives, and requires of, a ``thinking`` block with this text."""
    return base64.b64encode(_mac(b"thinking", text.encode())).decode()


def _redact(text: str) -> str:
    raw = text.encode()
    return "redacted:" + base64.b64encode(_mac(b"redacted", raw) + raw).decode()


def _redaction_ok(data: Any) -> bool:
    if not (isinstance(data, str) and data.startswith("redacted:")):
        return False
    try:
        raw = base64.b64decode(data.removeprefix("redacted:"), validate=True)
    except binascii.Error:
        return False
    return len(raw) >= 32 and hmac.compare_digest(raw[:32], _mac(b"redacted", raw[32:]))


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _texts(content: Any) -> Iterator[str]:
    """Every piece of text in a ``system`` or message ``content``, for token counts."""
    for block in _blocks(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            yield block.get("text", "")
        elif kind == "thinking":
            yield block.get("thinking", "")
        elif kind == "tool_use":
            yield orjson.dumps(block.get("input", {})).decode()
        elif kind == "tool_result":
            yield from _texts(block.get("content"))


def _breakpoints(node: Any) -> list[dict[str, Any]]:
    """Every ``cache_control`` set anywhere in ``node``."""
    if isinstance(node, list):
        return [bp for item in node for bp in _breakpoints(item)]
    if not isinstance(node, dict):
        return []
    found = [node["cache_control"]] if isinstance(node.get("cache_control"), dict) else []
    return found + [bp for key, value in node.items() if key != "cache_control" for bp in _breakpoints(value)]


def _split(text: str, pieces: int) -> list[str]:
    step = max(1, math.ceil(len(text) / max(1, pieces)))
    return [text[i : i + step] for i in range(0, len(text), step)]


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


@dataclass
class MessageScript(ScenarioScript):
    """The answer Anthropic's Messages API would give to ``body``."""

    body: dict[str, Any]
    chunks: int = 4
    id: str = field(default_factory=lambda: "msg_" + secrets.token_hex(12))

    def __post_init__(self) -> None:
        self.model = str(self.body.get("model", ""))
        self.read_scenario(self.model)
        self.messages: list[dict[str, Any]] = list(self.body.get("messages") or [])

    def _last_user(self) -> list[Any]:
        users = [m.get("content") for m in self.messages if m.get("role") == "user"]
        return _blocks(users[-1] if users else [])

    def _user_text(self) -> str:
        return " ".join(b.get("text", "") for b in self._last_user() if isinstance(b, dict) and b.get("type") == "text")

    def text(self) -> str:
        blocks = [b for b in self._last_user() if isinstance(b, dict)]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if results:
            return "Tool results: " + "; ".join(" ".join(_texts(r.get("content"))) for r in results)
        text = " ".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        images = sum(1 for b in blocks if b.get("type") == "image")
        return f"Echo: {text}" + (f" [{images} image(s)]" if images else "")

    def _tool_uses(self) -> list[dict[str, Any]]:
        tools = [t for t in self.body.get("tools") or [] if "input_schema" in t]
        answered = any(isinstance(b, dict) and b.get("type") == "tool_result" for b in self._last_user())
        if "tools" not in self.model or answered:
            return []
        if scripted := scripted_calls(self._user_text(), [t["name"] for t in tools]):
            return [
                {"type": "tool_use", "id": f"toolu_{self.id[4:]}{i}", "name": name, "input": arguments}
                for i, (name, arguments) in enumerate(scripted)
            ]
        return [
            {"type": "tool_use", "id": f"toolu_{self.id[4:]}{i}", "name": tool["name"],
             "input": _sample(tool["input_schema"])}
            for i, tool in enumerate(tools[:2])
        ]  # fmt: skip

    @functools.cached_property
    def content(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        thinking = self.body.get("thinking") or {}
        if thinking.get("type") in ("enabled", "adaptive"):
            thought = f"The user wrote {len(self.messages)} message(s); I answer: {self.text()}"
            shown = "" if thinking.get("display") == "omitted" else thought
            blocks.append({"type": "thinking", "thinking": shown, "signature": sign_thinking(shown)})
            if "redacted" in self.model:
                blocks.append({"type": "redacted_thinking", "data": _redact(thought)})
        uses = self._tool_uses()
        return blocks + (uses or [{"type": "text", "text": self.text()}])

    @property
    def stop(self) -> tuple[str, str | None]:
        sequences = self.body.get("stop_sequences") or []
        if any(b["type"] == "tool_use" for b in self.content):
            return "tool_use", None
        if "max_tokens" in self.model:
            return "max_tokens", None
        if "stop_seq" in self.model and sequences:
            return "stop_sequence", sequences[0]
        return "end_turn", None

    @property
    def input_tokens(self) -> int:
        contents = [self.body.get("system"), *(m.get("content") for m in self.messages)]
        return estimate_tokens("".join(t for content in contents for t in _texts(content)))

    def usage(self) -> dict[str, Any]:
        output = sum(estimate_tokens("".join(_texts([b]))) for b in self.content)
        points = _breakpoints({k: self.body.get(k) for k in ("cache_control", "system", "tools", "messages")})
        hour = sum(1 for bp in points if bp.get("ttl") == "1h")
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": _CACHE_CREATION * len(points),
            "cache_read_input_tokens": _CACHE_READ * len(points),
            "cache_creation": {
                "ephemeral_5m_input_tokens": _CACHE_CREATION * (len(points) - hour),
                "ephemeral_1h_input_tokens": _CACHE_CREATION * hour,
            },
            "output_tokens": max(1, output),
            "service_tier": "standard",
        }

    def message(self) -> dict[str, Any]:
        stop_reason, stop_sequence = self.stop
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": self.content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
                "usage": self.usage()}  # fmt: skip

    @staticmethod
    def error_body(status: int, message: str | None = None, kind: str | None = None) -> dict[str, Any]:
        error = {"type": kind or _ERROR_TYPES.get(status, "api_error"),
                 "message": message or _MESSAGES.get(status, f"Mock upstream error {status}")}  # fmt: skip
        return {"type": "error", "error": error, "request_id": "req_" + secrets.token_hex(12)}

    # -- streamed answer ----------------------------------------------------------------

    def frames(self) -> Iterator[bytes]:
        """The SSE frames of the streamed answer, in order; ends with ``message_stop``."""
        stop_after = self.stop_after
        error = _event("error", {"error": {"type": "overloaded_error", "message": "Mock upstream error 529"}})
        if stop_after == 0 and "stream_error_after" in self.params:
            yield error
            return
        usage = self.usage()
        start = {**self.message(), "content": [], "stop_reason": None, "stop_sequence": None}
        yield _event("message_start", {"message": {**start, "usage": {**usage, "output_tokens": 1}}})
        yield _event("ping", {})
        if self.preamble_error:
            yield _event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
            return
        sent = 0
        for index, block in enumerate(self.content):
            yield _event("content_block_start", {"index": index, "content_block": _opening(block)})
            for delta in _deltas(block, self.chunks):
                if sent == stop_after:
                    if "stream_error_after" in self.params:
                        yield error
                    return
                yield _event("content_block_delta", {"index": index, "delta": delta})
                sent += 1
            yield _event("content_block_stop", {"index": index})
        stop_reason, stop_sequence = self.stop
        totals = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                        "cache_read_input_tokens", "output_tokens")}  # fmt: skip
        delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        yield _event("message_delta", {"delta": delta, "usage": totals})
        yield _event("message_stop", {})


def _opening(block: dict[str, Any]) -> dict[str, Any]:
    """A block as its ``content_block_start`` event shows it, before any delta."""
    empty = {"text": {"text": ""}, "thinking": {"thinking": "", "signature": ""}, "tool_use": {"input": {}}}
    return {**block, **empty.get(block["type"], {})}


def _deltas(block: dict[str, Any], chunks: int) -> list[dict[str, Any]]:
    kind = block["type"]
    if kind == "text":
        return [{"type": "text_delta", "text": p} for p in _split(block["text"], chunks)]
    if kind == "thinking":
        pieces = [{"type": "thinking_delta", "thinking": p} for p in _split(block["thinking"], chunks)]
        return [*pieces, {"type": "signature_delta", "signature": block["signature"]}]
    if kind == "tool_use":
        args = orjson.dumps(block["input"]).decode()
        return [{"type": "input_json_delta", "partial_json": p} for p in _split(args, 3)]
    return []


# -- request validation -----------------------------------------------------------------------


class _Invalid(Exception):
    """A request Anthropic would answer with 400 ``invalid_request_error``; the text is its message."""


@functools.cache
def _adapters() -> dict[str, Any]:
    """The SDK's request TypedDicts as pydantic validators (built once, on first use: importing
    ``anthropic`` costs most of a second, which the in-process mock provider need not pay)."""
    import pydantic
    from anthropic.types import MessageCountTokensParams
    from anthropic.types.message_create_params import (
        MessageCreateParamsNonStreaming,
        MessageCreateParamsStreaming,
    )

    return {
        "create": pydantic.TypeAdapter(MessageCreateParamsNonStreaming),
        "stream": pydantic.TypeAdapter(MessageCreateParamsStreaming),
        "count": pydantic.TypeAdapter(MessageCountTokensParams),
    }


def _explain(errors: list[Any], raw: Any, prefix: tuple[Any, ...]) -> str:
    """pydantic's errors as Anthropic-style ``path: message`` text. pydantic reports every union
    member that failed; drop those whose ``type``/``role`` literal did not match the input."""
    rejected = {e["loc"][:-1] for e in errors if e["type"] == "literal_error" and e["loc"][-1] in ("type", "role")}
    kept = [e for e in errors if not any(e["loc"][:i] in rejected for i in range(len(e["loc"])))] or errors
    lines: list[str] = []
    for error in kept:
        node, path, loc = raw, list(prefix), error["loc"]
        for n, part in enumerate(loc):  # keep the input's keys and indexes, not union members' names
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int):
                node = node[part] if part < len(node) else None
            elif not (n == len(loc) - 1 and error["type"] == "missing"):
                continue
            path.append(part)
        line = ".".join(map(str, path)) + ": " + error["msg"]
        lines += [line] if line not in lines else []
    return "; ".join(lines[:5])


def _force(value: Any, raw: Any, loc: tuple[Any, ...]) -> None:
    """pydantic validates ``Iterable`` fields lazily, as iterators: run them all."""
    import pydantic

    if isinstance(value, dict):
        for key, item in value.items():
            _force(item, raw.get(key) if isinstance(raw, dict) else None, (*loc, key))
    elif isinstance(value, list | tuple | Iterator):
        try:
            for i, item in enumerate(value):
                _force(item, raw[i] if isinstance(raw, list) and i < len(raw) else None, (*loc, i))
        except pydantic.ValidationError as exc:
            raise _Invalid(_explain(exc.errors(), raw, loc)) from None


MID_CONVERSATION_SYSTEM = "mid-conversation-system-2026-04-07"


def _validate(body: Any, endpoint: str, betas: str = "") -> None:
    """Raise ``_Invalid`` unless Anthropic would accept ``body`` at ``endpoint``, with the
    ``anthropic-beta`` header ``betas``."""
    import pydantic

    if not isinstance(body, dict):
        raise _Invalid("The request body is not a valid JSON object")
    kind = "stream" if endpoint == "create" and body.get("stream") is True else endpoint
    turns = _system_messages(body, MID_CONVERSATION_SYSTEM in betas.split(","))
    try:
        _force(_adapters()[kind].validate_python(turns), turns, ())
    except pydantic.ValidationError as exc:
        raise _Invalid(_explain(exc.errors(), body, ())) from None
    # What the API enforces beyond the TypedDicts' shapes:
    max_tokens = body.get("max_tokens")
    if endpoint == "create" and (type(max_tokens) is not int or max_tokens < 1):
        raise _Invalid("max_tokens: Input should be an integer greater than or equal to 1")
    for name in ("temperature", "top_p"):  # no longer in the SDK's TypedDicts, still checked by the API
        if (value := body.get(name)) is not None and (type(value) not in (int, float) or not 0 <= value <= 1):
            raise _Invalid(f"{name}: Input should be a number between 0 and 1")
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if type(budget) is not int or budget < 1024:
            raise _Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if endpoint == "create" and budget >= max_tokens:
            raise _Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    points = _breakpoints(body)
    if any(p.get("type") != "ephemeral" or p.get("ttl", "5m") not in ("5m", "1h") for p in points):
        raise _Invalid("cache_control: Input should be {'type': 'ephemeral'}, with a ttl of 5m or 1h")
    if len(points) > 4:
        raise _Invalid(f"A maximum of 4 blocks with cache_control may be provided. Found {len(points)}.")
    for i, tool in enumerate(body.get("tools") or []):
        if "input_schema" in tool and (problem := schema_problem(tool["input_schema"])):
            raise _Invalid(f"tools.{i}.custom.input_schema: JSON schema is invalid: {problem}")
    _check_turns(turns["messages"])
    if thinking.get("type") in ("enabled", "adaptive"):
        _check_thinking_first(turns["messages"])


def _system_messages(body: dict[str, Any], allowed: bool) -> dict[str, Any]:
    """``body`` without its mid-conversation system messages, which the SDK's types do not
    know; checked here: only under their beta, never first, text only."""
    messages = body.get("messages")
    if not allowed or not isinstance(messages, list):
        return body  # a system role is then refused as the types refuse it
    kept = []
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and message.get("role") == "system"):
            kept.append(message)
            continue
        if i == 0:
            raise _Invalid("messages.0.role: a system message cannot be the first message")
        blocks = _blocks(message.get("content"))
        if not blocks or any(not isinstance(b, dict) or b.get("type") != "text" for b in blocks):
            raise _Invalid(f"messages.{i}.content: a system message holds text blocks only")
    return {**body, "messages": kept}


def _check_thinking_first(messages: list[dict[str, Any]]) -> None:
    """With thinking on, the assistant turn whose tool calls the last turn answers must start
    with its (signed) thinking: a client that dropped it gets Anthropic's 400."""
    if len(messages) < 2 or not any(b.get("type") == "tool_result" for b in _blocks(messages[-1]["content"])):
        return
    i = len(messages) - 2
    first = _blocks(messages[i]["content"])[:1]
    if messages[i]["role"] == "assistant" and first and first[0].get("type") not in ("thinking", "redacted_thinking"):
        raise _Invalid(
            f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{first[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must start "
            "with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks)."
        )


def _check_turns(messages: list[dict[str, Any]]) -> None:
    if not messages:
        raise _Invalid("messages: at least one message is required")
    if messages[0]["role"] != "user":
        raise _Invalid('messages: first message must use the "user" role')
    previous_uses: set[str] = set()
    for i, message in enumerate(messages):
        if message["role"] not in ("user", "assistant"):
            raise _Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(message["content"])
        results = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
        for j, block in enumerate(blocks):
            kind, where = block.get("type"), f"messages.{i}.content.{j}"
            if kind == "tool_result" and block["tool_use_id"] not in previous_uses:
                raise _Invalid(
                    f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message."
                )
            if message["role"] != "assistant":
                continue
            signed = sign_thinking(block.get("thinking", "")).encode()
            if kind == "thinking" and not hmac.compare_digest(str(block["signature"]).encode(), signed):
                raise _Invalid(f"{where}: Invalid `signature` in `thinking` block")
            if kind == "redacted_thinking" and not _redaction_ok(block["data"]):
                raise _Invalid(f"{where}: Invalid `data` in `redacted_thinking` block")
        missing = sorted(previous_uses - results) if message["role"] == "user" else []
        if missing:
            raise _Invalid(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message."
            )
        uses = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        previous_uses = uses if message["role"] == "assistant" else set()


# -- the fake Anthropic server ------------------------------------------------------------------


def fake_anthropic_app(api_key: str | None = "sk-ant-test", chunks: int = 4) -> web.Application:
    """An aiohttp app that answers like Anthropic's ``/v1/messages`` and its ``count_tokens``."""
    app = fake_app()

    def error(status: int, message: str | None = None, kind: str | None = None) -> web.Response:
        body = MessageScript.error_body(status, message, kind)
        return web.json_response(body, status=status, headers={"request-id": body["request_id"]})

    async def accept(request: web.Request, endpoint: str) -> dict[str, Any] | web.Response:
        """The request's body if Anthropic would take it, else the error it would answer."""
        body = await received(app, request)
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")  # how anthropic>=2 sends it
        if api_key is not None and api_key not in (request.headers.get("x-api-key"), bearer):
            return error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error(400, "anthropic-version: header is required")
        try:
            _validate(body, endpoint, request.headers.get("anthropic-beta", ""))
        except _Invalid as exc:
            return error(400, str(exc))
        return body

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await accept(request, "create")
        if isinstance(body, web.Response):
            return body
        script = MessageScript(body, chunks=chunks)
        if (instead := await open_scenario(app, request, script, error)) is not None:
            return instead
        headers = {"request-id": "req_" + secrets.token_hex(12)}
        if not body.get("stream"):
            await asyncio.sleep(script.delay_s)
            return web.Response(body=orjson.dumps(script.message()), content_type="application/json",
                                headers=headers)  # fmt: skip
        headers |= {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        return await stream_frames(app, request, response, script)

    async def count_tokens(request: web.Request) -> web.Response:
        body = await accept(request, "count")
        if isinstance(body, web.Response):
            return body
        return web.json_response({"input_tokens": MessageScript(body).input_tokens})

    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    return app
