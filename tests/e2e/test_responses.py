"""The openai SDK's ``client.responses`` against every kind of model: Claude (translated to
Anthropic Messages), an OpenAI-compatible model without Responses (translated to chat), and
stored responses with ``previous_response_id``."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.conftest import Gateway
from tests.e2e.shapes import assert_openai_error

EVENTS = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]},
}  # fmt: skip
CLOCK = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}


def strict(resp) -> Response:
    return Response.model_validate(resp.to_dict())


def text_of(resp) -> str:
    return "".join(
        p.text for item in resp.output if item.type == "message" for p in item.content if p.type == "output_text"
    )


@pytest.mark.parametrize(("model", "kind"), [("claude", "anthropic"), ("gpt-chat-only", "chat")])
async def test_plain(gateway: Gateway, client: openai.AsyncOpenAI, model: str, kind: str) -> None:
    resp = strict(await client.responses.create(model=model, input="Hello there", instructions="Be brief",
                                                max_output_tokens=300, metadata={"k": "v"}))  # fmt: skip
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.status == "completed"
    assert resp.model == model and text_of(resp) == "Echo: Hello there"
    assert resp.instructions == "Be brief" and resp.metadata == {"k": "v"} and resp.max_output_tokens == 300
    assert (
        resp.usage.output_tokens > 0 and resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    )
    if kind == "anthropic":
        sent = gateway.anthropic_received[-1].body
        assert (sent["system"], sent["max_tokens"]) == ("Be brief", 300)
    else:
        sent = gateway.received[-1].body
        assert gateway.received[-1].path == "/v1/chat/completions"
        assert sent["messages"] == [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Hello there"},
        ]


async def test_message_items_developer_and_images(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    resp = await client.responses.create(
        model="claude",
        input=[
            {"role": "developer", "content": "Answer in English"},
            {"role": "user", "content": "Earlier question"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Earlier answer"}]},
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "auto"},
            ]},
        ],
    )  # fmt: skip
    assert text_of(resp) == "Echo: What is this? [2 image(s)]"
    sent = gateway.anthropic_received[-1].body
    assert sent["system"] == "Answer in English"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][2]["content"][2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }


@pytest.mark.parametrize("model", ["claude", "gpt-chat-only"])
async def test_streamed_events(gateway: Gateway, client: openai.AsyncOpenAI, model: str) -> None:
    stream = await client.responses.create(model=model, input="Hello there", stream=True)
    events = [EVENTS.validate_python(e.to_dict()) async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]  # fmt: skip
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]  # fmt: skip
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Echo: Hello there"
    final = events[-1].response
    assert final.status == "completed" and final.usage.output_tokens > 0


async def test_stream_helper(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(model="claude", input="Hello there") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == "Echo: Hello there" == final.output_text
    strict(final)


@pytest.mark.parametrize("model", ["claude-tools", "gpt-chat-only-tools"])
@pytest.mark.parametrize("stream", [False, True])
async def test_function_call_round_trip(gateway: Gateway, client: openai.AsyncOpenAI, model: str, stream: bool) -> None:
    if stream:
        async with client.responses.stream(model=model, input="Weather?", tools=[WEATHER, CLOCK]) as s:
            first = await s.get_final_response()
    else:
        first = await client.responses.create(model=model, input="Weather?", tools=[WEATHER, CLOCK])
    strict(first)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments) == {"city": "Hanoi", "days": 3} and calls[0].id.startswith("fc_")
    second = await client.responses.create(
        model=model, tools=[WEATHER, CLOCK],
        input=[{"role": "user", "content": "Weather?"}, *[c.to_dict() for c in calls],
               {"type": "function_call_output", "call_id": calls[0].call_id, "output": "31C"},
               {"type": "function_call_output", "call_id": calls[1].call_id, "output": "noon"}],
    )  # fmt: skip
    assert text_of(second) == "Tool results: 31C; noon"


async def test_tool_choice_and_parallel_calls(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    await client.responses.create(model="claude", input="x", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"},
                                  parallel_tool_calls=False)  # fmt: skip
    assert gateway.anthropic_received[-1].body["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_summary_and_thinking_round_trip(gateway: Gateway, client, stream: bool) -> None:
    kwargs = {"model": "claude-thinking", "tools": [WEATHER], "reasoning": {"effort": "low", "summary": "auto"},
              "include": ["reasoning.encrypted_content"], "store": False}  # fmt: skip
    if stream:
        raw = await client.responses.create(input="Weather?", stream=True, **kwargs)
        events = [EVENTS.validate_python(e.to_dict()) async for e in raw]
        kinds = [e.type for e in events]
        assert "response.reasoning_summary_text.delta" in kinds and "response.reasoning_summary_part.done" in kinds
        first = events[-1].response
    else:
        first = strict(await client.responses.create(input="Weather?", **kwargs))
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text
    assert reasoning.encrypted_content.startswith("izzi-anthropic:")
    assert gateway.anthropic_received[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    call = next(item for item in first.output if item.type == "function_call")
    items = [{"role": "user", "content": "Weather?"}, *[i.to_dict() for i in first.output],
             {"type": "function_call_output", "call_id": call.call_id, "output": "31C"}]  # fmt: skip
    second = await client.responses.create(input=items, **kwargs)
    assert text_of(second) == "Tool results: 31C"
    sent = gateway.anthropic_received[-1].body
    assert "thinking" in sent  # the signed block came back, so thinking continues
    assert sent["messages"][1]["content"][0]["type"] == "thinking"


async def test_reasoning_toward_an_openai_chat_model(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    resp = await client.responses.create(model="gpt-chat-only-reasoning", input="Hello there",
                                         reasoning={"effort": "medium", "summary": "detailed"})  # fmt: skip
    assert gateway.received[-1].body["reasoning_effort"] == "medium"
    assert resp.output[0].type == "reasoning" and resp.output[0].summary[0].text.startswith("Thinking (medium)")
    assert resp.output[0].encrypted_content is None  # nothing to sign: not Claude's
    assert text_of(resp) == "Echo: Hello there"


async def test_json_schema_text_format(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    await client.responses.create(model="gpt-chat-only", input="x",
                                  text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}})  # fmt: skip
    assert gateway.received[-1].body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}  # fmt: skip


async def test_built_in_tools_toward_other_vendors(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    resp = await client.responses.create(model="claude", input="Hello there", tools=[{"type": "web_search"}, WEATHER])
    assert text_of(resp) == "Echo: Hello there"
    assert [t["name"] for t in gateway.anthropic_received[-1].body["tools"]] == ["get_weather"]  # dropped, logged
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(
            model="claude", input="x", tools=[{"type": "web_search"}], tool_choice={"type": "web_search"}
        )
    assert "web_search" in caught.value.message and caught.value.param == "tool_choice"


async def test_length_is_incomplete(client: openai.AsyncOpenAI) -> None:
    resp = await client.responses.create(model="claude-max-tokens", input="Hello there", max_output_tokens=16)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    stream = await client.responses.create(model="claude-max-tokens", input="Hello there", stream=True)
    assert [e.type async for e in stream][-1] == "response.incomplete"


# -- store and previous_response_id --------------------------------------------------------------


@pytest.mark.parametrize(("first_model", "second_model"), [("claude", "claude"), ("claude", "gpt-chat-only")])
async def test_previous_response_id_chain(gateway: Gateway, client, first_model: str, second_model: str) -> None:
    first = await client.responses.create(model=first_model, input="My name is Lan", instructions="Be brief")
    second = await client.responses.create(model=second_model, input="What is my name?", previous_response_id=first.id)
    assert text_of(second) == "Echo: What is my name?" and second.previous_response_id == first.id
    if second_model == "claude":
        sent = gateway.anthropic_received[-1].body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[1]["content"] == [{"type": "text", "text": "Echo: My name is Lan"}]
        assert "system" not in gateway.anthropic_received[-1].body  # instructions do not carry over
    else:
        sent = gateway.received[-1].body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    third = await client.responses.create(model=first_model, input="And again?", previous_response_id=second.id)
    assert len(gateway.anthropic_received[-1].body["messages"]) == 5 or first_model != "claude"
    assert (await client.responses.retrieve(third.id)).id == third.id


async def test_retrieve_delete_and_store_false(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    kept = await client.responses.create(model="claude", input="keep me")
    got = strict(await client.responses.retrieve(kept.id))
    assert text_of(got) == "Echo: keep me" and got.id == kept.id
    await client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(kept.id)
    unkept = await client.responses.create(model="claude", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unkept.id)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="claude", input="x", previous_response_id=unkept.id)
    assert caught.value.param == "previous_response_id"


async def test_streamed_responses_are_stored(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(model="claude", input="stream me") as stream:
        final = await stream.get_final_response()
    assert text_of(await client.responses.retrieve(final.id)) == "Echo: stream me"


async def test_another_accounts_response_is_not_found(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    mine = await client.responses.create(model="claude", input="mine")
    other = await gateway.ledger.create_account("someone-else")
    _, secret = await gateway.ledger.create_key(other.id, "k")
    async with gateway.client(api_key=secret) as theirs:
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.create(model="claude", input="x", previous_response_id=mine.id)
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.delete(mine.id)
    assert (await client.responses.retrieve(mine.id)).id == mine.id


# -- errors ------------------------------------------------------------------------------------


async def test_errors(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="gpt-99", input="x")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="claude", input=[{"role": "robot", "content": "x"}])
    assert caught.value.param == "input[0].role"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="claude", input=[])
    assert caught.value.param == "input"
    with pytest.raises(openai.InternalServerError) as caught:
        await client.responses.create(model="claude-error-529", input="x")
    assert caught.value.body["type"] == "upstream_error"
    stream = await client.responses.create(model="claude-stream-error", input="Hello there", stream=True)
    events = []
    with pytest.raises(openai.APIError, match="Mock upstream error 529"):
        async for event in stream:
            events.append(EVENTS.validate_python(event.to_dict()))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.output_text.delta" in [e.type for e in events]  # what came before the error arrived


async def test_error_frames_on_the_wire(gateway: Gateway) -> None:
    """After the error event comes response.failed, numbered on, for clients that wait for a
    terminal event (Codex)."""
    import aiohttp

    from izzi_proxy import sse

    body = {"model": "claude-stream-error", "input": "Hello there", "stream": True}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.server.make_url("/v1/responses"), json=body, headers=headers) as resp,
    ):
        events = list(sse.iter_events(await resp.read()))
    data = [json.loads(e.data) for e in events]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert [e.event for e in events][-2:] == ["error", "response.failed"]
    assert data[-1]["response"]["status"] == "failed" and "529" in data[-1]["response"]["error"]["message"]


async def test_a_websocket_handshake_is_told_to_use_http(gateway: Gateway) -> None:
    """Codex with ``supports_websockets = true`` tries ``GET /v1/responses`` as a WebSocket
    first; 426 is the answer on which it falls back to HTTP at once (the real CLI is run in
    test_real_clients.py)."""
    headers = {"Authorization": f"Bearer {gateway.key}", "openai-beta": "responses_websockets=2026-02-06"}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(gateway.server.make_url("/v1/responses"), headers=headers)
        assert caught.value.status == 426
        upgrade = {**headers, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
        async with session.get(gateway.server.make_url("/v1/responses"), headers=upgrade) as resp:
            error = await assert_openai_error(resp, 426, "invalid_request_error")
            assert "POST /v1/responses" in error["message"]
        async with session.get(gateway.server.make_url("/v1/responses"), headers=headers) as resp:
            await assert_openai_error(resp, 405, "invalid_request_error")
