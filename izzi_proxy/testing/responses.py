"""A fake OpenAI Responses API (``/v1/responses``), served by ``fake_openai_app``.

``ResponseScript`` writes Responses answers (a ``Response`` object, or its typed SSE events)
for a request body, the scenario picked from the model name with the chat fake's words:

==========================  ==================================================================
model name contains          behaviour
==========================  ==================================================================
(anything else)              one message: "Echo: <last user text>" (+ "[N image(s)]") as
                             ``ChatScript.text``; after function_call_output: "Tool results: a; b"
``tools``                    ``function_call`` items for the first two function tools offered;
                             a prompt saying ``call <tool> <JSON>``: that one call
``reasoning``                with ``reasoning.effort`` set: a ``reasoning`` item first, summed up
                             if ``reasoning.summary`` is set, encrypted if ``include`` asks
``search``                   with a ``web_search*`` tool offered: a ``web_search_call`` first
``length``                   status ``incomplete`` (``max_output_tokens``)
``error_<status>``           answer that HTTP status with OpenAI's error envelope (401: the body
                             a wrong key gets, code ``invalid_api_key``; 429: type
                             ``requests``, code ``rate_limit_exceeded``, ``Retry-After: 1``)
``retry_<s>``                with an error answer: ``Retry-After: <s>`` (on any status)
``fail_first_<n>``           the first n requests for this exact model name (counted per app,
                             chat and Responses together) answer 500; later ones answer normally
``reset``                    drop the TCP connection after reading the request, before any
                             status line
``first_byte_<ms>``          wait that long before the status and headers (of any answer)
``preamble_error``           streamed: ``response.created``, ``response.in_progress``, then
                             ``error`` and ``response.failed``, no output item
``stream_error_after_<n>``   stream n deltas, then ``error`` and ``response.failed``;
                             n=0: ``error`` is the first event
``cut_after_<n>``            stream n deltas, then end cleanly without ``response.completed``
``abort_after_<n>``          stream n deltas, then drop the connection
``stall_after_<n>``          stream n deltas, then send nothing more, keeping the connection
                             open until the client goes (noted in ``DISCONNECTS``)
``slow_<ms>``                wait that long before the answer / each event
``hang``                     never answer
``linger``                   stream the whole answer, then keep the connection open without
                             ending it (until the client goes)
==========================  ==================================================================

"Deltas" are all ``*.delta`` events; the stream words shape streamed answers only. Unlike
the chat endpoint, this one serves the ``codex`` and ``-pro`` models like any other.

The server checks bodies against the ``openai`` SDK's request types, keeps ``store``d
responses for ``previous_response_id``, ``GET`` and ``DELETE``, and, as OpenAI does, requires
every ``function_call_output`` to answer an earlier call and rejects reasoning
``encrypted_content`` it did not produce (an HMAC of the item id).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import itertools
import secrets
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from izzi_proxy.testing.anthropic import _explain, _force, _Invalid, _split
from izzi_proxy.testing.openai import (
    FAILS,
    RECEIVED,
    Received,
    ScenarioScript,
    _sample,
    estimate_tokens,
    open_scenario,
    openai_error,
    openai_error_body,
    read_body,
    scripted_calls,
    stream_frames,
    unauthorized,
)

__all__ = ["RESPONSES", "KeptResponse", "ResponseScript", "responses_handlers", "sign_reasoning"]

_SECRET = b"izzi-fake-openai-reasoning-key"
_FAILURE = "Mock upstream error 500"


def sign_reasoning(item_id: str) -> str:
    """The ``encrypted_content`` the fake gives, and requires of, the reasoning item ``item_id``."""
    mac = hmac.new(_SECRET, item_id.encode(), hashlib.sha256).digest()
    return "enc:" + base64.urlsafe_b64encode(mac).decode()


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _parts_text(content: Any, kinds: tuple[str, ...] = ("input_text",)) -> tuple[str, int]:
    """The text of a message's (or tool output's) content, and how many images it holds."""
    if isinstance(content, str):
        return content, 0
    parts = [p for p in content or [] if isinstance(p, dict)]
    text = " ".join(p.get("text", "") for p in parts if p.get("type") in kinds)
    return text, sum(1 for p in parts if p.get("type") == "input_image")


def _item_text(item: dict[str, Any]) -> str:
    """All the text an input or output item carries, for token counts."""
    kind = item.get("type", "message")
    if kind in ("message", "function_call_output"):
        return _parts_text(item.get("content", item.get("output")), ("input_text", "output_text"))[0]
    summary = " ".join(s.get("text", "") for s in item.get("summary") or [])
    return str(item.get("arguments", "")) if kind == "function_call" else summary


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


@dataclass
class ResponseScript(ScenarioScript):
    """The answer OpenAI's Responses API would give to ``body``, after the ``history`` items of
    the ``previous_response_id`` chain (its inputs and outputs)."""

    body: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 4
    created_at: int = field(default_factory=lambda: int(time.time()))
    id: str = field(default_factory=lambda: _new_id("resp"))

    def __post_init__(self) -> None:
        self.model = str(self.body.get("model", ""))
        self.read_scenario(self.model)
        raw = self.body.get("input")
        items = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw
        self.conversation: list[dict[str, Any]] = [*self.history, *(items or [])]
        self.reasoning: dict[str, Any] = self.body.get("reasoning") or {}
        self.effort = self.reasoning.get("effort") if "reasoning" in self.model else None
        self.status = "incomplete" if "length" in self.model else "completed"
        self.final: dict[str, Any] | None = None  # the last response a stream reported

    # -- what to say ------------------------------------------------------------------

    def _results(self) -> list[str]:
        """The outputs of the ``function_call_output`` items the conversation ends with."""
        tail = itertools.takewhile(lambda i: i.get("type") == "function_call_output", reversed(self.conversation))
        return [_parts_text(item.get("output"))[0] for item in reversed(list(tail))]

    def _user(self) -> tuple[str, int]:
        last = next((m for m in reversed(self.conversation) if m.get("role") == "user"), {})
        return _parts_text(last.get("content"))

    def text(self) -> str:
        if results := self._results():
            return "Tool results: " + "; ".join(results)
        text, images = self._user()
        return f"Echo: {text}" + (f" [{images} image(s)]" if images else "")

    @property
    def thought(self) -> str:
        return f"Thinking ({self.effort}) about: {self.text()}"

    @functools.cached_property
    def output(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        tools = self.body.get("tools") or []
        if self.effort:
            item: dict[str, Any] = {"id": _new_id("rs"), "type": "reasoning", "summary": []}
            if self.reasoning.get("summary") or self.reasoning.get("generate_summary"):
                item["summary"] = [{"type": "summary_text", "text": self.thought}]
            if "reasoning.encrypted_content" in (self.body.get("include") or []):
                item["encrypted_content"] = sign_reasoning(item["id"])
            items.append(item)
        if "search" in self.model and any(str(t.get("type")).startswith("web_search") for t in tools):
            action = {"type": "search", "query": self._user()[0]}
            items.append({"id": _new_id("ws"), "type": "web_search_call", "status": "completed", "action": action})
        functions = [t for t in tools if t.get("type") == "function"]
        if "tools" in self.model and functions and not self._results():
            if scripted := scripted_calls(self._user()[0], [t["name"] for t in functions]):
                return items + [
                    {"id": _new_id("fc"), "type": "function_call", "status": "completed", "name": name,
                     "call_id": "call_" + secrets.token_hex(12), "arguments": orjson.dumps(arguments).decode()}
                    for name, arguments in scripted
                ]  # fmt: skip
            return items + [
                {"id": _new_id("fc"), "type": "function_call", "status": "completed",
                 "call_id": "call_" + secrets.token_hex(12), "name": tool["name"],
                 "arguments": orjson.dumps(_sample(tool.get("parameters") or {})).decode()}
                for tool in functions[:2]
            ]  # fmt: skip
        part = {"type": "output_text", "text": self.text(), "annotations": [], "logprobs": []}
        status = "incomplete" if self.status == "incomplete" else "completed"
        return [*items, {"id": _new_id("msg"), "type": "message", "status": status, "role": "assistant",
                         "content": [part]}]  # fmt: skip

    def usage(self) -> dict[str, Any]:
        instructions = self.body.get("instructions")
        prompt = estimate_tokens(instructions if isinstance(instructions, str) else "")
        prompt += sum(estimate_tokens(_item_text(item)) + 4 for item in self.conversation)
        thinking = estimate_tokens(self.thought) if self.effort else 0
        shown = [i for i in self.output if i["type"] != "reasoning"]
        visible = sum(estimate_tokens(_item_text(i)) + 8 * (i["type"] == "function_call") for i in shown)
        cached = prompt // 2 if self.body.get("prompt_cache_key") else 0
        return {"input_tokens": prompt, "output_tokens": visible + thinking,
                "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": thinking},
                "total_tokens": prompt + visible + thinking}  # fmt: skip

    def response(self, status: str | None = None) -> dict[str, Any]:
        """The ``Response`` object; with a ``status`` other than the final one, without output."""
        body, status = self.body, status or self.status
        done = status in ("completed", "incomplete")
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "background": False, "completed_at": int(time.time()) if status == "completed" else None,
            "error": {"code": "server_error", "message": _FAILURE} if status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"), "metadata": _or(body.get("metadata"), {}),
            "model": self.model, "output": self.output if done else [],
            "parallel_tool_calls": _or(body.get("parallel_tool_calls"), True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": _or(body.get("reasoning"), {"effort": None, "summary": None}),
            "safety_identifier": body.get("safety_identifier"), "service_tier": "default",
            "store": _or(body.get("store"), True), "temperature": _or(body.get("temperature"), 1.0),
            "text": {"format": {"type": "text"}, **(body.get("text") or {})},
            "tool_choice": _or(body.get("tool_choice"), "auto"), "tools": _or(body.get("tools"), []),
            "top_logprobs": _or(body.get("top_logprobs"), 0), "top_p": _or(body.get("top_p"), 1.0),
            "truncation": _or(body.get("truncation"), "disabled"),
            "usage": self.usage() if done else None, "user": body.get("user"),
        }  # fmt: skip

    @staticmethod
    def error_body(status: int, message: str = "", param: str | None = None, code: str | None = None) -> Any:
        """OpenAI's error envelope (4xx are ``invalid_request_error`` but 429)."""
        return openai_error_body(status, message, param, code)

    # -- streamed answer ----------------------------------------------------------------

    def frames(self) -> Iterator[bytes]:
        """The SSE frames of the streamed answer, numbered from 0; ends with
        ``response.completed`` (``response.incomplete`` for ``length``)."""
        for seq, (kind, data) in enumerate(self.events()):
            event = {"type": kind, **data, "sequence_number": seq}
            yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        stop_after = self.stop_after
        failing = "stream_error_after" in self.params
        # OpenAI documents flat code/message/param; it has been seen sending them nested under
        # "error" too, which is what makes the openai SDK raise. Both, so either reader copes.
        error = {"code": "server_error", "message": _FAILURE, "param": None}
        error["error"] = {"type": "server_error", **error}
        if stop_after == 0 and failing:
            yield "error", error
            return
        yield "response.created", {"response": self.response("in_progress")}
        yield "response.in_progress", {"response": self.response("in_progress")}
        if self.preamble_error:
            yield "error", error
            yield "response.failed", {"response": self.response("failed")}
            return
        sent = 0
        for index, item in enumerate(self.output):
            yield "response.output_item.added", {"output_index": index, "item": _opening(item)}
            for kind, data in _item_events(item, self.chunks):
                if kind.endswith(".delta"):
                    if sent == stop_after:
                        if failing:
                            yield "error", error
                            yield "response.failed", {"response": self.response("failed")}
                        return
                    sent += 1
                yield kind, {"item_id": item["id"], "output_index": index, **data}
            yield "response.output_item.done", {"output_index": index, "item": item}
        self.final = self.response()
        yield f"response.{self.status}", {"response": self.final}


def _opening(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as ``response.output_item.added`` shows it, before any delta."""
    empty = {"message": {"content": []}, "function_call": {"arguments": ""}, "reasoning": {"summary": []},
             "web_search_call": {"action": {"type": "search"}}}  # fmt: skip
    opened = {**item, **empty.get(item["type"], {})}
    opened.pop("encrypted_content", None)
    return opened if item["type"] == "reasoning" else {**opened, "status": "in_progress"}


def _item_events(item: dict[str, Any], chunks: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """The events between an item's ``added`` and ``done`` (``item_id``/``output_index`` aside)."""
    kind = item["type"]
    if kind == "message":
        for i, part in enumerate(item["content"]):
            at = {"content_index": i}
            yield "response.content_part.added", {**at, "part": {**part, "text": ""}}
            for piece in _split(part["text"], chunks):
                yield "response.output_text.delta", {**at, "delta": piece, "logprobs": []}
            yield "response.output_text.done", {**at, "text": part["text"], "logprobs": []}
            yield "response.content_part.done", {**at, "part": part}
    elif kind == "function_call":
        for piece in _split(item["arguments"], 3):
            yield "response.function_call_arguments.delta", {"delta": piece}
        yield "response.function_call_arguments.done", {"arguments": item["arguments"]}
    elif kind == "reasoning":
        for i, part in enumerate(item["summary"]):
            at = {"summary_index": i}
            yield "response.reasoning_summary_part.added", {**at, "part": {**part, "text": ""}}
            for piece in _split(part["text"], 2):
                yield "response.reasoning_summary_text.delta", {**at, "delta": piece}
            yield "response.reasoning_summary_text.done", {**at, "text": part["text"]}
            yield "response.reasoning_summary_part.done", {**at, "part": part}
    elif kind == "web_search_call":
        for step in ("in_progress", "searching", "completed"):
            yield f"response.web_search_call.{step}", {}


# -- request validation -----------------------------------------------------------------------


class _Rejected(Exception):
    """A request OpenAI would answer with 400 ``invalid_request_error``: (message, param, code)."""


@functools.cache
def _adapters() -> dict[str, Any]:
    """The SDK's request types as pydantic validators, built on first use (importing the SDK
    costs a second). ``input`` and ``tools`` are Iterables, which pydantic validates lazily,
    so they get adapters of their own and are checked item by item."""
    import pydantic
    from openai.types.responses import ResponseInputItemParam, ToolParam, response_create_params

    params = response_create_params.ResponseCreateParamsStreaming
    return {
        "stream": pydantic.TypeAdapter(params),
        "create": pydantic.TypeAdapter(response_create_params.ResponseCreateParamsNonStreaming),
        # what the SDK's types list, and what OpenAI takes beyond them: Codex sends
        # client_metadata (a map of strings) to api.openai.com on every request
        "known": frozenset(params.__required_keys__ | params.__optional_keys__ | {"client_metadata"}),
        "item": pydantic.TypeAdapter(ResponseInputItemParam),
        "tools": pydantic.TypeAdapter(list[ToolParam]),
        # the union members by name (as pydantic's errors name them): the ``type``s they take
        "kinds": {m.__name__: _literals(typing.get_type_hints(m).get("type"))
                  for m in typing.get_args(ResponseInputItemParam | ToolParam)},
    }  # fmt: skip


def _literals(hint: Any) -> set[str]:
    if typing.get_origin(hint) is typing.Literal:
        return set(typing.get_args(hint))
    return set().union(*map(_literals, typing.get_args(hint)))


def _explain_union(errors: list[Any], raw: Any, where: tuple[Any, ...]) -> str:
    """pydantic's errors for a union of TypedDicts, told for the member ``raw`` meant to be: of
    those taking its ``type`` ("message" if none), the one with the fewest errors."""
    groups: dict[Any, list[Any]] = {}
    for error in errors:
        groups.setdefault(error["loc"][:1], []).append({**error, "loc": error["loc"][1:]})
    kind, kinds = raw.get("type", "message") if isinstance(raw, dict) else None, _adapters()["kinds"]
    fitting = [g for name, g in groups.items() if kind in kinds.get(name[0] if name else "", ())]
    if not fitting and kind is not None:
        return ".".join(map(str, where)) + f".type: Invalid value: {kind!r}"
    return _explain(min(fitting or groups.values(), key=len), raw, where)


def _check(adapter: Any, value: Any, where: tuple[Any, ...], param: str | None = None) -> None:
    """Validate ``value``; a failure names ``param``, else the first key that failed. A list's
    items are unions of TypedDicts: its errors are told for the first item that failed."""
    import pydantic

    try:
        _force(adapter.validate_python(value, strict=True), value, where)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        if param is not None:
            raise _Rejected(_explain_union(errors, value, where), param) from None
        loc = errors[0]["loc"][:1]
        if isinstance(value, list) and loc and isinstance(loc[0], int):  # tools
            errors = [{**e, "loc": e["loc"][1:]} for e in errors if e["loc"][:1] == loc]
            message = _explain_union(errors, value[loc[0]], (*where, *loc))
            raise _Rejected(message, f"tools[{loc[0]}]") from None
        raise _Rejected(_explain(errors, value, where), ".".join(map(str, (*where, *loc)))) from None
    except _Invalid as exc:
        raise _Rejected(str(exc), param or ".".join(map(str, where))) from None


def _replayed(item: Any) -> Any:
    """An assistant message sent back as Codex does (output_text parts, no id or status): OpenAI
    takes it, the SDK's types do not, so it is checked as the output message it was."""
    content = item.get("content") if isinstance(item, dict) else None
    if not (isinstance(content, list) and item.get("role") == "assistant"):
        return item
    parts = [{"annotations": [], **p} if isinstance(p, dict) else p for p in content]
    return {"id": "msg_replayed", "status": "completed", "type": "message", **item, "content": parts}


def validate(body: Any, stored: dict[str, KeptResponse]) -> list[dict[str, Any]]:
    """The items that precede ``body``'s input (from ``previous_response_id``), or raise
    ``_Rejected`` with the 400 OpenAI would answer."""
    if not isinstance(body, dict):
        raise _Rejected("We could not parse the JSON body of your request.")
    for key, kind in (("model", str), ("input", str | list)):
        if not isinstance(body.get(key), kind):
            raise _Rejected(f"Missing required parameter: '{key}'.", key, "missing_required_parameter")
    adapters, items = _adapters(), body["input"]
    if unknown := sorted(set(body) - adapters["known"]):
        raise _Rejected(f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter")
    if not items:
        raise _Rejected("Invalid 'input': empty array. Expected an array with minimum length 1.", "input",
                        "empty_array")  # fmt: skip
    metadata = body.get("client_metadata", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise _Rejected("Invalid 'client_metadata': expected an object of strings.", "client_metadata")
    rest = {k: v for k, v in body.items() if k not in ("input", "tools", "client_metadata")}
    _check(adapters["stream" if body.get("stream") is True else "create"], rest, ())
    for i, item in enumerate(items if isinstance(items, list) else []):
        _check(adapters["item"], _replayed(item), ("input", i), f"input[{i}]")
    if "tools" in body:
        _check(adapters["tools"], body["tools"], ("tools",))
    if (limit := body.get("max_output_tokens")) is not None and limit < 16:
        expected = f"Expected a value >= 16, but got {limit} instead."
        raise _Rejected(f"Invalid 'max_output_tokens': integer below minimum value. {expected}",
                        "max_output_tokens", "integer_below_min_value")  # fmt: skip
    history: list[dict[str, Any]] = []
    if (previous := body.get("previous_response_id")) is not None:
        if previous not in stored:
            raise _Rejected(f"Previous response with id '{previous}' not found.", "previous_response_id",
                            "previous_response_not_found")  # fmt: skip
        history = stored[previous].conversation
    calls = {item.get("call_id") for item in history if item.get("type") == "function_call"}
    for item in items if isinstance(items, list) else []:
        kind = item.get("type")
        if kind == "function_call":
            calls.add(item["call_id"])
        elif kind == "function_call_output" and item.get("call_id") not in calls:
            call = item.get("call_id")
            raise _Rejected(f"No tool call found for function call output with call_id {call}.", "input")
        elif kind == "reasoning" and item.get("encrypted_content") is not None:
            signed = sign_reasoning(item["id"]).encode()
            if not hmac.compare_digest(str(item["encrypted_content"]).encode(), signed):
                raise _Rejected(f"The encrypted content for item {item['id']} could not be verified.",
                                None, "invalid_encrypted_content")  # fmt: skip
    return history


# -- the server -------------------------------------------------------------------------------


@dataclass
class KeptResponse:
    response: dict[str, Any]
    conversation: list[dict[str, Any]]  # every input item of the chain, then this response's output


RESPONSES: web.AppKey[dict[str, KeptResponse]] = web.AppKey("fake.responses")


def responses_handlers(app: web.Application, api_key: str | None, chunks: int = 4) -> dict[str, Any]:
    """Handlers for ``POST /v1/responses`` and ``GET``/``DELETE /v1/responses/{id}`` on ``app``
    (which holds ``RECEIVED``), keeping stored responses under ``app[RESPONSES]``."""
    app[RESPONSES] = {}
    app.setdefault(FAILS, {})  # fail_first_<n> counts (shared with the chat endpoint's)

    def error(status: int, message: str, param: str | None = None, code: str | None = None) -> web.Response:
        return web.json_response(ResponseScript.error_body(status, message, param, code), status=status)

    def admit(request: web.Request, body: Any) -> web.Response | None:
        app[RECEIVED].append(Received.of(request, body))
        if api_key and request.headers.get("Authorization") != f"Bearer {api_key}":
            return unauthorized(request)
        return None

    def keep(script: ResponseScript, answer: dict[str, Any] | None) -> None:
        if answer is not None and answer["store"]:
            app[RESPONSES][script.id] = KeptResponse(answer, [*script.conversation, *script.output])

    async def create(request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        if (denied := admit(request, body)) is not None:
            return denied
        try:
            history = validate(body, app[RESPONSES])
        except _Rejected as exc:
            return error(400, *exc.args)
        script = ResponseScript(body, history, chunks=chunks)
        if (instead := await open_scenario(app, request, script, functools.partial(openai_error, request))) is not None:
            return instead
        if not body.get("stream"):
            await asyncio.sleep(script.delay_s)
            keep(script, answer := script.response())
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        await stream_frames(app, request, response, script)
        keep(script, script.final)
        return response

    async def one(request: web.Request) -> web.StreamResponse:
        if (denied := admit(request, None)) is not None:
            return denied
        response_id = request.match_info["id"]
        if response_id not in app[RESPONSES]:
            return error(404, f"Response with id '{response_id}' not found.")
        if request.method == "DELETE":
            del app[RESPONSES][response_id]
            return web.json_response({"id": response_id, "object": "response", "deleted": True})
        return web.Response(body=orjson.dumps(app[RESPONSES][response_id].response),
                            content_type="application/json")  # fmt: skip

    return {"create": create, "retrieve": one, "delete": one}
