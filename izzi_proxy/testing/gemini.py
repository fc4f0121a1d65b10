"""A fake Gemini API upstream (``generativelanguage.googleapis.com``), strict about what it accepts.

``GeminiScript`` writes ``GenerateContentResponse`` objects, plain and streamed (SSE, as
``?alt=sse`` asks), with the scenario picked from the model name as in the other fakes:

==========================  ==================================================================
model name contains          behaviour
==========================  ==================================================================
(anything else)              echo: "Echo: <last user text>" (+ "[N image(s)]"); usage ~ chars/4;
                             after ``functionResponse`` parts: "Tool results: <a>; <b>"
``tools``                    a ``functionCall`` for each of the first two functions declared,
                             ``args`` sampled from their schema; a prompt saying
                             ``call <fn> <JSON>`` (once or more): those calls
``max_tokens``               finishReason ``MAX_TOKENS``
(``responseMimeType``)       ``application/json``: the text is a value sampled from
                             ``responseJsonSchema`` (or ``responseSchema``)
``error_<status>``           answer that HTTP status in Google's error envelope (429:
                             ``RESOURCE_EXHAUSTED`` with ``Retry-After: 1``)
``retry_<s>``, ``fail_first_<n>``, ``reset``, ``first_byte_<ms>``, ``slow_<ms>``, ``hang``,
``stall_after_<n>``, ``abort_after_<n>``, ``linger``: as in the OpenAI fake's table
``stream_error_after_<n>``   stream n text pieces, then an object ``{"error": …}``
==========================  ==================================================================

With ``thinkingConfig.includeThoughts`` the answer starts with a ``thought`` part. Every
answer's first function call (else its first part) carries a ``thoughtSignature`` (an HMAC
under a secret only the fake holds), as Gemini 3 gives them; for models named ``gemini-3…`` each model turn's first
``functionCall`` sent back must carry a signature the fake gave or one of Google's
documented placeholders, else 400, as Gemini 3 answers. ``parameters`` schemas are held to
Google's ``Schema`` (``$schema``, ``additionalProperties``, ``$ref``… refused, as the API
refuses unknown fields); ``parametersJsonSchema`` takes JSON Schema. Each
``functionResponse`` must answer a ``functionCall`` of the model turn before it (by ``id``
where the call had one). The key is checked in ``x-goog-api-key`` or ``?key=``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import math
import re
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
    scripted_calls,
    stream_frames,
)

__all__ = ["GeminiScript", "fake_gemini_app", "sign_part", "signed_by_fake"]

_SECRET = b"izzi-fake-gemini-signature-key"
PLACEHOLDERS = frozenset({"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"})
_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
             429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}  # fmt: skip
_SCHEMA_FIELDS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
        "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
        "propertyOrdering", "default", "items", "minimum", "maximum",
    }
)  # fmt: skip
_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
_METHOD = re.compile(r"^/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$")


def _mac(text: str) -> bytes:
    return hmac.new(_SECRET, text.encode(), hashlib.sha256).digest()


def sign_part(text: str) -> str:
    """The ``thoughtSignature`` the fake gives an answer's first function call (of this
    name), or its first part (with this text) when it calls none."""
    return base64.b64encode(_mac(text)).decode()


def signed_by_fake(signature: str, text: str) -> bool:
    """Whether a signature is the fake's for this text, in either base64 alphabet (the
    google-genai SDKs send bytes back URL-safe, which Google takes)."""
    try:
        raw = base64.b64decode(signature.replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(raw, _mac(text))


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    return {"error": {"code": status, "message": message or f"Mock upstream error {status}",
                      "status": _STATUSES.get(status, "UNKNOWN")}}  # fmt: skip


def _schema(json_schema: Any, google: Any) -> Any:
    """A JSON Schema to sample values from: the one given, else Google's with its upper-case
    type names lowered (all the sampler reads of it)."""
    return json_schema if json_schema is not None else _lowered(google or {})


def _lowered(node: Any) -> Any:
    if isinstance(node, list):
        return [_lowered(item) for item in node]
    if isinstance(node, dict):
        return {k: v.lower() if k == "type" and isinstance(v, str) else _lowered(v) for k, v in node.items()}
    return node


class _Invalid(Exception):
    """A request Gemini would answer with 400 ``INVALID_ARGUMENT``."""


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise _Invalid(f"Invalid JSON payload received. {where}: not an object")
    for key, value in schema.items():
        if key not in _SCHEMA_FIELDS:
            raise _Invalid(f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.")
        if key == "type" and str(value).upper() not in _TYPES:
            raise _Invalid(f"Invalid value at '{where}.type': {value!r}")
    properties, alternatives = schema.get("properties", {}), schema.get("anyOf", [])
    if not isinstance(properties, dict) or not isinstance(alternatives, list):
        raise _Invalid(f"Invalid JSON payload received. Invalid value at '{where}'")
    if str(schema.get("type", "")).upper() == "OBJECT" and "properties" in schema and not properties:
        raise _Invalid(f"{where}.properties: should be non-empty for OBJECT type")
    for name, sub in properties.items():
        _check_schema(sub, f"{where}.properties[{name}]")
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(alternatives):
        _check_schema(sub, f"{where}.anyOf[{i}]")


def _validate(body: Any, model: str) -> None:
    if not isinstance(body, dict):
        raise _Invalid("Invalid JSON payload received.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _Invalid("* GenerateContentRequest.contents: contents is not specified")
    for t, tool in enumerate(body.get("tools") or []):
        for f, declared in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{t}].function_declarations[{f}]"
            if "parameters" in declared and "parametersJsonSchema" in declared:
                raise _Invalid(f"{where}: parameters and parameters_json_schema cannot both be set")
            if "parameters" in declared:
                _check_schema(declared["parameters"], f"{where}.parameters")
    calls: list[dict[str, Any]] = []
    for i, content in enumerate(contents):
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _Invalid("Please use a valid role: user, model.")
        parts = content.get("parts") or []
        if not parts:
            raise _Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        if role == "model":
            calls = [p["functionCall"] for p in parts if "functionCall" in p]
            first = next((p for p in parts if "functionCall" in p), None)
            signature = first.get("thoughtSignature") if first else None
            if first is not None and model.startswith("gemini-3"):
                if not signature:
                    raise _Invalid(
                        f"Function call is missing a thought_signature in functionCall parts. This is required "
                        f"for tools to work correctly. Additional data, function call `{first['functionCall']['name']}`"
                        f", position {i + 1}."
                    )
                if signature not in PLACEHOLDERS and not signed_by_fake(signature, first["functionCall"]["name"]):
                    raise _Invalid("Corrupted thought signature.")
            continue
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        for response in responses:
            if not response.get("name"):
                raise _Invalid(f"* GenerateContentRequest.contents[{i}]: function_response.name: Name cannot be empty.")
            match = [c for c in calls if (c.get("id") and c["id"] == response.get("id")) or
                     (not c.get("id") and c.get("name") == response["name"])]  # fmt: skip
            if not match:
                raise _Invalid(
                    f"* GenerateContentRequest.contents[{i}]: functionResponse {response['name']!r} "
                    f"(id {response.get('id')!r}) answers no function call of the turn before"
                )
            calls.remove(match[0])
        if responses and calls:
            raise _Invalid(
                "Please ensure that the number of function response parts is equal to the number of function "
                "call parts of the function call turn."
            )
        calls = []


@dataclass
class GeminiScript(ScenarioScript):
    """The answer Google's Gemini API would give to ``body`` for ``model``."""

    body: dict[str, Any]
    model: str = ""
    chunks: int = 4
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def __post_init__(self) -> None:
        self.read_scenario(self.model)
        self.contents: list[dict[str, Any]] = list(self.body.get("contents") or [])

    def _last_user(self) -> list[dict[str, Any]]:
        users = [c.get("parts") or [] for c in self.contents if c.get("role", "user") == "user"]
        return users[-1] if users else []

    def _user_text(self) -> str:
        return " ".join(p["text"] for p in self._last_user() if isinstance(p.get("text"), str))

    def text(self) -> str:
        parts = self._last_user()
        results = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if results:
            return "Tool results: " + "; ".join(orjson.dumps(r.get("response")).decode() for r in results)
        images = sum(1 for p in parts if "inlineData" in p or "fileData" in p)
        return f"Echo: {self._user_text()}" + (f" [{images} image(s)]" if images else "")

    def _declared(self) -> list[dict[str, Any]]:
        return [f for tool in self.body.get("tools") or [] for f in tool.get("functionDeclarations") or []]

    def _calls(self) -> list[dict[str, Any]]:
        declared = self._declared()
        if "tools" not in self.model or not declared or any("functionResponse" in p for p in self._last_user()):
            return []
        scripted = scripted_calls(self._user_text(), [f["name"] for f in declared])
        if not scripted:
            scripted = [(f["name"], _sample(_schema(f.get("parametersJsonSchema"), f.get("parameters"))) or {})
                        for f in declared[:2]]  # fmt: skip
        return [{"functionCall": {"name": name, "args": args}} for name, args in scripted]

    def _structured(self) -> str | None:
        """With ``responseMimeType: application/json``: a JSON value sampled from the schema."""
        config = self.body.get("generationConfig") or {}
        if config.get("responseMimeType") != "application/json":
            return None
        schema = _schema(config.get("responseJsonSchema"), config.get("responseSchema"))
        return orjson.dumps(_sample(schema) if schema else {}).decode()

    @functools.cached_property
    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        thinking = (self.body.get("generationConfig") or {}).get("thinkingConfig") or {}
        if thinking.get("includeThoughts"):
            parts.append({"text": f"The user wrote {len(self.contents)} turn(s); I answer.", "thought": True})
        parts += self._calls() or [{"text": self._structured() or self.text()}]
        first = next((p for p in parts if "functionCall" in p), parts[0])
        first["thoughtSignature"] = sign_part(
            first["functionCall"]["name"] if "functionCall" in first else first["text"]
        )
        return parts

    @property
    def finish(self) -> str:
        return "MAX_TOKENS" if "max_tokens" in self.model else "STOP"

    def usage(self) -> dict[str, Any]:
        prompt = estimate_tokens(orjson.dumps(self.contents).decode()) + estimate_tokens(
            orjson.dumps(self.body.get("systemInstruction") or {}).decode()
        )
        thoughts = sum(estimate_tokens(p["text"]) for p in self.parts if p.get("thought"))
        answer = sum(
            estimate_tokens(p.get("text") or orjson.dumps(p.get("functionCall")).decode())
            for p in self.parts
            if not p.get("thought")
        )
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": max(1, answer),
                 "totalTokenCount": prompt + max(1, answer) + thoughts}  # fmt: skip
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    def _object(self, parts: list[dict[str, Any]], finish: str | None, usage: dict[str, Any]) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model, "responseId": self.id}

    def answer(self) -> dict[str, Any]:
        return self._object(self.parts, self.finish, self.usage())

    def frames(self) -> Iterator[bytes]:
        """The SSE frames of the streamed answer: text in pieces, function calls whole, the
        finish reason and full usage on the last."""
        usage = self.usage()
        opening = {"promptTokenCount": usage["promptTokenCount"], "totalTokenCount": usage["promptTokenCount"]}
        pieces: list[dict[str, Any]] = []
        for part in self.parts:
            if "text" in part:
                text = part["text"]
                step = max(1, math.ceil(len(text) / self.chunks))
                for at in range(0, len(text), step):
                    piece = {**part, "text": text[at : at + step]}
                    if at and "thoughtSignature" in piece:
                        del piece["thoughtSignature"]
                    pieces.append(piece)
            else:
                pieces.append(part)
        stop_after = self.stop_after
        for n, piece in enumerate(pieces):
            if n == stop_after:
                if "stream_error_after" in self.params:
                    yield b"data: " + orjson.dumps(error_body(503, "The model is overloaded.")) + b"\r\n\r\n"
                return
            last = n == len(pieces) - 1
            data = self._object([piece], self.finish if last else None, usage if last else opening)
            yield b"data: " + orjson.dumps(data) + b"\r\n\r\n"


def fake_gemini_app(api_key: str | None = "gemini-test-key", chunks: int = 4) -> web.Application:
    """An aiohttp app that answers like Google's Gemini API (``v1beta`` and ``v1``)."""
    app = fake_app()

    def error(status: int, message: str | None = None) -> web.Response:
        return web.json_response(error_body(status, message), status=status)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await received(app, request)
        found = _METHOD.match(request.path)
        if found is None:
            return error(404, f"Method not found: {request.path}")
        model, method = found.groups()
        if api_key is not None and api_key not in (request.headers.get("x-goog-api-key"), request.query.get("key")):
            refused = error_body(400, "API key not valid. Please pass a valid API key.")
            refused["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                            "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]  # fmt: skip
            return web.json_response(refused, status=400)  # what Google answers a wrong key
        if method == "countTokens":
            inner = body.get("generateContentRequest") if isinstance(body, dict) else None
            if inner is not None and inner.get("model") != f"models/{model}":
                return error(400, "generateContentRequest.model must be the model in the URL")
            counted = inner or body
            contents = counted.get("contents") if isinstance(counted, dict) else None
            if not contents:
                return error(400, "* CountTokensRequest.contents: contents is not specified")
            seen = {k: counted.get(k) for k in ("contents", "systemInstruction", "tools")}
            return web.json_response({"totalTokens": estimate_tokens(orjson.dumps(seen).decode())})
        try:
            _validate(body, model)
        except _Invalid as exc:
            return error(400, str(exc))
        script = GeminiScript(body, model, chunks=chunks)
        if (instead := await open_scenario(app, request, script, error)) is not None:
            return instead
        if method == "generateContent":
            await asyncio.sleep(script.delay_s)
            return web.Response(body=orjson.dumps(script.answer()), content_type="application/json")
        if request.query.get("alt") != "sse":
            return error(400, "this fake streams only as SSE (alt=sse)")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        return await stream_frames(app, request, response, script)

    app.router.add_post("/{path:.*}", handle)
    return app
