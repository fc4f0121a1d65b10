"""The openai SDK against Claude models: /v1/chat/completions translated to an Anthropic
upstream, plain and streamed; the fake upstream validates every translated request
against the anthropic SDK's request types."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.conftest import Gateway
from tests.e2e.test_chat import WEATHER_TOOLS, strict

HELLO = [{"role": "user", "content": "Hello there"}]


async def test_plain(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    messages = [
        {"role": "system", "content": "Be brief"},
        {"role": "developer", "content": "Use English"},
        *HELLO,
    ]
    raw = await client.chat.completions.with_raw_response.create(
        model="claude", messages=messages, max_completion_tokens=200, temperature=0.5, top_p=0.9,
        stop="END", user="u-7",
    )  # fmt: skip
    completion = raw.parse()
    strict(ChatCompletion, completion)
    assert completion.choices[0].message.content == "Echo: Hello there"
    assert completion.choices[0].finish_reason == "stop" and completion.model == "claude"
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    sent = gateway.anthropic_received[-1]
    assert sent.body == {
        "model": "claude-echo", "max_tokens": 200, "system": "Be brief\n\nUse English",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
        "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END"], "metadata": {"user_id": "u-7"},
    }  # fmt: skip
    assert sent.headers["anthropic-version"] == "2023-06-01"
    record = await gateway.record(raw.headers["x-request-id"])
    assert record.usage.output_tokens == usage.completion_tokens and record.upstream == "claude"


async def test_streamed_with_usage(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="claude", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    for chunk in chunks:
        strict(ChatCompletionChunk, chunk)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: Hello there"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert gateway.anthropic_received[-1].body["stream"] is True


async def test_streamed_without_usage_hides_it(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="claude", messages=HELLO, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks) and all(chunk.usage is None for chunk in chunks)


async def test_tools_plain_and_round_trip(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="claude-tools",
        messages=HELLO,
        tools=WEATHER_TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
    )
    strict(ChatCompletion, completion)
    calls = completion.choices[0].message.tool_calls
    assert completion.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Hanoi", "days": 3}
    sent = gateway.anthropic_received[-1].body
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["tools"][0] == {"name": "get_weather", "input_schema": WEATHER_TOOLS[0]["function"]["parameters"],
                                "description": "Weather in a city"}  # fmt: skip
    messages = [
        *HELLO,
        completion.choices[0].message.to_dict(),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "31C"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "noon"},
    ]
    second = await client.chat.completions.create(model="claude-tools", messages=messages, tools=WEATHER_TOOLS)
    assert second.choices[0].message.content == "Tool results: 31C; noon"
    turn = gateway.anthropic_received[-1].body["messages"]
    assert [m["role"] for m in turn] == ["user", "assistant", "user"]
    assert [b["type"] for b in turn[2]["content"]] == ["tool_result", "tool_result"]


async def test_tool_argument_deltas_streamed(client: openai.AsyncOpenAI) -> None:
    deltas = []
    async with client.chat.completions.stream(model="claude-tools", messages=HELLO, tools=WEATHER_TOOLS) as stream:
        async for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                deltas.append((event.index, event.arguments_delta))
        final = await stream.get_final_completion()
    assert len(deltas) > 2 and {index for index, _ in deltas} == {0, 1}
    calls = final.choices[0].message.tool_calls
    assert json.loads(calls[0].function.arguments) == {"city": "Hanoi", "days": 3}
    assert json.loads(calls[1].function.arguments) == {"tz": "Hanoi"}
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("named", [True, False])
async def test_tool_choice_named_and_none(gateway: Gateway, client: openai.AsyncOpenAI, named: bool) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}} if named else "none"
    await client.chat.completions.create(model="claude", messages=HELLO, tools=WEATHER_TOOLS, tool_choice=choice)
    expected = {"type": "tool", "name": "get_time"} if named else {"type": "none"}
    assert gateway.anthropic_received[-1].body["tool_choice"] == expected


async def test_images(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    completion = await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content == "Echo: What is in this picture? [2 image(s)]"
    blocks = gateway.anthropic_received[-1].body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_effort_becomes_a_thinking_budget(gateway: Gateway, client, stream: bool) -> None:
    response = await client.chat.completions.create(
        model="claude-thinking", messages=HELLO, reasoning_effort="low", temperature=0.2, stream=stream
    )
    sent = gateway.anthropic_received[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 8192 + 2048 and "temperature" not in sent
    if stream:
        chunks = [c async for c in response]
        reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        message = response.choices[0].message
        reasoning, content = message.reasoning_content, message.content
    assert reasoning and reasoning not in content  # thinking shown as reasoning_content, never in content
    assert content.startswith("Echo: Hello there") or content == ""


async def test_no_thinking_without_the_signed_block(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    """An OpenAI client cannot send a thinking block back; continuing a tool turn with thinking
    on would be refused by Anthropic, so that request goes without thinking."""
    first = await client.chat.completions.create(model="claude-thinking", messages=HELLO, tools=WEATHER_TOOLS,
                                                 reasoning_effort="medium")  # fmt: skip
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": "31C"} for call in first.choices[0].message.tool_calls
    ]
    messages = [*HELLO, first.choices[0].message.to_dict(), *results]
    second = await client.chat.completions.create(
        model="claude-thinking", messages=messages, tools=WEATHER_TOOLS, reasoning_effort="medium"
    )
    assert second.choices[0].message.content.startswith("Tool results: 31C")
    assert "thinking" not in gateway.anthropic_received[-1].body
    assert "thinking" not in str(gateway.anthropic_received[-1].body["messages"])


@pytest.mark.parametrize(
    ("model", "finish"),
    [("claude-max-tokens", "length"), ("claude-stop-seq", "stop"), ("claude-tools", "tool_calls")],
)
async def test_stop_reasons(client: openai.AsyncOpenAI, model: str, finish: str) -> None:
    kwargs = {"tools": WEATHER_TOOLS} if "tools" in model else {"stop": ["zz"]}
    completion = await client.chat.completions.create(model=model, messages=HELLO, **kwargs)
    assert completion.choices[0].finish_reason == finish
    stream = await client.chat.completions.create(model=model, messages=HELLO, stream=True, **kwargs)
    assert [c.choices[0].finish_reason async for c in stream if c.choices][-1] == finish


async def test_errors(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="claude-error-529", messages=HELLO)
    assert caught.value.body["type"] == "upstream_error" and "HTTP 529" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="claude-error-400", messages=HELLO)
    stream = await client.chat.completions.create(model="claude-stream-error", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="Mock upstream error 529"):
        _ = [c async for c in stream]
