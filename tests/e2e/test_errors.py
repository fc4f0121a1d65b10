"""Every row of the error table, through raw HTTP and through the openai SDK."""

from __future__ import annotations

import asyncio
import base64
import gzip
from typing import Any

import aiohttp
import brotli
import openai
import orjson
import pytest
from aiohttp import web

from izzi_proxy.app import create_app
from izzi_proxy.config import load_config
from izzi_proxy.keys import LEDGER
from izzi_proxy.providers import UpstreamCall, registry
from tests.conftest import Gateway, start_gateway, write_config
from tests.e2e.shapes import assert_anthropic_error, assert_openai_error

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def http(gateway: Gateway):
    async with aiohttp.ClientSession(
        base_url=str(gateway.server.make_url("/")), headers={"Authorization": f"Bearer {gateway.key}"}
    ) as session:
        yield session


# -- 400 ----------------------------------------------------------------------------------


async def test_bad_json(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/chat/completions", data=b'{"model": "gpt-4o", "messages": [') as resp:
        error = await assert_openai_error(resp, 400, "invalid_request_error")
    assert "not valid JSON" in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"messages": HELLO}, "model", "missing required field `model`"),
        ({"model": "gpt-4o"}, "messages", "missing required field `messages`"),
        ({"model": "gpt-4o", "messages": []}, "messages", "at least one message"),
        ({"model": 4, "messages": HELLO}, "model", "got `int`"),
        ({"model": "gpt-4o", "messages": HELLO, "temperature": "hot"}, "temperature", "Expected `float"),
        ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "robot"),
        ({"model": "gpt-4o", "messages": HELLO, "stream": "yes"}, "stream", "Expected `bool"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
         "messages[0].content[0].text", "needs `text`"),
        ({"model": "gpt-4o", "messages": HELLO, "n": 0}, "n", "Expected `int` >= 1"),
        ({"model": "gpt-4o", "messages": HELLO, "n": 1000}, "n", "Expected `int` <= 128"),
        ({"model": "gpt-4o", "messages": HELLO, "max_tokens": 0}, "max_tokens", "Expected `int` >= 1"),
        ({"model": "gpt-4o", "messages": HELLO, "max_completion_tokens": -1}, "max_completion_tokens", ">= 1"),
        ({"model": "gpt-4o", "messages": HELLO, "temperature": 2.5}, "temperature", "<= 2"),
        ({"model": "gpt-4o", "messages": HELLO, "top_p": -0.1}, "top_p", ">= 0"),
        ({"model": "gpt-4o", "messages": HELLO, "presence_penalty": 3}, "presence_penalty", "<= 2"),
        (["not", "an", "object"], None, "JSON object"),
    ],
)  # fmt: skip
async def test_invalid_body_names_the_field(http: aiohttp.ClientSession, body, param, words) -> None:
    async with http.post("/v1/chat/completions", json=body) as resp:
        error = await assert_openai_error(resp, 400, "invalid_request_error")
    assert words in error["message"]
    assert error["param"] == param


BIG = 10**30
DEEP = "[" * 300 + "]" * 300  # decoded, then refused naming the field (far deeper: refused unnamed)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": HELLO}),
        ("/v1/messages", {"model": "claude", "max_tokens": 10, "messages": HELLO}),
        ("/v1/messages/count_tokens", {"model": "gpt-4o", "messages": HELLO}),
        ("/v1/responses", {"model": "gpt-4o", "input": "Hello"}),
    ],
)
@pytest.mark.parametrize(
    ("extra", "param"),
    [('"max_tokens": ' + str(BIG), "max_tokens"), ('"x": {"y": ' + str(-BIG) + "}", "x.y"), ('"x": ' + DEEP, "x")],
    ids=["big-int", "big-int-unknown-field", "deep"],
)
async def test_valid_json_the_gateway_cannot_write_is_a_400(
    http: aiohttp.ClientSession, path, body, extra, param
) -> None:
    raw = orjson.dumps(body)[:-1] + b", " + extra.encode() + b"}"
    async with http.post(path, data=raw, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400, await resp.text()
        shape = await resp.json()
        error = shape["error"]
        assert error["type"] == "invalid_request_error" and param in error["message"]
        assert (shape.get("type") == "error") is path.startswith("/v1/messages")


async def test_translated_tool_arguments_nested_too_deep_are_a_400(client: openai.AsyncOpenAI) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "[" * 200 + "]" * 200}}
    messages: Any = [*HELLO, {"role": "assistant", "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]  # fmt: skip
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="claude", messages=messages)
    assert "tool call arguments" in caught.value.message


async def test_empty_body(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/chat/completions", data=b"") as resp:
        await assert_openai_error(resp, 400, "invalid_request_error")


async def test_sdk_raises_bad_request(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=HELLO, temperature="hot")  # type: ignore[arg-type]
    assert caught.value.status_code == 400
    assert caught.value.param == "temperature"


# -- 401 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "Missing API key"),
        ({"Authorization": "Bearer izzi-notarealkeynotarealkeynotarealkey12345"}, "Invalid API key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Missing API key"),
        ({"x-api-key": "sk-something-else-entirely-0123456789"}, "Invalid API key"),
    ],
)
async def test_authentication(gateway: Gateway, headers, words) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.server.make_url("/v1/chat/completions"),
            json={"model": "gpt-4o", "messages": HELLO},
            headers=headers,
        ) as resp,
    ):
        error = await assert_openai_error(resp, 401, "authentication_error")
    assert words in error["message"]
    for value in headers.values():
        assert value.split()[-1] not in error["message"]  # never the whole key back


async def test_sdk_raises_authentication_error(gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url, api_key="izzi-wrong" + "x" * 40, max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_revoked_key_is_refused(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    (key,) = await gateway.ledger.list_keys()
    await gateway.ledger.revoke_key(key.id)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)


# -- 404 / 405 / 413 ------------------------------------------------------------------------


async def test_unknown_model(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-99", messages=HELLO)
    assert caught.value.body["type"] == "not_found"
    assert "gpt-99" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-99")


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/chat/completions", "/v2/chat/completions"])
async def test_unknown_route(http: aiohttp.ClientSession, path: str) -> None:
    async with http.post(path, json={}) as resp:
        error = await assert_openai_error(resp, 404, "not_found")
    assert path in error["message"]


async def test_wrong_method(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/chat/completions") as resp:
        error = await assert_openai_error(resp, 405, "invalid_request_error")
    assert "POST" in error["message"]


async def test_body_over_the_limit(aiohttp_server, upstream, tmp_path, upstream_env) -> None:
    config = load_config(write_config(tmp_path, str(upstream.make_url("/v1")), server="max_body_mb = 0.01"))
    gateway = await start_gateway(aiohttp_server, config, upstream)
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 20_000}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.server.make_url("/v1/chat/completions"),
            json=big,
            headers={"Authorization": f"Bearer {gateway.key}"},
        ) as resp,
    ):
        error = await assert_openai_error(resp, 413, "invalid_request_error")
    assert "limit" in error["message"]
    assert gateway.received == []


async def test_a_route_added_without_metadata_needs_a_key(aiohttp_server, upstream, tmp_path, upstream_env) -> None:
    """Fail closed: a handler registered without ``@endpoint`` goes through auth and IP
    blocking like every other route."""
    app = create_app(load_config(write_config(tmp_path, str(upstream.make_url("/v1")))))

    async def operator_data(request: web.Request) -> web.Response:
        return web.json_response({"accounts": ["everyone's"]})

    app.router.add_get("/v1/admin/accounts", operator_data)
    server = await aiohttp_server(app)
    account = await app[LEDGER].create_account("a", "unlimited")
    _, key = await app[LEDGER].create_key(account.id, "k")
    async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as session:
        async with session.get("/v1/admin/accounts") as resp:
            await assert_openai_error(resp, 401, "authentication_error")
        async with session.get("/v1/admin/accounts", headers={"x-api-key": "izzi-" + "x" * 43}) as resp:
            await assert_openai_error(resp, 401, "authentication_error")
        async with session.get("/v1/admin/accounts", headers={"x-api-key": key}) as resp:
            assert resp.status == 200


# -- 502 ----------------------------------------------------------------------------------


async def test_upstream_error_keeps_status_and_message(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="error-500", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error"
    assert "HTTP 500" in caught.value.message and "Mock upstream error 500" in caught.value.message
    record = await gateway.record(caught.value.response.headers["x-request-id"])
    assert (record.status, record.outcome, record.error_type) == (502, "error", "upstream_error")


async def test_upstream_auth_failure_is_a_502_not_a_401(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="error-401", messages=HELLO)
    assert caught.value.status_code == 502 and "HTTP 401" in caught.value.message


async def test_upstream_rejecting_the_request_is_a_400(client: openai.AsyncOpenAI) -> None:
    """A request the upstream refuses would fail again: 400, so SDKs do not retry it."""
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="error-400", messages=HELLO)
    assert "HTTP 400" in caught.value.message and "Mock upstream error 400" in caught.value.message


async def test_unreachable_upstream(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="unreachable", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "connection_error"
    assert "Could not reach upstream 'dead'" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_timeout(client: openai.AsyncOpenAI, stream: bool) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="hang", messages=HELLO, stream=stream)
    assert caught.value.body["type"] == "connection_error"
    assert "did not answer within 1 s" in caught.value.message


async def test_upstream_without_its_key_names_the_variable(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="needs-key", messages=HELLO)
    assert caught.value.body["type"] == "upstream_error"
    assert "IZZI_TEST_UNSET_KEY" in caught.value.message


@pytest.mark.parametrize("model", ["fallback", "fallback-dead"])
@pytest.mark.parametrize("stream", [False, True])
async def test_fallback_before_the_first_byte(gateway: Gateway, client: openai.AsyncOpenAI, model, stream) -> None:
    response = await client.chat.completions.create(model=model, messages=HELLO, stream=stream)
    if stream:
        text = "".join([c.choices[0].delta.content or "" async for c in response if c.choices])
    else:
        text = response.choices[0].message.content
    assert text == "Echo: Hello"
    assert gateway.received[-1].body["model"] == "upstream-fallback-ok"


async def test_fallback_when_the_first_stream_event_is_an_error(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="fallback-first-event", messages=HELLO, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Echo: Hello"
    assert [r.body["model"] for r in gateway.received] == ["stream_error_after_0", "upstream-fallback-ok"]


# -- errors after the first byte: in the stream, in OpenAI's in-stream shape ----------------


@pytest.mark.parametrize(
    ("model", "words", "error_type"),
    [
        ("stream-error", "Mock upstream error 500", "upstream_error"),
        ("cut", "ended the stream before it was complete", "connection_error"),
        ("abort", "broke off the stream", "connection_error"),
    ],
)
async def test_error_after_the_first_byte(
    gateway: Gateway, client: openai.AsyncOpenAI, model, words, error_type
) -> None:
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=HELLO, stream=True)
    assert raw.http_response.status_code == 200
    seen = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in raw.parse():
            seen.append(chunk)
    assert seen, "some content came before the error"
    assert words in caught.value.message
    record = await gateway.record(raw.headers["x-request-id"])
    assert (record.outcome, record.error_type) == ("error", error_type)


# -- 500 ----------------------------------------------------------------------------------


class ExplodingProvider:
    kind = "exploding"
    wire_formats = frozenset({"openai_chat"})

    @classmethod
    def from_config(cls, upstream, session):
        return cls()

    async def send(self, call: UpstreamCall):
        raise RuntimeError("secret internal detail")

    async def aclose(self) -> None:
        pass


async def test_internal_error_is_a_500_without_traceback(
    aiohttp_server, upstream, tmp_path, upstream_env, caplog
) -> None:
    path = write_config(
        tmp_path, str(upstream.make_url("/v1")), models={"boom": ["boom:x"]},
        extra_upstreams='[upstreams.boom]\nkind = "exploding"\n',
    )  # fmt: skip
    with registry.override({"exploding": ExplodingProvider}):
        gateway = await start_gateway(aiohttp_server, load_config(path), upstream)
        async with gateway.client() as client:
            with pytest.raises(openai.InternalServerError) as caught:
                await client.chat.completions.create(model="boom", messages=HELLO)
    assert caught.value.status_code == 500
    assert caught.value.body["type"] == "server_error"
    request_id = caught.value.response.headers["x-request-id"]
    assert request_id in caught.value.message
    assert "secret internal detail" not in caught.value.message and "Traceback" not in caught.value.message
    assert "secret internal detail" in caplog.text  # the operator sees it in the log
    record = await gateway.record(request_id)
    assert (record.status, record.error_type) == (500, "server_error")


async def test_error_responses_carry_the_request_id(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/chat/completions", json={"model": "gpt-99", "messages": HELLO}) as resp:
        await assert_openai_error(resp, 404, "not_found")
    await asyncio.sleep(0)


# -- hostile input that used to reach a 500 -----------------------------------------------------


async def test_count_tokens_with_mistyped_content_is_a_400(http: aiohttp.ClientSession) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": 5}}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": [image]}]}
    async with http.post("/v1/messages/count_tokens", json=body) as resp:
        error = await assert_anthropic_error(resp, 400, "invalid_request_error")
    assert "source.data" in error["message"]


@pytest.mark.parametrize(
    "forged",
    ["izzi-anthropic:", "izzi-anthropic:!!!", "izzi-anthropic:" + base64.b64encode(b"[1, 2]").decode(),
     "izzi-anthropic:" + base64.b64encode(b'{"t": 5, "s": []}').decode(),
     "izzi-anthropic:" + base64.b64encode(b'{"r": {"x": 1}}').decode()],
)  # fmt: skip
async def test_a_forged_reasoning_item_is_left_out(gateway: Gateway, client: openai.AsyncOpenAI, forged: str) -> None:
    items = [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": forged},
             {"role": "user", "content": "Hello"}]  # fmt: skip
    response = await client.responses.create(model="claude", input=items, store=False)
    assert response.output[0].content[0].text == "Echo: Hello"
    assert gateway.anthropic_received[-1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}
    ]


@pytest.mark.parametrize("raw", [b"izzi-\xff\xfe", "izzi-é".encode(), b"\xc3\x28"])
async def test_a_key_that_is_not_ascii_is_refused(gateway: Gateway, raw: bytes) -> None:
    url = gateway.server.make_url("/v1/chat/completions")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    body = orjson.dumps({"model": "gpt-4o", "messages": HELLO})
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"x-api-key: " + raw + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 401"), head


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_a_body_that_says_it_is_compressed_but_is_not_is_a_400(http: aiohttp.ClientSession, encoding) -> None:
    body = orjson.dumps({"model": "gpt-4o", "messages": HELLO})
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with http.post("/v1/chat/completions", data=body, headers=headers) as resp:
        error = await assert_openai_error(resp, 400, "invalid_request_error")
    assert encoding in error["message"]


@pytest.mark.parametrize("encoding", ["gzip", "br"])
async def test_a_compressed_body_is_read(http: aiohttp.ClientSession, encoding: str) -> None:
    raw = orjson.dumps({"model": "gpt-4o", "messages": HELLO})
    body = gzip.compress(raw) if encoding == "gzip" else brotli.compress(raw)
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with http.post("/v1/chat/completions", data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def test_a_compressed_body_is_limited_by_its_decompressed_size(aiohttp_server, upstream, tmp_path, upstream_env):
    config = load_config(write_config(tmp_path, str(upstream.make_url("/v1")), server="max_body_mb = 0.1"))
    gateway = await start_gateway(aiohttp_server, config, upstream)
    bomb = gzip.compress(orjson.dumps({"model": "gpt-4o", "messages": HELLO, "pad": "x" * 1_000_000}))
    assert len(bomb) < 10_000
    headers = {"Authorization": f"Bearer {gateway.key}", "Content-Encoding": "gzip", "Content-Type": "application/json"}
    url = gateway.server.make_url("/v1/chat/completions")
    async with aiohttp.ClientSession() as session, session.post(url, data=bomb, headers=headers) as resp:
        await assert_openai_error(resp, 413, "invalid_request_error")


async def test_an_upstream_refusing_the_gateways_key_shows_the_client_nothing_of_it(
    aiohttp_server, upstream, tmp_path, upstream_env, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("IZZI_TEST_UPSTREAM_KEY", "sk-proj-wrongwrongwrongAKQZ")
    gateway = await start_gateway(aiohttp_server, load_config(write_config(tmp_path, str(upstream.make_url("/v1")))),
                                  upstream)  # fmt: skip
    async with gateway.client() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    error = caught.value.body
    assert caught.value.status_code == 502 and error["type"] == "upstream_error"
    assert "'fake'" in error["message"] and "AKQZ" not in error["message"] and "wrong" not in error["message"]
    assert "Incorrect API key provided" in caplog.text and "wrongwrong" not in caplog.text  # the operator's log


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/messages", {"model": "claude", "max_tokens": 10, "messages": HELLO, "temperature": 1.5}, "temperature"),
        ("/v1/messages", {"model": "claude", "max_tokens": 10, "messages": HELLO, "top_k": -1}, "top_k"),
        ("/v1/responses", {"model": "gpt-4o", "input": "Hi", "temperature": 3}, "temperature"),
        ("/v1/responses", {"model": "gpt-4o", "input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
    ],
)
async def test_out_of_range_values_are_refused_in_every_format(http: aiohttp.ClientSession, path, body, param) -> None:
    async with http.post(path, json=body) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and param in error["message"]


async def test_keys_that_are_not_ascii_count_toward_blocking_the_ip(aiohttp_server, upstream, tmp_path, upstream_env):
    path = write_config(tmp_path, str(upstream.make_url("/v1")), extra="[ip_block]\nmax_failures = 2\n")
    gateway = await start_gateway(aiohttp_server, load_config(path), upstream)
    url = gateway.server.make_url("/v1/models")

    async def status(key: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: " + key + b"\r\nConnection: close\r\n\r\n")
        head = await reader.readuntil(b"\r\n")
        writer.close()
        return head.split()[1]

    assert [await status(b"izzi-\xff\xfe"), await status(b"izzi-\xff\xfd")] == [b"401", b"403"]
    assert await status(gateway.key.encode()) == b"403"  # blocked, whatever key it now sends
