"""The fake Anthropic upstream, driven by the official ``anthropic`` SDK.

The SDK builds responses leniently, so every answer and stream event is re-validated with the
SDK's own pydantic models: a shape the SDK would merely tolerate fails here.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import anthropic
import httpx2
import pydantic
import pytest
from aiohttp.test_utils import TestServer
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse

from izzi_proxy.testing import DISCONNECTS, RECEIVED, ChatScript, fake_anthropic_app, sign_thinking

KEY = "sk-ant-test"
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
TOOLS: Any = [
    {"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"name": "get_time", "input_schema": {
        "type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "ICT"]}}}},
]  # fmt: skip
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)
Client = anthropic.AsyncAnthropic


@pytest.fixture
async def server(aiohttp_server) -> TestServer:
    return await aiohttp_server(fake_anthropic_app(api_key=KEY))


@pytest.fixture
async def client(server: TestServer):
    async with Client(api_key=KEY, base_url=str(server.make_url("")), max_retries=0) as c:
        yield c


def strict(message: Any) -> Message:
    return Message.model_validate(message.to_dict())


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def params(content: Any = "Hello", model: str = "claude-fake", **kw) -> dict[str, Any]:
    return {"model": model, "max_tokens": 2048, "messages": [user(content)], **kw}


async def ask(client: Client, content: Any = "Hello", **kw) -> Message:
    return strict(await client.messages.create(**params(content, **kw)))


async def final(client: Client, content: Any = "Hello", **kw) -> Message:
    async with client.messages.stream(**params(content, **kw)) as stream:
        return strict(await stream.get_final_message())


async def events(client: Client, content: Any = "Hello there", **kw) -> list[Any]:
    got = []
    async for event in await client.messages.create(**params(content, **kw), stream=True):
        assert type(event).model_validate(event.to_dict()) == event
        got.append(event)
    return got


async def post(server: TestServer, body: Any, **headers: str) -> tuple[int, str]:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", **headers}
    headers = {k: v for k, v in headers.items() if v}
    async with aiohttp.ClientSession() as session, session.post(
        server.make_url("/v1/messages"), json=body, headers=headers
    ) as resp:  # fmt: skip
        return resp.status, await resp.text()


async def test_echo_usage_and_recording(client: Client, server: TestServer) -> None:
    msg = await ask(client, "Hello")
    assert msg.id.startswith("msg_") and msg.model == "claude-fake" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "Echo: Hello"
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
    usage = msg.usage
    assert (usage.input_tokens, usage.output_tokens) == (2, 3)  # ceil(5/4), ceil(11/4)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
    assert usage.service_tier == "standard"
    [received] = server.app[RECEIVED]
    assert (received.method, received.path, received.body["messages"]) == (
        "POST",
        "/v1/messages",
        [user("Hello")],
    )
    # anthropic>=2 sends the key as a Bearer token, not x-api-key
    assert received.headers["Authorization"] == f"Bearer {KEY}" and received.headers["anthropic-version"]


async def test_images_are_counted_like_the_openai_fake(client: Client) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    msg = await ask(client, [{"type": "text", "text": "Look"}, image, image, {"type": "text", "text": "here"}])
    url = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PIXEL}}
    openai = ChatScript(
        {"messages": [user([{"type": "text", "text": "Look"}, url, url, {"type": "text", "text": "here"}])]}
    )
    assert msg.content[0].text == "Echo: Look here [2 image(s)]" == openai.text()


async def test_stream_helper_matches_the_plain_answer(client: Client) -> None:
    plain = await ask(client, "Hello there")
    async with client.messages.stream(**params("Hello there")) as stream:
        pieces = [text async for text in stream.text_stream]
        streamed = strict(await stream.get_final_message())
    assert len(pieces) == 4 and "".join(pieces) == "Echo: Hello there"
    assert streamed.model_dump(exclude={"id"}) == plain.model_dump(exclude={"id"})


async def test_raw_stream_events_in_order(client: Client, server: TestServer) -> None:
    got = await events(client)
    assert [e.type for e in got] == [
        "message_start", "content_block_start", *["content_block_delta"] * 4,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    start, delta = got[0].message, got[-2]
    assert start.content == [] and start.stop_reason is None and start.usage.output_tokens == 1
    assert got[1].content_block.model_dump(exclude_none=True) == {"type": "text", "text": ""}
    assert "".join(e.delta.text for e in got[2:6]) == "Echo: Hello there"
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 5
    assert delta.usage.input_tokens == start.usage.input_tokens == 3
    # On the wire: each frame names its type twice; a ping (the SDK drops it) follows message_start.
    status, text = await post(server, params("Hi", stream=True))
    assert status == 200
    frames = text.removesuffix("\n\n").split("\n\n")
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names[:3] == ["message_start", "ping", "content_block_start"] and names[-1] == "message_stop"
    for name, frame in zip(names, frames, strict=True):
        data = frame.split("\n", 1)[1].removeprefix("data: ")
        assert data == '{"type":"ping"}' if name == "ping" else EVENT.validate_json(data).type == name


async def test_tools_round_trip(client: Client) -> None:
    first = await ask(client, "Weather?", model="claude-tools", tools=TOOLS)
    assert first.stop_reason == "tool_use"
    uses = [(b.type, b.name, b.input) for b in first.content]
    assert uses == [("tool_use", "get_weather", {"city": "Hanoi"}), ("tool_use", "get_time", {"tz": "UTC"})]
    ids = [b.id for b in first.content]
    assert all(i.startswith("toolu_") for i in ids) and len(set(ids)) == 2
    streamed = await final(client, "Weather?", model="claude-tools", tools=TOOLS)
    assert [(b.type, b.name, b.input) for b in streamed.content] == uses
    nine = [{"type": "text", "text": "9am"}]
    results = [{"type": "tool_result", "tool_use_id": ids[0], "content": "31C"},
               {"type": "tool_result", "tool_use_id": ids[1], "content": nine}]  # fmt: skip

    def then(content: Any) -> dict[str, Any]:
        return {
            "model": "claude-tools",
            "tools": TOOLS,
            "messages": [user("Weather?"), first.to_param(), user(content)],
        }

    second = await ask(client, **then(results))
    assert second.content[0].text == "Tool results: 31C; 9am" and second.stop_reason == "end_turn"
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id` found in `tool_result`"):
        await ask(client, **then([{**results[0], "tool_use_id": "toolu_nope"}, results[1]]))
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result` blocks immediately after"):
        await ask(client, **then("never mind"))


def turn(first: str, blocks: Any, then: str) -> list[Any]:
    return [user(first), {"role": "assistant", "content": blocks}, user(then)]


async def test_thinking_signature_round_trip(client: Client) -> None:
    first = await ask(client, "Think", thinking=THINKING)
    thought, text = first.content
    assert thought.type == "thinking" and thought.signature == sign_thinking(thought.thinking) != ""
    assert text.text == "Echo: Think" and first.usage.output_tokens > 3
    assert (await final(client, "Think", thinking=THINKING)).content == first.content  # via signature_delta
    again = await ask(client, thinking=THINKING, messages=turn("Think", first.to_param()["content"], "Again"))
    assert again.content[-1].text == "Echo: Again"
    altered = [{"type": "thinking", "thinking": thought.thinking + "!", "signature": thought.signature}, text]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await ask(client, thinking=THINKING, messages=turn("Think", altered, "Again"))
    assert caught.value.api_message == "messages.1.content.0: Invalid `signature` in `thinking` block"


async def test_redacted_thinking_round_trip(client: Client) -> None:
    first = await ask(client, "Secret", model="claude-redacted", thinking=THINKING)
    assert [b.type for b in first.content] == ["thinking", "redacted_thinking", "text"]
    assert first.content[1].data.startswith("redacted:")
    raw = await events(client, "Secret", model="claude-redacted", thinking=THINKING)
    starts = [e.content_block for e in raw if e.type == "content_block_start"]
    assert [b.type for b in starts] == ["thinking", "redacted_thinking", "text"] and starts[1] == first.content[1]
    ok = await ask(client, thinking=THINKING, messages=turn("Secret", first.to_param()["content"], "Go"))
    assert ok.content[-1].text == "Echo: Go"
    blocks = [b.to_dict() for b in first.content]
    blocks[1]["data"] = blocks[1]["data"][:-4] + "AAA="
    with pytest.raises(anthropic.BadRequestError, match=r"messages\.1\.content\.1: Invalid `data`"):
        await ask(client, thinking=THINKING, messages=turn("Secret", blocks, "Go"))


@pytest.mark.parametrize(
    ("status", "error_class", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, anthropic.ContentTooLargeError, "request_too_large"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (503, anthropic.ServiceUnavailableError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_error_statuses(client: Client, status: int, error_class: type, kind: str) -> None:
    with pytest.raises(error_class) as caught:
        await ask(client, model=f"claude-error_{status}")
    error = caught.value
    says = {401: "invalid x-api-key", 529: "Overloaded"}.get(status, f"Mock upstream error {status}")
    assert (error.status_code, error.type, error.api_message) == (status, kind, says)
    assert error.request_id and error.request_id.startswith("req_")
    if status != 413:  # the SDK's ErrorObject union has no `request_too_large` member
        assert ErrorResponse.model_validate(error.body).error.type == kind


@pytest.mark.parametrize("after", [0, 2])
async def test_in_stream_error(client: Client, after: int) -> None:
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(**params(model=f"claude-stream_error_after_{after}")) as stream:
            async for text in stream.text_stream:
                got.append(text)
    assert len(got) == after
    assert (caught.value.type, caught.value.api_message) == ("overloaded_error", "Mock upstream error 529")


async def test_cut_abort_and_disconnect(client: Client, server: TestServer) -> None:
    cut = await events(client, model="claude-cut_after_2")
    assert [e.type for e in cut][-3:] == ["content_block_start", "content_block_delta", "content_block_delta"]
    # the cut connection: the SDK wraps it when it happens inside its own read of the body, and
    # not when it surfaces in the SSE decoder's iteration (which one depends on the timing)
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        await events(client, model="claude-abort_after_2")
    stream = await client.messages.create(**params(model="claude-slow_50"), stream=True)
    assert (await anext(aiter(stream))).type == "message_start"
    await stream.close()
    assert await asyncio.wait_for(server.app[DISCONNECTS].get(), 5) == "claude-slow_50"


async def test_stop_reasons(client: Client) -> None:
    assert (await ask(client, model="claude-max_tokens")).stop_reason == "max_tokens"
    stopped = await ask(client, model="claude-stop_seq", stop_sequences=["END", "STOP"])
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "END")


async def test_auth_and_version_headers(server: TestServer) -> None:
    async with Client(api_key="wrong", base_url=str(server.make_url("")), max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await ask(wrong)
    assert (caught.value.type, caught.value.api_message) == ("authentication_error", "invalid x-api-key")
    status, text = await post(server, params())  # x-api-key works too
    assert status == 200 and Message.model_validate_json(text).content[0].text == "Echo: Hello"
    status, text = await post(server, params(), **{"anthropic-version": ""})
    error = ErrorResponse.model_validate_json(text)
    assert status == 400 and error.error.type == "invalid_request_error" and "anthropic-version" in text
    assert error.request_id and error.request_id.startswith("req_")
    assert len(server.app[RECEIVED]) == 3  # rejected requests are recorded too


async def test_count_tokens_matches_usage(client: Client, server: TestServer) -> None:
    kw: Any = {"system": "Be brief.", "messages": [user("Count these words, please")]}
    counted = await client.messages.count_tokens(model="claude-fake", **kw)
    assert MessageTokensCount.model_validate(counted.to_dict()).input_tokens == 9  # ceil(34/4)
    assert strict(await client.messages.create(model="claude-fake", max_tokens=64, **kw)).usage.input_tokens == 9
    assert server.app[RECEIVED][0].path == "/v1/messages/count_tokens"
    with pytest.raises(anthropic.BadRequestError, match="at least one message"):
        await client.messages.count_tokens(model="claude-fake", messages=[])


async def test_cache_control_reports_cache_tokens(client: Client) -> None:
    system: Any = [{"type": "text", "text": "Long system prompt", "cache_control": {"type": "ephemeral"}}]
    content = [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    usage = (await ask(client, content, system=system)).usage
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (22, 44)
    assert usage.cache_creation is not None and usage.cache_creation.ephemeral_1h_input_tokens == 11
    got = await events(client, system=system)
    assert got[0].message.usage.cache_read_input_tokens == got[-2].usage.cache_read_input_tokens == 22
    assert (await final(client, system=system)).usage.cache_creation_input_tokens == 11


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"max_tokens": 0}, "max_tokens: Input should be an integer greater than or equal to 1"),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "budget_tokens: Input should be greater"),
        ({"max_tokens": 1024, "thinking": THINKING}, "`max_tokens` must be greater than `thinking.budget"),
        ({"messages": [user([{"type": "text"}])]}, "messages.0.content.0.text: Field required"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, 'first message must use the "user" role'),
        ({"messages": [user("a"), {"role": "system", "content": "b"}]}, "messages.1.role: Input should be"),
        ({"messages": []}, "messages: at least one message is required"),
        ({"temperature": 1.5}, "temperature: Input should be a number between 0 and 1"),
        ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "forever"}}]}, "cache_control"),
    ],
)
async def test_invalid_bodies(server: TestServer, change: dict[str, Any], expected: str) -> None:
    body = {k: v for k, v in {**params("Hi"), **change}.items() if v is not None}
    status, text = await post(server, body)
    error = ErrorResponse.model_validate_json(text).error
    assert status == 400 and error.type == "invalid_request_error" and expected in error.message, error.message
    assert server.app[RECEIVED][-1].body == body


SYSTEM_BETA = "claude-code-20250219,mid-conversation-system-2026-04-07"


@pytest.mark.parametrize(
    ("messages", "beta", "expected"),
    [
        ([user("a"), {"role": "system", "content": "b"}, user("c")], "", "messages.1.role: Input should be"),
        ([{"role": "system", "content": "b"}, user("a")], SYSTEM_BETA, "cannot be the first message"),
        ([user("a"), {"role": "system", "content": [{"type": "image", "source": {}}]}], SYSTEM_BETA, "text blocks"),
        ([user("a"), {"role": "system", "content": "be brief"}, user("c")], SYSTEM_BETA, None),
        ([user("a"), {"role": "system", "content": [{"type": "text", "text": "be brief"}]}], SYSTEM_BETA, None),
    ],
)
async def test_mid_conversation_system_messages_only_under_their_beta(
    server: TestServer, messages: list[Any], beta: str, expected: str | None
) -> None:
    status, text = await post(server, {**params("Hi"), "messages": messages}, **{"anthropic-beta": beta})
    if expected is None:
        assert status == 200, text
        Message.model_validate_json(text)
    else:
        assert status == 400 and expected in ErrorResponse.model_validate_json(text).error.message


@pytest.mark.parametrize("kind", ["enabled", "adaptive"])
async def test_thinking_must_lead_the_tool_turn_it_answers(client: Client, kind: str) -> None:
    thinking: Any = THINKING if kind == "enabled" else {"type": "adaptive"}
    first = await ask(client, "Weather?", model="claude-tools", tools=TOOLS, thinking=thinking)
    blocks = [block.to_dict() for block in first.content]
    assert [b["type"] for b in blocks][:2] == ["thinking", "tool_use"]
    results = [
        {"type": "tool_result", "tool_use_id": b["id"], "content": "31C"} for b in blocks if b["type"] == "tool_use"
    ]
    history = [user("Weather?"), {"role": "assistant", "content": blocks}, user(results)]
    ok = await ask(client, model="claude-tools", tools=TOOLS, thinking=thinking, messages=history)
    assert ok.content[-1].text.startswith("Tool results: 31C")
    dropped = [user("Weather?"), {"role": "assistant", "content": blocks[1:]}, user(results)]  # the client dropped it
    with pytest.raises(anthropic.BadRequestError) as caught:
        await ask(client, model="claude-tools", tools=TOOLS, thinking=thinking, messages=dropped)
    assert "a final `assistant` message must start with a thinking block" in caught.value.api_message
    assert (await ask(client, model="claude-tools", tools=TOOLS, messages=dropped)).content  # thinking off: fine


# -- failure scenarios: failover, key pools, breakers, timeouts ----------------------------------


def now() -> float:
    return asyncio.get_running_loop().time()


async def answer(server: TestServer, model: str, **kw: Any) -> tuple[int, Any, str]:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as session, session.post(
        server.make_url("/v1/messages"), json=params("Hello there", model=model, **kw), headers=headers
    ) as resp:  # fmt: skip
        return resp.status, resp.headers, await resp.text()


def wire_events(text: str) -> list[tuple[str, Any]]:
    frames = [frame.split("\n") for frame in text.strip().split("\n\n")]
    return [(name.removeprefix("event: "), json.loads(data.removeprefix("data: "))) for name, data in frames]


async def test_error_529_is_anthropics_overloaded_body(server: TestServer) -> None:
    status, headers, text = await answer(server, "claude-error_529")
    body = json.loads(text)
    assert status == 529 and body.pop("request_id") == headers["request-id"]
    assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert "Retry-After" not in headers


async def test_error_401_is_the_body_a_wrong_key_gets(server: TestServer) -> None:
    status, _, text = await answer(server, "claude-error_401")
    error = ErrorResponse.model_validate_json(text).error
    assert (status, error.type, error.message) == (401, "authentication_error", "invalid x-api-key")


@pytest.mark.parametrize(("model", "retry_after"), [("claude-error_429", "1"), ("claude-error_429-retry_7", "7")])
async def test_rate_limit_sends_retry_after(client: Client, server: TestServer, model: str, retry_after: str) -> None:
    status, headers, text = await answer(server, model)
    assert (status, headers["Retry-After"]) == (429, retry_after)
    assert ErrorResponse.model_validate_json(text).error.type == "rate_limit_error"
    with pytest.raises(anthropic.RateLimitError) as caught:
        await ask(client, model=model)
    assert caught.value.response.headers["retry-after"] == retry_after and caught.value.type == "rate_limit_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_drops_the_connection_before_any_status(client: Client, server: TestServer, stream) -> None:
    with pytest.raises(aiohttp.ClientConnectionError):  # ServerDisconnectedError: no status line came
        await answer(server, "claude-reset", stream=stream)
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(**params(model="claude-reset"), stream=stream)
    assert len(server.app[RECEIVED]) == 2
    assert (await answer(server, "claude-fake"))[0] == 200


@pytest.mark.parametrize("stream", [False, True])
async def test_first_byte_delays_the_status_not_the_events(server: TestServer, stream: bool) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = params(model="claude-first_byte_300", stream=stream)
    async with aiohttp.ClientSession(headers=headers) as http:
        started = now()
        async with http.post(server.make_url("/v1/messages"), json=body) as resp:
            headed = now()
            text = await resp.text()
        done = now()
    assert resp.status == 200 and headed - started >= 0.3 and done - headed < 0.2
    assert text.strip().endswith('{"type":"message_stop"}') if stream else "Echo: Hello" in text


async def test_preamble_error(client: Client, server: TestServer) -> None:
    status, _, text = await answer(server, "claude-preamble_error", stream=True)
    got = wire_events(text)
    assert status == 200 and [name for name, _ in got] == ["message_start", "ping", "error"]
    assert got[2][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert EVENT.validate_python(got[0][1]).message.content == []
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(**params(model="claude-preamble_error")) as stream:
            async for piece in stream.text_stream:
                texts.append(piece)
    assert texts == [] and (caught.value.type, caught.value.api_message) == ("overloaded_error", "Overloaded")


async def test_stall_after_sends_n_deltas_then_nothing(server: TestServer) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = params("Hello there", model="claude-stall_after_1", stream=True)
    url = server.make_url("/v1/messages")
    async with aiohttp.ClientSession(headers=headers) as http, http.post(url, json=body) as resp:
        frames = [await resp.content.readuntil(b"\n\n") for _ in range(4)]
        with pytest.raises(TimeoutError):  # then nothing, the connection open
            await asyncio.wait_for(resp.content.readany(), 0.3)
        assert not resp.content.at_eof()
    got = wire_events(b"".join(frames).decode())
    assert [name for name, _ in got] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert got[3][1]["delta"] == {"type": "text_delta", "text": "Echo:"}
    assert await asyncio.wait_for(server.app[DISCONNECTS].get(), 5) == "claude-stall_after_1"


async def test_fail_first_counts_per_model_name_and_per_app(aiohttp_server, client: Client, server) -> None:
    results = [await answer(server, "claude-fail_first_2") for _ in range(3)]
    assert [status for status, _, _ in results] == [500, 500, 200]
    error = ErrorResponse.model_validate_json(results[0][2]).error
    assert (error.type, error.message) == ("api_error", "Mock upstream error 500")
    assert Message.model_validate_json(results[2][2]).content[0].text == "Echo: Hello there"
    with pytest.raises(anthropic.InternalServerError):  # another name: its own count
        await ask(client, model="claude-fail_first_1-x")
    assert (await ask(client, model="claude-fail_first_1-x")).content[0].text == "Echo: Hello"
    other = await aiohttp_server(fake_anthropic_app(api_key=KEY))  # another app: counted afresh
    assert (await answer(other, "claude-fail_first_2"))[0] == 500
