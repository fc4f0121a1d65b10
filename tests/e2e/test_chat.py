"""The openai SDK against the gateway: plain, streamed, tools, images, n>1, passthrough."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.conftest import UPSTREAM_KEY, Gateway

HELLO = [{"role": "user", "content": "Hello there"}]

WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
        },
    },
]


def strict(model: type, obj) -> None:
    """Validate an SDK object against its pydantic model (the SDK itself builds leniently)."""
    model.model_validate(obj.to_dict())


async def test_plain_completion(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    completion = raw.parse()
    strict(ChatCompletion, completion)
    assert completion.choices[0].message.content == "Echo: Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    sent = gateway.received[-1]
    assert sent.body["model"] == "upstream-gpt-4o"  # only the model is rewritten
    assert sent.body["messages"] == HELLO
    assert "stream_options" not in sent.body
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert gateway.key not in str(sent.headers)  # the client's key never goes upstream

    request_id = raw.headers["x-request-id"]
    record = await gateway.record(request_id)
    assert (record.model, record.upstream, record.upstream_model) == ("gpt-4o", "fake", "upstream-gpt-4o")
    assert (record.status, record.outcome, record.stream) == (200, "ok", False)
    assert record.usage is not None
    assert record.usage.output_tokens == completion.usage.completion_tokens
    assert record.usage.input_tokens == completion.usage.prompt_tokens


async def test_streamed_completion_hides_the_usage_chunk_it_asked_for(
    gateway: Gateway, client: openai.AsyncOpenAI
) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO, stream=True)
    chunks = [chunk async for chunk in raw.parse()]
    for chunk in chunks:
        strict(ChatCompletionChunk, chunk)
    assert all(chunk.choices for chunk in chunks), "the gateway's usage chunk leaked to the client"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Echo: Hello there"
    assert chunks[-1].choices[0].finish_reason == "stop"

    sent = gateway.received[-1]
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    record = await gateway.record(raw.headers["x-request-id"])
    assert record.stream and record.outcome == "ok"
    assert record.usage is not None and record.usage.output_tokens > 0


async def test_streamed_completion_with_client_usage(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    assert gateway.received[-1].body["stream_options"] == {"include_usage": True}


async def test_usage_on_the_last_choice_chunk_is_read_and_hidden(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="usage-in-choice", messages=HELLO, stream=True)
    chunks = [chunk async for chunk in raw.parse()]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)
    record = await gateway.record(raw.headers["x-request-id"])
    assert record.usage is not None and record.usage.output_tokens > 0


async def test_tool_calls_plain(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="tools", messages=[{"role": "user", "content": "Weather in Hanoi?"}], tools=WEATHER_TOOLS
    )
    strict(ChatCompletion, completion)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Hanoi", "days": 3}
    assert gateway.received[-1].body["tools"] == WEATHER_TOOLS


async def test_tool_calls_streamed_argument_deltas(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    deltas: list[str] = []
    async with client.chat.completions.stream(
        model="tools", messages=[{"role": "user", "content": "Weather?"}], tools=WEATHER_TOOLS
    ) as stream:
        async for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                deltas.append(event.arguments_delta)
        final = await stream.get_final_completion()
    assert len(deltas) > 2, "arguments should arrive in several deltas"
    calls = final.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Hanoi", "days": 3}
    assert json.loads(calls[1].function.arguments) == {"tz": "Hanoi"}
    assert final.choices[0].finish_reason == "tool_calls"


async def test_tool_results_sent_back(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    messages = [
        {"role": "user", "content": "Weather in Hanoi?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Hanoi"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "31C and humid"},
    ]
    completion = await client.chat.completions.create(model="tools", messages=messages, tools=WEATHER_TOOLS)
    assert completion.choices[0].message.content == "Tool results: 31C and humid"
    assert gateway.received[-1].body["messages"] == messages


async def test_image_content_parts(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    completion = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content == "Echo: What is in this picture? [2 image(s)]"
    assert gateway.received[-1].body["messages"][0]["content"] == content


async def test_n_greater_than_one(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="gpt-4o", messages=HELLO, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    stream = await client.chat.completions.create(model="gpt-4o", messages=HELLO, n=2, stream=True)
    texts = {0: "", 1: ""}
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "Echo: Hello there", 1: "Echo: Hello there (choice 1)"}


async def test_unknown_fields_pass_through_untouched(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    extra = {"a_parameter_from_next_year": {"nested": [1, 2, {"x": None}]}, "reasoning_effort": "low"}
    await client.chat.completions.create(
        model="gpt-4o", messages=HELLO, temperature=0.2, seed=7, extra_body=extra, metadata={"k": "v"}
    )
    body = gateway.received[-1].body
    assert body["a_parameter_from_next_year"] == extra["a_parameter_from_next_year"]
    assert (body["reasoning_effort"], body["temperature"], body["seed"], body["metadata"]) == (
        "low",
        0.2,
        7,
        {"k": "v"},
    )


@pytest.mark.parametrize("prefix", ["/v1", "/openai/v1", "/api/v1"])
async def test_route_prefixes(gateway: Gateway, prefix: str) -> None:
    async with gateway.client(base_url=str(gateway.server.make_url(prefix))) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert completion.choices[0].message.content == "Echo: Hello there"
        assert "gpt-4o" in [m.id async for m in client.models.list()]


async def test_x_api_key_header_is_accepted(gateway: Gateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.url,
        api_key="unused",
        default_headers={"Authorization": "", "x-api-key": gateway.key},
        max_retries=0,
    ) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert completion.choices[0].message.content == "Echo: Hello there"
