"""The fake OpenAI chat completions upstream (``fake_openai_app``), over HTTP: the failure
scenarios the gateway's failover, key pools, breakers and timeouts are tested against,
checked with aiohttp on the wire and with the official ``openai`` SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from izzi_proxy.testing import DISCONNECTS, RECEIVED, fake_openai_app

KEY = "sk-upstream-test"
HELLO = [{"role": "user", "content": "Hello there"}]
Client = openai.AsyncOpenAI


@pytest.fixture
async def server(aiohttp_server) -> TestServer:
    return await aiohttp_server(fake_openai_app(api_key=KEY))


@pytest.fixture
async def client(server: TestServer):
    async with Client(api_key=KEY, base_url=str(server.make_url("/v1")), max_retries=0) as c:
        yield c


def now() -> float:
    return asyncio.get_running_loop().time()


async def post(server: TestServer, model: str, path: str = "/v1/chat/completions", **kw: Any) -> tuple[int, Any, Any]:
    """Status, headers and body (JSON, or the SSE ``data:`` payloads of a stream) of one request."""
    body: dict[str, Any] = {"model": model, "messages": HELLO, **kw}
    if path == "/v1/responses":
        body = {"model": model, "input": "Hello there", **kw}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(headers=headers) as http, http.post(server.make_url(path), json=body) as resp:
        text = await resp.text()
    if resp.content_type == "text/event-stream":
        return resp.status, resp.headers, [e.removeprefix("data: ") for e in text.strip().split("\n\n")]
    return resp.status, resp.headers, json.loads(text)


async def test_echo_and_recording(client: Client, server: TestServer) -> None:
    answer = await client.chat.completions.create(model="gpt-fake", messages=HELLO)
    assert ChatCompletion.model_validate(answer.to_dict()).choices[0].message.content == "Echo: Hello there"
    [received] = server.app[RECEIVED]
    assert (received.path, received.body["model"]) == ("/v1/chat/completions", "gpt-fake")


@pytest.mark.parametrize(
    ("model", "retry_after"),
    [("gpt-error_429", "1"), ("gpt-error_429-retry_7", "7"), ("gpt-error_503-retry_5", "5"), ("gpt-error_500", None)],
)
async def test_retry_after(server: TestServer, model: str, retry_after: str | None) -> None:
    status, headers, body = await post(server, model)
    assert status == int(model.split("error_")[1][:3]) and headers.get("Retry-After") == retry_after
    if status == 429:
        assert body == {"error": {"message": "Mock upstream error 429", "type": "requests", "param": None,
                                  "code": "rate_limit_exceeded"}}  # fmt: skip


async def test_rate_limit_through_the_sdk(client: Client) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-error_429-retry_7", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7" and caught.value.code == "rate_limit_exceeded"


async def test_error_401_is_the_body_a_wrong_key_gets(server: TestServer) -> None:
    status, _, body = await post(server, "gpt-error_401")
    shown = "sk-ups" + "*" * 28 + "test"
    assert status == 401 and body == {"error": {
        "message": f"Incorrect API key provided: {shown}. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}  # fmt: skip
    async with Client(api_key="sk-wrong-key-0000", base_url=str(server.make_url("/v1")), max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.chat.completions.create(model="gpt-fake", messages=HELLO)
    assert caught.value.code == "invalid_api_key" and caught.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_drops_the_connection_before_any_status(client: Client, server: TestServer, stream) -> None:
    with pytest.raises(aiohttp.ClientConnectionError):  # ServerDisconnectedError: no status line came
        await post(server, "gpt-reset", stream=stream)
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="gpt-reset", messages=HELLO, stream=stream)
    assert [r.body["model"] for r in server.app[RECEIVED]] == ["gpt-reset"] * 2  # the body was read
    assert (await post(server, "gpt-fake"))[0] == 200  # the server is fine


@pytest.mark.parametrize("stream", [False, True])
async def test_first_byte_delays_the_status_not_the_chunks(server: TestServer, stream: bool) -> None:
    url = server.make_url("/v1/chat/completions")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:
        started = now()
        async with http.post(url, json={"model": "gpt-first_byte_300", "messages": HELLO, "stream": stream}) as resp:
            headed = now()
            body = await resp.text()
        done = now()
    assert resp.status == 200 and headed - started >= 0.3
    assert done - headed < 0.2  # the answer itself comes at once
    assert "Echo: Hello there" in body if not stream else body.endswith("data: [DONE]\n\n")


async def test_first_byte_delays_errors_too(server: TestServer) -> None:
    started = now()
    status, headers, _ = await post(server, "gpt-first_byte_200-error_429")
    assert (status, headers["Retry-After"]) == (429, "1") and now() - started >= 0.2


async def test_preamble_error(client: Client, server: TestServer) -> None:
    status, _, frames = await post(server, "gpt-preamble_error", stream=True)
    assert status == 200 and len(frames) == 2  # no content, no [DONE]
    role = ChatCompletionChunk.model_validate_json(frames[0])
    assert role.choices[0].delta.role == "assistant" and role.choices[0].delta.content == ""
    assert json.loads(frames[1]) == {"error": {"message": "Mock upstream error 500", "type": "server_error",
                                               "param": None, "code": None}}  # fmt: skip
    got = []
    stream = await client.chat.completions.create(model="gpt-preamble_error", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="Mock upstream error 500"):
        async for chunk in stream:
            got.append(chunk)
    assert len(got) == 1 and got[0].choices[0].delta.role == "assistant"
    # a plain answer is unchanged
    assert (await post(server, "gpt-preamble_error"))[2]["choices"][0]["message"]["content"] == "Echo: Hello there"


async def test_stall_after_sends_n_chunks_then_nothing(server: TestServer) -> None:
    body = {"model": "gpt-stall_after_1", "messages": HELLO, "stream": True}
    url = server.make_url("/v1/chat/completions")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
        http.post(url, json=body) as resp,
    ):
        assert resp.status == 200
        role = await resp.content.readuntil(b"\n\n")
        content = await resp.content.readuntil(b"\n\n")
        with pytest.raises(TimeoutError):  # then nothing, the connection open
            await asyncio.wait_for(resp.content.readany(), 0.3)
        assert not resp.content.at_eof()
    assert ChatCompletionChunk.model_validate_json(role.removeprefix(b"data: ")).choices[0].delta.role == "assistant"
    chunk = ChatCompletionChunk.model_validate_json(content.removeprefix(b"data: "))
    assert chunk.choices[0].delta.content == "Echo:"  # the first of 4 pieces of "Echo: Hello there"
    assert await asyncio.wait_for(server.app[DISCONNECTS].get(), 5) == "gpt-stall_after_1"


async def test_stall_after_0_sends_only_the_role_chunk(client: Client, server: TestServer) -> None:
    stream = await client.with_options(timeout=0.5).chat.completions.create(
        model="gpt-stall_after_0", messages=HELLO, stream=True
    )
    got = []
    with pytest.raises(openai.APITimeoutError):
        async for chunk in stream:
            got.append(chunk)
    assert [c.choices[0].delta.role for c in got] == ["assistant"]
    assert await asyncio.wait_for(server.app[DISCONNECTS].get(), 5) == "gpt-stall_after_0"


async def test_fail_first_counts_per_model_name_and_per_app(aiohttp_server, server: TestServer) -> None:
    statuses = [(await post(server, "gpt-fail_first_2"))[0] for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    status, _, body = await post(server, "gpt-fail_first_2-x")  # another name: its own count
    assert status == 500 and body["error"] == {"message": "Mock upstream error 500", "type": "server_error",
                                               "param": None, "code": None}  # fmt: skip
    other = await aiohttp_server(fake_openai_app(api_key=KEY))  # another app: counted afresh
    assert (await post(other, "gpt-fail_first_2"))[0] == 500
    # the Responses endpoint of the same app shares the count
    assert (await post(server, "gpt-fail_first_2", "/v1/responses"))[0] == 200
    assert (await post(other, "gpt-fail_first_2", "/v1/responses"))[0] == 500
    assert (await post(other, "gpt-fail_first_2", stream=True))[0] == 200


async def test_fail_first_through_the_sdk(client: Client) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-fail_first_2", messages=HELLO)
    answer = await client.chat.completions.create(model="gpt-fail_first_2", messages=HELLO)
    assert answer.choices[0].message.content == "Echo: Hello there"


@pytest.mark.parametrize("model", ["gpt-5.1-codex", "codex-mini-latest", "gpt-5-pro", "o3-pro"])
async def test_responses_only_models_are_refused_on_chat(client: Client, server: TestServer, model: str) -> None:
    status, _, body = await post(server, model)
    assert status == 400 and body == {"error": {
        "message": "This model is only supported in v1/responses and not in v1/chat/completions.",
        "type": "invalid_request_error", "param": "model", "code": None}}  # fmt: skip
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=model, messages=HELLO, stream=True)
    assert caught.value.param == "model"
    assert (await client.responses.create(model=model, input="Hello there")).output_text == "Echo: Hello there"


async def test_pro_only_at_the_end(server: TestServer) -> None:
    assert (await post(server, "gpt-pro-tools"))[0] == 200
