"""``GET /openapi.json``: an OpenAPI 3.1 document of the gateway's public routes.

It says what each route takes (the fields the gateway checks, with the ranges it enforces;
others pass through), what it answers, and the error envelope of each format. It is
written for the tools that read it (client generators, schemathesis, which the test suite
runs against it) and kept beside the code that enforces it: the limits come from the same
constants. The same routes also answer under ``/openai/v1`` and ``/api/v1``.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from aiohttp import web

from izzi_proxy.bodies import MAX_DEPTH
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.handlers import json_response
from izzi_proxy.models_api import DEFAULT_LIMIT, GEMINI_PAGE_SIZE, MAX_LIMIT
from izzi_proxy.routes import endpoint

_STRING = {"type": "string"}
_TEXT = {"type": "string", "examples": ["Hello!"]}
_MODEL = {"type": "string", "minLength": 1, "examples": ["claude-sonnet-4-20250514", "gpt-5.1", "qwen3-235b"],
          "description": "A catalog id; aliases, dated vendor ids and families resolve (GET /v1/models)."}  # fmt: skip
_POSITIVE = {"type": "integer", "minimum": 1}
_OBJECT = {"type": "object"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["type", "message"], "properties": {
        "type": _STRING, "message": _STRING, "param": _nullable(_STRING), "code": _nullable(_STRING)}}},
}  # fmt: skip
ANTHROPIC_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {"type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"],
                                                          "properties": {"type": _STRING, "message": _STRING}}},
}  # fmt: skip
GEMINI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "status"], "properties": {
        "code": {"type": "integer"}, "message": _STRING, "status": _STRING,
        "details": {"type": "array", "items": _OBJECT}}}},
}  # fmt: skip

CHAT_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {"anyOf": [_TEXT, {"type": "array", "items": _OBJECT}, {"type": "null"}]},
        "name": _STRING, "tool_call_id": _STRING, "tool_calls": {"type": "array", "items": _OBJECT},
    },
}  # fmt: skip
CHAT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": _MODEL,
        "messages": {"type": "array", "minItems": 1, "items": CHAT_MESSAGE},
        "stream": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 1, "maximum": 128},
        "max_tokens": _POSITIVE, "max_completion_tokens": _POSITIVE,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "stop": {"anyOf": [_STRING, {"type": "array", "items": _STRING}]},
        "tools": {"type": "array", "items": _OBJECT}, "tool_choice": {"anyOf": [_STRING, _OBJECT]},
        "reasoning_effort": _STRING, "user": _STRING,
    },
}  # fmt: skip
ANTHROPIC_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {"role": {"enum": ["user", "assistant", "system"]},
                   "content": {"anyOf": [_TEXT, {"type": "array", "items": _OBJECT}]}},
}  # fmt: skip
COUNT_TOKENS_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": _MODEL,
        "messages": {"type": "array", "minItems": 1, "items": ANTHROPIC_MESSAGE},
        "system": {"anyOf": [_STRING, {"type": "array", "items": _OBJECT}]},
        "tools": {"type": "array", "items": _OBJECT}, "tool_choice": _OBJECT, "thinking": _OBJECT,
    },
}  # fmt: skip
MESSAGES_REQUEST = {
    **COUNT_TOKENS_REQUEST,
    "required": ["model", "messages", "max_tokens"],
    "properties": {
        **COUNT_TOKENS_REQUEST["properties"],
        "max_tokens": _POSITIVE, "stream": {"type": "boolean"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1}, "top_k": {"type": "integer", "minimum": 0},
        "stop_sequences": {"type": "array", "items": _STRING}, "metadata": _OBJECT,
    },
}  # fmt: skip
RESPONSES_REQUEST = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": _MODEL,
        "input": {"anyOf": [{**_TEXT, "minLength": 1}, {"type": "array", "minItems": 1, "items": _OBJECT}]},
        "instructions": _STRING, "stream": {"type": "boolean"}, "store": {"type": "boolean"},
        "previous_response_id": _STRING, "max_output_tokens": _POSITIVE,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "tools": {"type": "array", "items": _OBJECT}, "tool_choice": {"anyOf": [_STRING, _OBJECT]},
        "reasoning": _OBJECT, "text": _OBJECT, "metadata": _OBJECT, "include": {"type": "array", "items": _STRING},
    },
}  # fmt: skip
GEMINI_CONTENT = {
    "type": "object",
    "properties": {"role": {"enum": ["user", "model", "function"]}, "parts": {"type": "array", "items": _OBJECT}},
}
GEMINI_REQUEST = {
    "type": "object",
    "required": ["contents"],
    "properties": {
        "contents": {"type": "array", "minItems": 1, "items": GEMINI_CONTENT},
        "systemInstruction": GEMINI_CONTENT, "tools": {"type": "array", "items": _OBJECT}, "toolConfig": _OBJECT,
        "generationConfig": {"type": "object", "properties": {
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "topP": {"type": "number", "minimum": 0, "maximum": 1}, "topK": _POSITIVE,
            "maxOutputTokens": _POSITIVE, "candidateCount": _POSITIVE,
            "stopSequences": {"type": "array", "maxItems": 5, "items": _STRING},
            "responseMimeType": _STRING, "thinkingConfig": _OBJECT}},
    },
}  # fmt: skip
GEMINI_COUNT_REQUEST = {
    "type": "object",
    "properties": {"contents": {"type": "array", "minItems": 1, "items": GEMINI_CONTENT},
                   "generateContentRequest": GEMINI_REQUEST},
}  # fmt: skip
GEMINI_COUNT = {"type": "object", "required": ["totalTokens"], "properties": {"totalTokens": {"type": "integer"}}}

COUNT = {"type": "object", "required": ["input_tokens"], "properties": {"input_tokens": {"type": "integer"}}}
_EVENTS = {"description": "Server-sent events in the format's own sequence: each data line a JSON event "
                          "(OpenAI chat's stream ends with data: [DONE])"}  # fmt: skip
_JSON_OR_SSE = {"application/json": {"schema": _OBJECT}, "text/event-stream": {"schema": _EVENTS}}
_REQUEST_ID = {"x-request-id": {"description": "The request's id, also the key of its usage record",
                                "schema": _STRING}}  # fmt: skip


def _taking_null(schema: Any) -> Any:
    """A request schema whose optional fields, at every level, may also be null (taken as not
    given; in passthrough, sent on as they came)."""
    if isinstance(schema, list):
        return [_taking_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _taking_null(value) for key, value in schema.items()}
    if isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", ()))
        out["properties"] = {name: value if name in required else _nullable(value)
                             for name, value in out["properties"].items()}  # fmt: skip
    return out


def _answers(ok: dict[str, Any], error: dict[str, Any], extra: tuple[int, ...] = ()) -> dict[str, Any]:
    failure = {"content": {"application/json": {"schema": error}}, "headers": _REQUEST_ID}
    codes = (400, 401, 403, 404, 408, 413, 429, 502, 503, *extra)
    return {
        "200": {"description": "The answer", "content": ok, "headers": _REQUEST_ID},
        **{str(code): {"description": "An error (the envelope of this route's format)", **failure} for code in codes},
        "default": {"description": "Any other error, in the same envelope", **failure},
    }


def _operation(summary: str, body: dict[str, Any] | None, ok: dict[str, Any], error: dict[str, Any],
               params: list[dict[str, Any]] | None = None, extra: tuple[int, ...] = (),
               example: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    operation: dict[str, Any] = {"summary": summary, "responses": _answers(ok, error, extra)}
    if body is not None:
        media: dict[str, Any] = {"schema": _taking_null(body)}
        if example is not None:
            media["example"] = example
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    if params:
        operation["parameters"] = params
    return operation


def _created(operation: dict[str, Any]) -> dict[str, Any]:
    """An operation that answers 201 (it made something) instead of 200."""
    operation["responses"]["201"] = operation["responses"].pop("200")
    return operation


TOPUP_REQUEST = {
    "type": "object",
    "required": ["amount", "provider"],
    "properties": {
        "amount": {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "credits (1 credit = 1 USD)"},
        "provider": {"type": "string", "description": "one of GET /v1/payments/quote's providers"},
    },
}


def document() -> dict[str, Any]:
    path_param = [{"name": "model", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}]
    response_id = [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    payment_id = [{"name": "payment_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    anthropic_header = {"name": "anthropic-version", "in": "header", "required": False, "schema": _STRING,
                        "description": "Sent by Anthropic clients: answers in Anthropic's shape"}  # fmt: skip
    page = [anthropic_header, *({"name": n, "in": "query", "required": False, "schema": _STRING}
                                for n in ("after_id", "before_id")),
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}}]  # fmt: skip
    openai_json = {"application/json": {"schema": _OBJECT}}
    alt = [*path_param, {"name": "alt", "in": "query", "required": False, "schema": {"enum": ["json", "sse"]},
                         "description": "sse: server-sent events; json (the default): one JSON array"}]  # fmt: skip
    gemini_page = [{"name": "pageSize", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": GEMINI_PAGE_SIZE}},
                   {"name": "pageToken", "in": "query", "required": False, "schema": _STRING}]  # fmt: skip
    gemini_stream = {"application/json": {"schema": {"type": "array", "items": _OBJECT}}, "text/event-stream": {
        "schema": {"description": "Server-sent events: each data line a GenerateContentResponse"}}}  # fmt: skip
    gemini_hello = {"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]}
    gemini_count = {"application/json": {"schema": GEMINI_COUNT}}
    any_error = {"anyOf": [OPENAI_ERROR, ANTHROPIC_ERROR, GEMINI_ERROR]}
    json_object = {"application/json": {"schema": _OBJECT}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Izzi Gateway",
            "version": version("izzi-proxy"),
            "description": (
                "One key for many models, in the formats clients speak: OpenAI Chat Completions, Anthropic "
                "Messages, OpenAI Responses, Google's Gemini API (under /v1beta, and /v1 as Google serves it). Every "
                "OpenAI and Anthropic route also answers under /openai/v1 and /api/v1. Bodies nest "
                f"at most {MAX_DEPTH} levels and integers fit in 64 bits. Fields not listed pass through."
            ),
        },
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer izzi-…"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "googApiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key",
                           "description": "Gemini API routes also take ?key="},
        }},
        "security": [{"bearer": []}, {"apiKey": []}, {"googApiKey": []}],
        "paths": {
            "/v1/chat/completions": {"post": _operation(
                "OpenAI Chat Completions, any model", CHAT_REQUEST, _JSON_OR_SSE, OPENAI_ERROR,
                example={"model": "claude-sonnet-4-20250514", "messages": [{"role": "user", "content": "Hello!"}]})},
            "/v1/messages": {"post": _operation(
                "Anthropic Messages, any model", MESSAGES_REQUEST, _JSON_OR_SSE, ANTHROPIC_ERROR,
                example={"model": "gpt-5.1", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello!"}]})},
            "/v1/messages/count_tokens": {"post": _operation(
                "Input tokens of a Messages request (exact for Claude models, estimated otherwise)",
                COUNT_TOKENS_REQUEST, {"application/json": {"schema": COUNT}}, ANTHROPIC_ERROR,
                example={"model": "claude-sonnet-4-20250514", "messages": [{"role": "user", "content": "Hello!"}]})},
            "/v1/responses": {"post": _operation(
                "OpenAI Responses, any model", RESPONSES_REQUEST, _JSON_OR_SSE, OPENAI_ERROR,
                example={"model": "claude-sonnet-4-20250514", "input": "Explain quantum computing in simple terms",
                         "instructions": "You are a helpful teacher"})},
            "/v1/responses/{response_id}": {
                "get": _operation("A stored response of the account", None, openai_json, OPENAI_ERROR, response_id),
                "delete": _operation("Delete a stored response", None, openai_json, OPENAI_ERROR, response_id),
            },
            "/v1/models": {"get": _operation(
                "The catalog (OpenAI's list; Anthropic's pages with anthropic-version; Gemini's with x-goog-api-key)",
                None, openai_json, any_error, page)},
            "/v1/models/{model}": {"get": _operation("One model, under any name that resolves to it", None,
                                                     openai_json, any_error, [*path_param, anthropic_header])},
            "/v1beta/models/{model}:generateContent": {"post": _operation(
                "Gemini generateContent, any model", GEMINI_REQUEST, openai_json, GEMINI_ERROR, path_param,
                example=gemini_hello)},
            "/v1beta/models/{model}:streamGenerateContent": {"post": _operation(
                "Gemini streamGenerateContent, any model", GEMINI_REQUEST, gemini_stream, GEMINI_ERROR, alt,
                example=gemini_hello)},
            "/v1beta/models/{model}:countTokens": {"post": _operation(
                "Input tokens of a Gemini request", GEMINI_COUNT_REQUEST, gemini_count, GEMINI_ERROR, path_param,
                example=gemini_hello)},
            "/v1beta/models": {"get": _operation("The catalog in Gemini's shape", None, openai_json, GEMINI_ERROR,
                                                 gemini_page)},
            "/v1beta/models/{model}": {"get": _operation("One model in Gemini's shape", None, openai_json,
                                                         GEMINI_ERROR, path_param)},
            "/v1/payments/quote": {"get": _operation(
                "The payment providers, the top-up limits and bonus ladder, and the bonus an amount gets", None,
                openai_json, OPENAI_ERROR, [{"name": "amount", "in": "query", "required": False, "schema": _STRING,
                                             "description": "credits, e.g. 60 or 12.5"}])},
            "/v1/payments": {
                "get": _operation("The account's top-ups, newest first", None, openai_json, OPENAI_ERROR),
                "post": _created(_operation(
                    "Start a top-up: the invoice, QR code or transfer details to pay it", TOPUP_REQUEST, openai_json,
                    OPENAI_ERROR, example={"amount": "60", "provider": "bank"})),
            },
            "/v1/payments/{payment_id}": {"get": _operation(
                "One of the account's top-ups, and its state", None, openai_json, OPENAI_ERROR, payment_id)},
            "/payments/{provider}/webhook": {"post": {
                "summary": "A payment provider's notification (verified by the provider's plugin)", "security": [],
                "parameters": [{"name": "provider", "in": "path", "required": True, "schema": _STRING}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _OBJECT}}},
                "responses": {str(code): {"description": what, "content": {"application/json": {
                    "schema": OPENAI_ERROR if code != 200 else _OBJECT}}, "headers": _REQUEST_ID}
                    for code, what in ((200, "Read (what each confirmation did)"), (400, "Unreadable"),
                                       (401, "Not signed by the provider"), (404, "No such provider"),
                                       (413, "Too large"))},
            }},
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {
                "description": "The gateway is up", "content": {"application/json": {"schema": _OBJECT}}}}}},
            "/readyz": {"get": {"summary": "Readiness: the ledger and the limiter answer", "security": [],
                                "responses": {"200": {"description": "Ready", "content": json_object},
                                              "503": {"description": "Not ready: what failed",
                                                      "content": json_object}}}},
        },
    }  # fmt: skip


_DOCUMENT = document()


@endpoint(OPENAI_CHAT, public=True)
async def serve(request: web.Request) -> web.Response:
    return json_response(_DOCUMENT)
