"""The anthropic SDK against /v1/messages: to an Anthropic upstream (passthrough) and to an
OpenAI-format upstream (translated)."""

from __future__ import annotations

import copy

import aiohttp
import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from izzi_proxy.config import load_config
from izzi_proxy.testing import sign_thinking
from tests.conftest import ANTHROPIC_KEY, Gateway, start_gateway, write_config
from tests.e2e.shapes import assert_anthropic_error

HELLO = [{"role": "user", "content": "Hello there"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
CLOCK = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}
EVENTS = TypeAdapter(RawMessageStreamEvent)


def strict(message: Message) -> Message:
    return Message.model_validate(message.to_dict())


# -- passthrough: Anthropic client, Anthropic upstream --------------------------------------


async def test_plain_passthrough(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.create(
        model="claude", max_tokens=100, messages=HELLO, system="Be brief", metadata={"user_id": "u-1"}
    )
    message = strict(await raw.parse())
    assert message.content[0].text == "Echo: Hello there"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    sent = gateway.anthropic_received[-1]
    assert sent.path == "/v1/messages"
    assert sent.body == {"model": "claude-echo", "max_tokens": 100, "messages": HELLO, "system": "Be brief",
                         "metadata": {"user_id": "u-1"}}  # fmt: skip
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and gateway.key not in str(sent.headers)
    assert sent.headers["anthropic-version"]  # the client's, passed on
    record = await gateway.record(raw.headers["x-request-id"])
    assert (record.upstream, record.outcome) == ("claude", "ok")
    assert record.usage.output_tokens == message.usage.output_tokens
    assert record.usage.input_tokens == message.usage.input_tokens


async def test_streamed_passthrough_with_the_sdk_helper(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model="claude", max_tokens=100, messages=HELLO) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "Echo: Hello there"
    strict(final)
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


async def test_passthrough_event_sequence_is_anthropics(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.create(model="claude-tools", max_tokens=200, messages=HELLO,
                                                        tools=[WEATHER, CLOCK], stream=True)  # fmt: skip
    events = [EVENTS.validate_python(e.to_dict()) async for e in await raw.parse()]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    assert events[-2].delta.stop_reason == "tool_use"
    record = await gateway.record(raw.headers["x-request-id"])
    assert record.usage.output_tokens == events[-2].usage.output_tokens


async def test_query_string_and_beta_headers_pass(gateway: Gateway) -> None:
    body = {"model": "claude", "max_tokens": 50, "messages": HELLO}
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01",
               "anthropic-beta": "interleaved-thinking-2025-05-14,context-management-2025-06-27"}  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.server.make_url("/v1/messages?beta=true"), json=body, headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
    sent = gateway.anthropic_received[-1].headers
    assert sent["anthropic-beta"] == headers["anthropic-beta"] and sent["anthropic-version"] == "2023-06-01"


async def test_thinking_round_trips_byte_exact_through_a_tool_turn(
    gateway: Gateway, claude: anthropic.AsyncAnthropic
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 2000}
    first = await claude.messages.create(model="claude-thinking", max_tokens=4000, thinking=thinking,
                                         messages=HELLO, tools=[WEATHER])  # fmt: skip
    kinds = [block.type for block in first.content]
    assert kinds[0] == "thinking" and "tool_use" in kinds
    assert first.content[0].signature == sign_thinking(first.content[0].thinking)
    tool_use = next(b for b in first.content if b.type == "tool_use")
    turn = [*HELLO, {"role": "assistant", "content": [b.to_dict() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "31C"}]}]  # fmt: skip
    second = await claude.messages.create(model="claude-thinking", max_tokens=4000, thinking=thinking,
                                          messages=turn, tools=[WEATHER])  # fmt: skip
    assert second.content[-1].text == "Tool results: 31C"
    assert gateway.anthropic_received[-1].body["messages"][1] == turn[1]  # byte-exact in passthrough

    altered = copy.deepcopy(turn)
    altered[1]["content"][0]["thinking"] += " (edited)"
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(model="claude-thinking", max_tokens=4000, thinking=thinking,
                                     messages=altered, tools=[WEATHER])  # fmt: skip
    assert "Invalid `signature`" in caught.value.message


async def test_redacted_thinking_round_trips(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    thinking = {"type": "enabled", "budget_tokens": 2000}
    async with claude.messages.stream(model="claude-redacted", max_tokens=4000, thinking=thinking,
                                      messages=HELLO, tools=[WEATHER]) as stream:  # fmt: skip
        first = await stream.get_final_message()
    assert [b.type for b in first.content][:2] == ["thinking", "redacted_thinking"]
    tool_use = next(b for b in first.content if b.type == "tool_use")
    turn = [*HELLO, {"role": "assistant", "content": [b.to_dict() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "ok"}]}]  # fmt: skip
    second = await claude.messages.create(model="claude-redacted", max_tokens=4000, thinking=thinking,
                                          messages=turn, tools=[WEATHER])  # fmt: skip
    assert second.content[-1].text == "Tool results: ok"


async def test_cache_tokens_come_back(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    system = [{"type": "text", "text": "You are helpful.", "cache_control": {"type": "ephemeral"}}]
    message = await claude.messages.create(model="claude", max_tokens=50, system=system, messages=HELLO)
    assert message.usage.cache_creation_input_tokens > 0 and message.usage.cache_read_input_tokens > 0
    assert gateway.anthropic_received[-1].body["system"] == system


# -- errors on /v1/messages are Anthropic's envelope --------------------------------------------


async def test_errors_use_anthropics_envelope(gateway: Gateway) -> None:
    url = gateway.server.make_url("/v1/messages")
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"model": "claude", "messages": HELLO}) as resp:
            await assert_anthropic_error(resp, 401, "authentication_error")
        headers = {"x-api-key": gateway.key}
        async with session.post(url, json={"model": "claude", "messages": HELLO}, headers=headers) as resp:
            error = await assert_anthropic_error(resp, 400, "invalid_request_error")
            assert "max_tokens" in error["message"]
        async with session.post(
            url, json={"model": "nope", "max_tokens": 5, "messages": HELLO}, headers=headers
        ) as resp:
            await assert_anthropic_error(resp, 404, "not_found")
        async with session.post(url, data=b"{", headers=headers) as resp:
            await assert_anthropic_error(resp, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("model", "exception", "status", "type_"),
    [
        ("claude-error-529", anthropic.InternalServerError, 502, "upstream_error"),
        ("claude-error-400", anthropic.BadRequestError, 400, "invalid_request_error"),
        ("nope", anthropic.NotFoundError, 404, "not_found"),
    ],
)
async def test_sdk_exceptions(claude: anthropic.AsyncAnthropic, model, exception, status, type_) -> None:
    with pytest.raises(exception) as caught:
        await claude.messages.create(model=model, max_tokens=10, messages=HELLO)
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == type_


async def test_sdk_authentication_error(gateway: Gateway) -> None:
    async with gateway.anthropic(api_key="izzi-" + "x" * 43) as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(model="claude", max_tokens=10, messages=HELLO)


@pytest.mark.parametrize("model", ["claude-stream-error", "claude-cut", "stream-error", "cut"])
async def test_errors_after_the_first_byte(gateway: Gateway, claude: anthropic.AsyncAnthropic, model: str) -> None:
    """Anthropic upstream (passthrough) and OpenAI upstream (translated) alike."""
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(model=model, max_tokens=100, messages=HELLO) as stream:
            async for _ in stream:
                pass
    assert caught.value.body["type"] == "error"


async def test_fallback_from_an_anthropic_route_to_an_openai_one(gateway: Gateway, claude) -> None:
    message = await claude.messages.create(model="claude-fallback", max_tokens=50, messages=HELLO)
    assert message.content[0].text == "Echo: Hello there"
    assert gateway.received[-1].body["model"] == "upstream-fallback-ok"


# -- translated: Anthropic client, OpenAI-format upstream -------------------------------------


async def test_plain_to_openai_upstream(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.create(
        model="gpt-4o", max_tokens=100, system=[{"type": "text", "text": "Be brief"}], messages=HELLO,
        stop_sequences=["END"], metadata={"user_id": "u-9"}, extra_body={"temperature": 0.3},
    )  # fmt: skip
    message = strict(await raw.parse())
    assert message.content[0].text == "Echo: Hello there"
    assert message.stop_reason == "end_turn" and message.model == "gpt-4o"
    assert message.id.startswith("msg_") and message.usage.output_tokens > 0
    sent = gateway.received[-1].body
    assert sent == {"model": "upstream-gpt-4o", "messages": [{"role": "system", "content": "Be brief"}, *HELLO],
                    "max_tokens": 100, "temperature": 0.3, "stop": ["END"], "user": "u-9"}  # fmt: skip
    record = await gateway.record(raw.headers["x-request-id"])
    assert record.usage.output_tokens == message.usage.output_tokens


async def test_streamed_to_openai_upstream(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.create(model="gpt-4o", max_tokens=100, messages=HELLO, stream=True)
    events = [EVENTS.validate_python(e.to_dict()) async for e in await raw.parse()]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Echo: Hello there"
    assert events[-2].usage.output_tokens > 0 and events[-2].delta.stop_reason == "end_turn"
    assert gateway.received[-1].body["stream_options"] == {"include_usage": True}
    record = await gateway.record(raw.headers["x-request-id"])
    assert record.usage.output_tokens == events[-2].usage.output_tokens


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_round_trip_to_openai_upstream(gateway: Gateway, claude, stream: bool) -> None:
    async with claude.messages.stream(model="tools", max_tokens=200, messages=HELLO, tools=[WEATHER, CLOCK]) as s:
        first = await s.get_final_message()
    strict(first)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather", "get_time"]
    assert uses[0].input == {"city": "Hanoi", "days": 3} and first.stop_reason == "tool_use"
    sent_tools = gateway.received[-1].body["tools"]
    assert sent_tools[0] == {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                               "parameters": WEATHER["input_schema"]}}  # fmt: skip
    turn = [*HELLO, {"role": "assistant", "content": [b.to_dict() for b in first.content]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": "31C"},
                {"type": "tool_result", "tool_use_id": uses[1].id, "content": [{"type": "text", "text": "noon"}]}]}]  # fmt: skip
    if stream:
        async with claude.messages.stream(model="tools", max_tokens=200, messages=turn, tools=[WEATHER, CLOCK]) as s:
            second = await s.get_final_message()
    else:
        second = await claude.messages.create(model="tools", max_tokens=200, messages=turn, tools=[WEATHER, CLOCK])
    sent = gateway.received[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    # the client sees Anthropic's convention; the upstream gets its own ids back
    assert all(u.id.startswith("toolu_") for u in uses)
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_" + u.id.removeprefix("toolu_") for u in uses]
    assert sent[2] == {"role": "tool", "tool_call_id": sent[1]["tool_calls"][0]["id"], "content": "31C"}
    assert second.content[0].text == "Tool results: 31C; noon"


async def test_images_to_openai_upstream(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    message = await claude.messages.create(
        model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].text == "Echo: What is this? [2 image(s)]"
    parts = gateway.received[-1].body["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}


async def test_thinking_toward_an_openai_reasoning_model(gateway: Gateway, claude) -> None:
    message = await claude.messages.create(model="gpt-reasoning", max_tokens=5000, messages=HELLO,
                                           thinking={"type": "enabled", "budget_tokens": 4000})  # fmt: skip
    sent = gateway.received[-1].body
    assert sent["reasoning_effort"] == "medium" and sent["max_completion_tokens"] == 5000
    assert "max_tokens" not in sent and "thinking" not in sent
    assert [b.type for b in message.content] == ["text"]  # unsigned reasoning is not shown
    assert "Thinking" not in message.content[0].text


async def test_max_tokens_stop_reason_from_openai(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model="gpt-length", max_tokens=5, messages=HELLO)
    assert message.stop_reason == "max_tokens"


CLAUDE_CODE_SYSTEM = [
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
    {"type": "text", "text": "Project instructions…", "cache_control": {"type": "ephemeral"}},
]


def claude_code_body(model: str) -> dict:
    """A request shaped like Claude Code's: thinking, three cache breakpoints, context
    management, metadata, a beta tool next to ordinary ones."""
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "system": CLAUDE_CODE_SYSTEM,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "metadata": {"user_id": "user_abc_account_def_session_123"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "tools": [
            {**WEATHER, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        ],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello there", "cache_control": {"type": "ephemeral"}}],
            }
        ],
    }


@pytest.mark.parametrize("model", ["claude-thinking", "gpt-reasoning"])
async def test_a_claude_code_shaped_request(gateway: Gateway, model: str) -> None:
    body = claude_code_body(model)
    headers = {"x-api-key": gateway.key, "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"}  # fmt: skip
    async with aiohttp.ClientSession() as session:
        url = gateway.server.make_url("/v1/messages?beta=true")
        async with session.post(url, json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            frames = (await resp.read()).decode()
    assert "event: message_stop" in frames and "event: error" not in frames
    if model.startswith("claude"):
        sent = gateway.anthropic_received[-1]
        assert sent.body == {**body, "model": "claude-thinking-tools"}  # untouched but for the model
        assert sent.headers["anthropic-beta"] == headers["anthropic-beta"]
    else:
        sent = gateway.received[-1].body
        assert sent["reasoning_effort"] == "high" and sent["max_completion_tokens"] == 32000
        assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]  # the beta tool is dropped
        flat = str(sent)
        assert "cache_control" not in flat and "context_management" not in flat and "thinking" not in sent
        assert sent["messages"][0] == {"role": "system", "content": "You are Claude Code, Anthropic's official CLI "
                                       "for Claude.\n\nProject instructions…"}  # fmt: skip


# -- count_tokens ------------------------------------------------------------------------------


async def test_count_tokens_exact_for_claude(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.count_tokens(model="claude", messages=HELLO, system="Be brief")
    counted = await raw.parse()
    assert raw.headers["x-izzi-token-count"] == "exact"
    sent = gateway.anthropic_received[-1]
    assert sent.path == "/v1/messages/count_tokens" and sent.body["model"] == "claude-echo"
    assert counted.input_tokens > 0


async def test_count_tokens_estimated_for_other_models(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    raw = await claude.messages.with_raw_response.count_tokens(
        model="gpt-4o", messages=[{"role": "user", "content": "x" * 400}], tools=[WEATHER]
    )
    assert raw.headers["x-izzi-token-count"] == "estimated"
    assert (await raw.parse()).input_tokens > 100
    assert gateway.received == []  # nothing went upstream


async def test_count_tokens_is_recorded(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    for model, upstream in [("claude", "claude"), ("gpt-4o", None)]:
        raw = await claude.messages.with_raw_response.count_tokens(model=model, messages=HELLO)
        record = await gateway.record(raw.headers["x-request-id"])
        assert (record.endpoint, record.model, record.upstream, record.status) == (
            "/v1/messages/count_tokens",
            model,
            upstream,
            200,
        )
        assert record.usage is None  # a count costs nothing


async def test_count_tokens_has_its_own_limit(aiohttp_server, upstream, anthropic_upstream, tmp_path, upstream_env):
    path = write_config(tmp_path, str(upstream.make_url("/v1")), anthropic_url=str(anthropic_upstream.make_url("")))
    gateway = await start_gateway(aiohttp_server, load_config(path), upstream, plan="counted")
    async with gateway.anthropic() as claude:
        for _ in range(3):
            await claude.messages.count_tokens(model="gpt-4o", messages=HELLO)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await claude.messages.count_tokens(model="gpt-4o", messages=HELLO)
        assert caught.value.response.headers["retry-after"] and "3 requests per minute" in caught.value.message
        await claude.messages.create(model="claude", max_tokens=10, messages=HELLO)  # the plan's requests: untouched
