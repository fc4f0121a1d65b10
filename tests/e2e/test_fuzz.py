"""Property-based: every public route, driven with generated bodies through a real gateway
on the fake upstreams, answers without a 5xx, in its route's error shape, within a bound.

The bodies are structure-aware (a valid request of each route, with one field replaced by
any JSON value, removed, or joined by an unknown one, over models that pass through and
models that are translated) and raw (bytes, cut JSON, JSON that is not an object, integers
past 64 bits, NaN). ``IZZI_FUZZ_EXAMPLES`` sets the examples per route (CI: the default
below); ``scripts/fuzz`` runs many more.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Gateway

EXAMPLES = int(os.environ.get("IZZI_FUZZ_EXAMPLES", "40"))
ANSWER_WITHIN_S = 15.0
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)

HELLO = [{"role": "user", "content": "Hello"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
VALID: dict[str, list[dict[str, Any]]] = {
    "/v1/chat/completions": [
        {"model": model, "messages": [{"role": "system", "content": "Be brief"}, *HELLO], "max_tokens": 20,
         "stream": stream, "tools": [TOOL], "temperature": 0.5}
        for model in ("gpt-4o", "claude", "gpt-chat-only") for stream in (False, True)
    ],
    "/v1/messages": [
        {"model": model, "max_tokens": 20, "messages": HELLO, "system": [{"type": "text", "text": "Be brief"}],
         "stream": stream, "tools": [{"name": "f", "input_schema": {"type": "object"}}], "metadata": {"user_id": "u"}}
        for model in ("claude", "gpt-4o", "claude-tools") for stream in (False, True)
    ],
    "/v1/messages/count_tokens": [
        {"model": model, "messages": HELLO, "system": "Be brief"} for model in ("claude", "gpt-4o")
    ],
    "/v1/responses": [
        {"model": model, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
         "instructions": "Be brief", "stream": stream, "store": False, "max_output_tokens": 50}
        for model in ("gpt-4o", "claude", "gpt-chat-only") for stream in (False, True)
    ],
}  # fmt: skip
GEMINI_BODY = {
    "systemInstruction": {"parts": [{"text": "Be brief"}]},
    "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
    "tools": [
        {
            "functionDeclarations": [
                {"name": "f", "parameters": {"type": "OBJECT", "properties": {"x": {"type": "STRING"}}}}
            ]
        }
    ],
    "generationConfig": {"maxOutputTokens": 20, "temperature": 0.5, "thinkingConfig": {"thinkingBudget": 1024}},
}
for model in ("gpt-4o", "claude", "gemini-flash"):
    for method in ("generateContent", "streamGenerateContent?alt=sse", "streamGenerateContent"):
        VALID[f"/v1beta/models/{model}:{method}"] = [GEMINI_BODY]
VALID["/v1beta/models/claude:countTokens"] = [GEMINI_BODY, {"contents": GEMINI_BODY["contents"]}]
ANTHROPIC_ROUTES = ("/v1/messages", "/v1/messages/count_tokens")
GEMINI_METHOD = re.compile(r"^/v1/models/[^/:]+:[^/]+$")  # POST models/{model}:{method}, as Google serves it


def is_gemini(method: str, path: str) -> bool:
    """Whether the route answers in Google's envelope: all of ``/v1beta/``, and a method on a
    model under ``/v1/`` (``GET /v1/models/…`` is OpenAI's, whatever the name)."""
    path = unquote(path.split("?")[0])
    return path.startswith("/v1beta/") or (method == "POST" and GEMINI_METHOD.match(path) is not None)


SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["", "user", "assistant", "system", "tool", "image_url", "text",
                                              "function", "tool_use", "thinking", "base64", "data:x;base64,"])
)  # fmt: skip
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            out += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            out += paths(inner, (*prefix, i))
    return out


def mutate(body: dict[str, Any], path: tuple[Any, ...], how: str, value: Any) -> Any:
    if not path:
        return value if how == "set" else body
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "delete":
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[f"x_{len(parent)}"] = value
    else:
        parent[last] = value
    return body


@st.composite
def structured(draw, route: str) -> bytes:
    body = json.loads(json.dumps(draw(st.sampled_from(VALID[route]))))
    path = draw(st.sampled_from(paths(body)))
    how = draw(st.sampled_from(["set", "set", "delete", "add"]))
    return json.dumps(mutate(body, path, how, draw(JSON_VALUES))).encode()


RAW = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda s: json.dumps(s).encode(), JSON_VALUES),  # any JSON, mostly not an object
    st.builds(lambda n: b'{"model": "gpt-4o", "messages": [], "max_tokens": ' + str(n).encode() + b"}",
              st.integers(min_value=2**63, max_value=2**200)),
    st.builds(lambda d: b'{"model": "gpt-4o", "x": ' + b"[" * d + b"]" * d + b"}", st.integers(1, 3000)),
    st.sampled_from([b"", b"{", b'{"model": NaN}', b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xff"}]}',
                     b"\xef\xbb\xbf{}", b'{"model": "gpt-4o"}' * 2]),
)  # fmt: skip


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {gateway.key}"}
    async with aiohttp.ClientSession(base_url=str(gateway.server.make_url("/")), headers=headers) as session:
        yield session


async def check(http: aiohttp.ClientSession, method: str, path: str, body: bytes | None = None,
                header: bool = False) -> None:  # fmt: skip
    """One request: no 5xx; an error in its route's shape. With ``anthropic-version`` sent
    (``header``), a route that is not Anthropic's own may answer in either shape: the model
    routes and unknown paths take Anthropic's, the OpenAI routes keep theirs. The Gemini
    API's routes answer in Google's envelope whatever the headers."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    anthropic: bool | None = path.split("?")[0] in ANTHROPIC_ROUTES or (None if header else False)
    if header or anthropic:
        headers["anthropic-version"] = "2023-06-01"
    async with asyncio.timeout(ANSWER_WITHIN_S), http.request(method, path, data=body, headers=headers) as resp:
        raw = await resp.read()
    assert resp.status < 500, (resp.status, raw[:500], body[:300] if body else None)
    if resp.status >= 400 and is_gemini(method, path):
        error = json.loads(raw)
        assert set(error) == {"error"}, error
        error = error["error"]
        assert error["code"] == resp.status and isinstance(error["status"], str) and error["message"], error
    elif resp.status >= 400:
        error = json.loads(raw)
        if anthropic is None:
            anthropic = error.get("type") == "error"
        if anthropic:
            assert error["type"] == "error" and set(error) == {"type", "error"}, error
        else:
            assert set(error) == {"error"}, error
        error = error["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"], error
    elif resp.content_type == "text/event-stream":
        assert raw.endswith((b"\n\n", b"\r\n\r\n")), raw[-200:]
    elif resp.content_type == "application/json" and is_gemini(method, path):
        json.loads(raw)  # a whole answer, or Google's stream as one closed JSON array


@pytest.mark.timeout(600)
@pytest.mark.parametrize("route", sorted(VALID))
@FUZZ
@given(data=st.data())
async def test_generated_bodies(http: aiohttp.ClientSession, route: str, data: st.DataObject) -> None:
    body = data.draw(structured(route) | RAW, label="body")
    await check(http, "POST", route, body)


@pytest.mark.timeout(600)
@FUZZ
@given(
    method=st.sampled_from(["GET", "DELETE", "POST", "PUT"]),
    resource=st.sampled_from(
        [
            "/v1/models/",
            "/v1/responses/",
            "/openai/v1/models/",
            "/v1/",
            "/v1/models?limit=",
            "/v1beta/models/",
            "/v1beta/models?pageSize=",
            "/v1beta/",
        ]
    ),
    tail=st.text(st.characters(codec="utf-8", exclude_characters="#?"), max_size=30),
    anthropic=st.booleans(),
)
async def test_generated_paths(http: aiohttp.ClientSession, method: str, resource: str, tail: str, anthropic) -> None:
    await check(http, method, resource + quote(tail, safe="/"), b"{}" if method in ("POST", "PUT") else None, anthropic)
