"""A fake OpenAI-compatible upstream, and the chat answers it and the mock provider give.

``ChatScript`` writes OpenAI chat answers (plain and streamed) for a request body, with the
scenario picked from the model name, like TensorZero's dummy provider:

==========================  ==================================================================
model name contains          behaviour
==========================  ==================================================================
(anything else)              echo: "Echo: <last user text>" (+ "[N image(s)]"); usage ~ chars/4
``tools``                    call the offered tools (two at once when two are offered), the
                             arguments streamed in pieces; after tool results, answer with them;
                             a prompt saying ``call <tool> <JSON>`` calls that one tool with
                             those arguments (``scripted_calls``)
``error_<status>``           answer that HTTP status with an OpenAI error body (401: the body
                             a wrong key gets, code ``invalid_api_key``; 429: type
                             ``requests``, code ``rate_limit_exceeded``, ``Retry-After: 1``)
``retry_<s>``                with an error answer: ``Retry-After: <s>`` (on any status)
``fail_first_<n>``           the first n requests for this exact model name (counted per app,
                             chat and Responses together) answer 500; later ones answer normally
``reset``                    drop the TCP connection after reading the request, before any
                             status line
``first_byte_<ms>``          wait that long before the status and headers (of any answer)
``preamble_error``           streamed: the role-only chunk, then ``data: {"error": ...}``
                             (server_error), no content, no ``[DONE]``
``stream_error_after_<n>``   stream n content chunks, then an in-stream error event
``cut_after_<n>``            stream n content chunks, then end cleanly without ``[DONE]``
``abort_after_<n>``          stream n content chunks, then drop the connection
``stall_after_<n>``          stream n content chunks, then send nothing more, keeping the
                             connection open until the client goes (noted in ``DISCONNECTS``)
``usage_in_choice``          usage on the last choice chunk, no separate usage chunk
``reasoning``                with ``reasoning_effort`` set: ``reasoning_content`` before the
                             answer ("Thinking (<effort>) about: <text>")
``length``                   finish_reason ``length``
``slow_<ms>``                wait that long before each chunk
``hang``                     never answer
``linger``                   stream the whole answer, then keep the connection open without
                             ending it (until the client goes)
``codex`` / ends ``-pro``    on ``/v1/chat/completions`` only: 400, "This model is only
                             supported in v1/responses and not in v1/chat/completions."
==========================  ==================================================================

The stream words (``stream_error_after``, ``cut_after``, ``abort_after``, ``stall_after``,
``preamble_error``, ``linger``) shape streamed answers only; a plain answer is unchanged.
Words combine: ``x-fail_first_2-first_byte_300`` is slow to answer, and fails twice.

``fake_openai_app()`` serves those over HTTP like OpenAI's API and records every request
it receives, so tests can assert what the gateway sent upstream. The in-process mock
provider (``plugins/mock``) plays the same scripts without a socket.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

__all__ = ["DISCONNECTS", "FAILS", "RECEIVED", "ChatScript", "Received", "fake_openai_app", "openai_error_body"]

_PARAM = re.compile(
    r"(error|stream_error_after|cut_after|abort_after|stall_after|slow|first_byte|retry|fail_first)_(\d+)"
)
_STOPS = ("stream_error_after", "cut_after", "abort_after", "stall_after")  # stop a stream after n pieces


def openai_error_body(status: int, message: str = "", param: str | None = None, code: str | None = None) -> Any:
    """OpenAI's error envelope: 4xx are ``invalid_request_error`` (429: ``requests``, code
    ``rate_limit_exceeded``; 401: code ``invalid_api_key``), 5xx ``server_error``."""
    kind = "requests" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    code = code or {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    message = message or f"Mock upstream error {status}"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def _text_of(content: Any) -> tuple[str, int]:
    """The text of a message's content, and how many images it holds."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return " ".join(texts), images


def _sample(schema: Any) -> Any:
    """A value for a JSON schema (what a model would fill a tool's arguments with)."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type") if isinstance(schema.get("type"), str) else None
    if kind == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else list(props)
        return {name: _sample(sub) for name, sub in props.items() if name in required}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    return {"string": "Hanoi", "integer": 3, "number": 1.5, "boolean": True, "array": []}.get(kind or "")


def schema_problem(schema: Any) -> str | None:
    """Why a tool's parameter schema would be refused by the APIs: it must describe an object."""
    if not isinstance(schema, dict):
        return "must be a JSON schema object"
    if schema.get("type") != "object":
        return "must be a JSON schema with type 'object'"
    if "properties" in schema and not isinstance(schema["properties"], dict):
        return "properties must be an object"
    return None


_CALL = re.compile(r"\bcall ([\w.-]+) (?=\{)")


def scripted_calls(text: str, offered: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The calls a prompt asks for in so many words: ``call <tool> <JSON arguments>``, each
    for a tool that is offered (how tests make a real client run one tool, with set
    arguments; twice in one prompt: parallel calls)."""
    calls = []
    for found in _CALL.finditer(text):
        if found.group(1) not in offered:
            continue
        try:
            arguments, _ = json.JSONDecoder().raw_decode(text, found.end())
        except ValueError:
            continue
        if isinstance(arguments, dict):
            calls.append((found.group(1), arguments))
    return calls


class ScenarioScript:
    """What every fake's script reads from the model name (see the tables)."""

    params: dict[str, int]
    hang: bool
    linger: bool
    reset: bool
    preamble_error: bool
    error_status: int | None
    delay_s: float
    first_byte_s: float

    def read_scenario(self, model: str) -> None:
        self.params = {name: int(value) for name, value in _PARAM.findall(model)}
        self.hang = "hang" in model
        self.linger = "linger" in model
        self.reset = "reset" in model
        self.preamble_error = "preamble_error" in model
        self.error_status = self.params.get("error")
        self.delay_s = self.params.get("slow", 0) / 1000
        self.first_byte_s = self.params.get("first_byte", 0) / 1000

    @property
    def stop_after(self) -> int | None:
        """After how many content pieces a stream stops (``*_after_<n>``), if it does."""
        return next((self.params[k] for k in _STOPS if k in self.params), None)

    @property
    def stalls(self) -> bool:
        """Whether the answer, once written, is kept open until the client goes."""
        return self.linger or "stall_after" in self.params


FAILS: web.AppKey[dict[str, int]] = web.AppKey("fake.fails")  # fail_first_<n>: requests seen per model


def fake_app() -> web.Application:
    """An app with what every fake keeps: the requests received, the clients that went
    away, the ``fail_first`` counts."""
    app = web.Application()
    app[RECEIVED] = []
    app[DISCONNECTS] = asyncio.Queue()
    app[FAILS] = {}
    return app


async def read_body(request: web.Request) -> Any:
    """The request's body: its JSON, else its text (a fake records what it could not parse too)."""
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


async def received(app: web.Application, request: web.Request) -> Any:
    """The request's body (``read_body``), noted under ``RECEIVED`` before any check."""
    body = await read_body(request)
    app[RECEIVED].append(Received.of(request, body))
    return body


async def open_scenario(
    app: web.Application, request: web.Request, script: ScenarioScript, error: Callable[[int], web.StreamResponse]
) -> web.StreamResponse | None:
    """What every fake plays once it has taken a request, before its answer: ``first_byte``,
    ``hang``, ``reset``, ``fail_first`` and ``error`` (``error(status)`` writes the vendor's error
    answer; ``Retry-After`` is added here). The answer to give instead of the script's, or None."""
    if script.first_byte_s:
        await asyncio.sleep(script.first_byte_s)
    if script.hang:
        await asyncio.Event().wait()
    if script.reset:
        assert request.transport is not None
        request.transport.abort()  # no status line: the client sees the connection drop
        return web.Response()  # never sent: aiohttp's write to the closed transport fails quietly
    status = script.error_status
    if (failing := script.params.get("fail_first")) is not None:
        seen = app[FAILS].get(script.model, 0)
        app[FAILS][script.model] = seen + 1
        status = 500 if seen < failing else status
    if not status:
        return None
    response = error(status)
    if status == 429 or "retry" in script.params:
        response.headers["Retry-After"] = str(script.params.get("retry", 1))
    return response


async def stream_frames(
    app: web.Application, request: web.Request, response: web.StreamResponse, script: Any
) -> web.StreamResponse:
    """Write a script's frames (``slow_<ms>`` apart), note a client that goes away under
    ``DISCONNECTS``, and end cleanly, or drop the connection for ``abort_after_<n>``, or
    (``linger``, ``stall_after_<n>``) keep the answer open after its last frame until the
    client goes."""
    try:
        for frame in script.frames():
            if script.delay_s:
                await asyncio.sleep(script.delay_s)
            await response.write(frame)
        if script.stalls:
            await asyncio.Event().wait()
    except (ConnectionResetError, asyncio.CancelledError):
        app[DISCONNECTS].put_nowait(script.model)
        raise
    if "abort_after" in script.params:
        assert request.transport is not None
        request.transport.abort()
        return response
    await response.write_eof()
    return response


@dataclass
class ChatScript(ScenarioScript):
    """The answer an OpenAI-compatible upstream would give to ``body``."""

    body: dict[str, Any]
    chunks: int = 4
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))

    def __post_init__(self) -> None:
        model = str(self.body.get("model", ""))
        self.model = model
        self.read_scenario(model)
        self.scenario_tools = "tools" in model
        self.usage_in_choice = "usage_in_choice" in model
        effort = self.body.get("reasoning_effort")
        self.reasoning = f"Thinking ({effort}) about: " if "reasoning" in model and effort else None
        self.finish_stop = "length" if "length" in model else "stop"

    # -- what to say ------------------------------------------------------------------

    def _tool_calls(self) -> list[dict[str, Any]] | None:
        messages = self.body.get("messages") or []
        tools = [t for t in self.body.get("tools") or [] if t.get("type") == "function"]
        if not (self.scenario_tools and tools) or (messages and messages[-1].get("role") == "tool"):
            return None
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        if scripted := scripted_calls(_text_of(last_user.get("content"))[0], [t["function"]["name"] for t in tools]):
            return [
                {"id": f"call_{i}_{self.id[-6:]}", "type": "function",
                 "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}}
                for i, (name, arguments) in enumerate(scripted)
            ]  # fmt: skip
        return [
            {
                "id": f"call_{i}_{self.id[-6:]}",
                "type": "function",
                "function": {
                    "name": tool["function"]["name"],
                    "arguments": orjson.dumps(_sample(tool["function"].get("parameters") or {})).decode(),
                },
            }
            for i, tool in enumerate(tools[:2])
        ]

    def text(self, choice: int = 0) -> str:
        messages = self.body.get("messages") or []
        if messages and messages[-1].get("role") == "tool":
            results = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
            return "Tool results: " + "; ".join(results)
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        text, images = _text_of(last_user.get("content"))
        reply = f"Echo: {text}" + (f" [{images} image(s)]" if images else "")
        return reply + (f" (choice {choice})" if choice else "")

    def usage(self) -> dict[str, Any]:
        prompt = sum(estimate_tokens(_text_of(m.get("content"))[0]) + 4 for m in self.body.get("messages") or [])
        calls = self._tool_calls()
        completion = (
            sum(estimate_tokens(c["function"]["arguments"]) + 8 for c in calls)
            if calls
            else sum(estimate_tokens(self.text(i)) for i in range(self.n))
        )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @property
    def n(self) -> int:
        return int(self.body.get("n") or 1)

    @staticmethod
    def error_body(status: int, message: str = "", param: str | None = None, code: str | None = None) -> Any:
        return openai_error_body(status, message, param, code)

    # -- plain answer -------------------------------------------------------------------

    def completion(self) -> dict[str, Any]:
        calls = self._tool_calls()
        choices = []
        for i in range(self.n):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if calls else self.text(i),
                "refusal": None,
                "annotations": [],
            }
            if calls:
                message["tool_calls"] = calls
            if self.reasoning:
                message["reasoning_content"] = self.reasoning + self.text(i)
            choices.append(
                {
                    "index": i,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if calls else self.finish_stop,
                }
            )
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_izzi_mock",
        }

    # -- streamed answer ----------------------------------------------------------------

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_izzi_mock",
            "choices": choices,
        }
        if self.include_usage or usage is not None:
            data["usage"] = usage
        return b"data: " + orjson.dumps(data) + b"\n\n"

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options") or {}
        return bool(options.get("include_usage"))

    def frames(self) -> Iterator[bytes]:
        """The SSE frames of the streamed answer, in order; ends with ``[DONE]``."""
        stop_after = self.stop_after
        failure = b"data: " + orjson.dumps(self.error_body(500)) + b"\n\n"  # how OpenAI fails a stream
        if stop_after == 0 and "stream_error_after" in self.params:
            yield failure  # failed at the start
            return

        def delta(i: int, d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": i, "delta": d, "logprobs": None, "finish_reason": finish}

        yield self._chunk([delta(i, {"role": "assistant", "content": "", "refusal": None}) for i in range(self.n)])
        if self.preamble_error:
            yield failure
            return
        calls = self._tool_calls()
        pieces: list[list[dict[str, Any]]] = []
        if self.reasoning:
            pieces.append([delta(0, {"reasoning_content": self.reasoning})])
            pieces.append([delta(0, {"reasoning_content": self.text(0)})])
        if calls:
            for index, call in enumerate(calls):
                args = call["function"]["arguments"]
                step = max(1, math.ceil(len(args) / 3))
                head = {"index": index, "id": call["id"], "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
                pieces.append([delta(0, {"tool_calls": [head]})])
                for start in range(0, len(args), step):
                    part = {"index": index, "function": {"arguments": args[start : start + step]}}
                    pieces.append([delta(0, {"tool_calls": [part]})])
        else:
            texts = [self.text(i) for i in range(self.n)]
            for k in range(self.chunks):
                row = []
                for i, text in enumerate(texts):
                    step = math.ceil(len(text) / self.chunks)
                    if part := text[k * step : (k + 1) * step]:
                        row.append(delta(i, {"content": part}))
                if row:
                    pieces.append(row)
        for sent, row in enumerate(pieces):
            if sent == stop_after:
                if "stream_error_after" in self.params:
                    yield failure
                return
            yield self._chunk(row)
        finish = "tool_calls" if calls else self.finish_stop
        if self.usage_in_choice:
            yield self._chunk([delta(i, {}, finish) for i in range(self.n)], usage=self.usage())
        else:
            yield self._chunk([delta(i, {}, finish) for i in range(self.n)])
            if self.include_usage:
                yield self._chunk([], usage=self.usage())
        yield b"data: [DONE]\n\n"


# -- the fake OpenAI-compatible server ------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: Any
    peer: str | None = None  # the client's host:port: the same for requests on one connection

    @classmethod
    def of(cls, request: web.Request, body: Any) -> Received:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return cls(request.method, request.path_qs, CIMultiDict(request.headers), body,
                   f"{peer[0]}:{peer[1]}" if peer else None)  # fmt: skip


def _shown(request: web.Request) -> str:
    """The presented key the way OpenAI quotes it in its 401: a few characters each end."""
    key = request.headers.get("Authorization", "").removeprefix("Bearer ")
    return f"{key[:6]}{'*' * 28}{key[-4:]}" if len(key) > 10 else key


def unauthorized(request: web.Request) -> web.Response:
    """OpenAI's 401 for the key ``request`` presented (for a wrong key, and ``error_401``)."""
    message = (f"Incorrect API key provided: {_shown(request)}. You can find your API key at "
               "https://platform.openai.com/account/api-keys.")  # fmt: skip
    return web.json_response(openai_error_body(401, message), status=401)


def openai_error(request: web.Request, status: int) -> web.Response:
    """The answer OpenAI gives with ``status`` (for ``open_scenario``)."""
    return unauthorized(request) if status == 401 else web.json_response(openai_error_body(status), status=status)


RESPONSES_ONLY = "This model is only supported in v1/responses and not in v1/chat/completions."


def responses_only(model: str) -> bool:
    """Whether OpenAI serves ``model`` on its Responses API only (the codex and -pro models)."""
    return "codex" in model or model.endswith("-pro")


RECEIVED: web.AppKey[list[Received]] = web.AppKey("fake.received")
DISCONNECTS: web.AppKey[asyncio.Queue[str]] = web.AppKey("fake.disconnects")
_API_KEY: web.AppKey[str | None] = web.AppKey("fake.api_key")


@functools.cache
def _validators() -> dict[str, Any]:
    """pydantic views of the openai SDK's request types, built on first use (importing the
    SDK costs a second; the mock provider imports this module)."""
    import pydantic
    from openai.types.chat import (
        ChatCompletionMessageParam,
        ChatCompletionToolChoiceOptionParam,
        ChatCompletionToolUnionParam,
    )

    return {
        "messages": pydantic.TypeAdapter(list[ChatCompletionMessageParam]),
        "tools": pydantic.TypeAdapter(list[ChatCompletionToolUnionParam]),
        "tool_choice": pydantic.TypeAdapter(ChatCompletionToolChoiceOptionParam),
    }


def invalid_request(body: Any) -> str | None:
    """Why OpenAI would refuse ``body`` (checked against the SDK's request types), or None.

    The SDK's ``CompletionCreateParams`` types ``messages`` as an Iterable, which pydantic
    validates lazily, so the lists are checked one by one here.
    """
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "`model` is required"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "`messages` must be a non-empty array"
    for key, adapter in _validators().items():
        if key in body:
            try:
                adapter.validate_python(body[key], strict=False)
            except Exception as exc:  # pydantic.ValidationError
                return f"Invalid `{key}`: {exc}"
    for i, tool in enumerate(body.get("tools") or []):
        parameters = (tool.get("function") or {}).get("parameters") if isinstance(tool, dict) else None
        if parameters is not None and (problem := schema_problem(parameters)):
            return f"Invalid schema for function in tools[{i}]: {problem}"
    if "max_tokens" in body and "max_completion_tokens" in body:
        return "Send `max_tokens` or `max_completion_tokens`, not both"
    if len(body.get("stop") or []) > 4 and isinstance(body.get("stop"), list):
        return "`stop` takes at most 4 sequences"
    ids = {c["id"] for m in body["messages"] if m.get("role") == "assistant" for c in m.get("tool_calls") or []}
    for message in body["messages"]:
        if message.get("role") == "tool" and message.get("tool_call_id") not in ids:
            return f"tool message answers unknown tool_call_id {message.get('tool_call_id')!r}"
    return None


def fake_openai_app(api_key: str | None = "sk-upstream-test", chunks: int = 4) -> web.Application:
    """An aiohttp app that answers like OpenAI's ``/v1/chat/completions``, ``/v1/models`` and
    ``/v1/responses`` (see ``izzi_proxy.testing.responses``)."""
    app = fake_app()
    app[_API_KEY] = api_key

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=orjson.loads)
        app[RECEIVED].append(Received.of(request, body))
        if api_key and request.headers.get("Authorization") != f"Bearer {api_key}":
            return unauthorized(request)
        if (problem := invalid_request(body)) is not None:
            return web.json_response(openai_error_body(400, problem), status=400)
        if responses_only(body["model"]):
            return web.json_response(openai_error_body(400, RESPONSES_ONLY, "model"), status=400)
        script = ChatScript(body, chunks=chunks)
        if (instead := await open_scenario(app, request, script, functools.partial(openai_error, request))) is not None:
            return instead
        if not body.get("stream"):
            await asyncio.sleep(script.delay_s)
            return web.Response(body=orjson.dumps(script.completion()), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        return await stream_frames(app, request, response, script)

    async def models(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "openai"}],
            }
        )

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    from izzi_proxy.testing.responses import responses_handlers  # imports this module

    responses = responses_handlers(app, api_key, chunks)
    app.router.add_post("/v1/responses", responses["create"])
    app.router.add_get("/v1/responses/{id}", responses["retrieve"])
    app.router.add_delete("/v1/responses/{id}", responses["delete"])
    return app
