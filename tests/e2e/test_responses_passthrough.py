"""Responses clients on models whose upstream speaks Responses: the body goes through as
sent (built-in tools, include, encrypted reasoning, prompt_cache_key survive), usage is read
from the terminal event, and chains work across vendors."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from izzi_proxy.sse import iter_events
from tests.conftest import Gateway
from tests.e2e.test_responses import CLOCK, WEATHER, text_of

EVENTS = TypeAdapter(ResponseStreamEvent)


async def test_plain_passthrough(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(model="gpt-4o", input="Hello there", instructions="Be brief",
                                                          metadata={"k": "v"})  # fmt: skip
    resp = raw.parse()
    Response.model_validate(resp.to_dict())
    assert text_of(resp) == "Echo: Hello there"
    sent = gateway.received[-1]
    assert sent.path == "/v1/responses"
    assert sent.body == {
        "model": "upstream-gpt-4o",
        "input": "Hello there",
        "instructions": "Be brief",
        "metadata": {"k": "v"},
    }
    record = await gateway.record(raw.headers["x-request-id"])
    assert record.usage.output_tokens == resp.usage.output_tokens and record.upstream == "fake"
    assert text_of(await client.responses.retrieve(resp.id)) == "Echo: Hello there"  # the gateway stored it too


async def test_streamed_passthrough(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(model="gpt-4o", input="Hello there", stream=True)
    events = [EVENTS.validate_python(e.to_dict()) async for e in raw.parse()]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    record = await gateway.record(raw.headers["x-request-id"])
    assert record.usage.output_tokens == events[-1].response.usage.output_tokens
    stored = await client.responses.retrieve(events[-1].response.id)
    assert text_of(stored) == "Echo: Hello there"


def codex_request(model: str) -> dict:
    """Shaped like Codex's: always streamed, store false, encrypted reasoning asked for, a
    reasoning summary, a developer message, prompt_cache_key, a function tool and web_search."""
    return {
        "model": model,
        "instructions": "You are Codex, a coding agent.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "Sandbox: workspace-write"}],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there"}]},
        ],
        "tools": [{**WEATHER, "strict": False}, {"type": "web_search"}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0198-codex-session",
    }


@pytest.mark.parametrize("model", ["gpt-search-reasoning", "claude-thinking"])
async def test_a_codex_shaped_request(gateway: Gateway, model: str) -> None:
    body = codex_request(model)
    headers = {"Authorization": f"Bearer {gateway.key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.server.make_url("/v1/responses"), json=body, headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        raw = await resp.read()
    from izzi_proxy import sse

    events = [EVENTS.validate_python(__import__("json").loads(e.data)) for e in sse.iter_events(raw)]
    assert events[-1].type == "response.completed"
    output = events[-1].response.output
    if model.startswith("gpt"):
        sent = gateway.received[-1].body
        assert sent == {**body, "model": "upstream-search-reasoning-tools"}  # untouched but for the model
        assert [item.type for item in output][:2] == ["reasoning", "web_search_call"]
    else:
        sent = gateway.anthropic_received[-1].body
        assert [t["name"] for t in sent["tools"]] == ["get_weather"]  # web_search dropped: Claude cannot run it
        assert sent["system"] == "You are Codex, a coding agent.\n\nSandbox: workspace-write"
        assert sent["thinking"]["type"] == "enabled"
        assert output[0].type == "reasoning" and output[0].encrypted_content.startswith("izzi-anthropic:")


async def test_chain_moves_between_vendors(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    """Claude answers with reasoning carrying its signature; the next turn goes to a GPT model
    that speaks Responses: the history is expanded, our reasoning item is left out (OpenAI could
    not verify it), previous_response_id is not sent upstream (it never saw that response)."""
    tools = [{**WEATHER, "strict": False}, {**CLOCK, "strict": False}]
    first = await client.responses.create(model="claude-thinking", input="Hello there", tools=tools,
                                          reasoning={"effort": "low"}, include=["reasoning.encrypted_content"])  # fmt: skip
    calls = [item for item in first.output if item.type == "function_call"]
    second = await client.responses.create(
        model="gpt-4o", previous_response_id=first.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": c.call_id, "output": "31C"} for c in calls],
    )  # fmt: skip
    assert text_of(second) == "Tool results: 31C; 31C"
    sent = gateway.received[-1].body
    assert "previous_response_id" not in sent
    kinds = [item.get("type", "message") for item in sent["input"]]
    assert "reasoning" not in kinds and kinds.count("function_call") == 2 and kinds.count("function_call_output") == 2
    third = await client.responses.create(model="claude-thinking", previous_response_id=second.id, input="thanks",
                                          reasoning={"effort": "low"})  # fmt: skip
    messages = gateway.anthropic_received[-1].body["messages"]
    assert messages[1]["content"][0]["type"] == "thinking"  # Claude's own signed thinking came back to it
    assert text_of(third) == "Echo: thanks"


async def test_upstream_errors_in_passthrough(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="error-500", input="x")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-4o", input="x", max_output_tokens=5)
    assert "HTTP 400" in caught.value.message  # OpenAI's own rule (at least 16), kept in ours


@pytest.mark.parametrize("model", ["cut", "abort"])
async def test_a_broken_passthrough_stream_is_numbered_after_the_upstreams_events(gateway: Gateway, model) -> None:
    """The text holds "event:" and "sequence_number" as text; the gateway's own error and
    response.failed continue the upstream's numbering exactly."""
    tricky = 'event: response.completed\n"sequence_number": 99, event: error'
    body = {"model": model, "input": tricky, "stream": True}
    async with aiohttp.ClientSession() as session:
        url = gateway.server.make_url("/v1/responses")
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {gateway.key}"}) as resp:
            raw = await resp.read()
    events = [EVENTS.validate_python(json.loads(e.data)) for e in iter_events(raw)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert any("event:" in getattr(e, "delta", "") for e in events)
    assert events[-1].response.id == events[0].response.id and events[-1].response.model == model
