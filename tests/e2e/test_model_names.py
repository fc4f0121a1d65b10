"""The answer names the model the client asked for, in every dialect, plain and streamed,
passthrough and translated; names outside the catalog resolve by family; the usage record
keeps the asked name, the catalog id and the upstream's name."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.conftest import Gateway

HELLO = [{"role": "user", "content": "Hello there"}]

# (the name asked for, the catalog id, the upstream's name for it)
PASSTHROUGH_OPENAI = ("gpt-4o", "gpt-4o", "upstream-gpt-4o")
PASSTHROUGH_CLAUDE = ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5", "claude-sonnet-4-5-tools-linger")  # a dated id
BY_FAMILY = ("claude-opus-4-8", "claude-sonnet-4.5", "claude-sonnet-4-5-tools-linger")  # Claude Code's default
TRANSLATED_TO_CLAUDE = ("claude", "claude", "claude-echo")
TRANSLATED_TO_OPENAI = ("gpt-4o", "gpt-4o", "upstream-gpt-4o")


async def _check_record(gateway: Gateway, request_id: str, names: tuple[str, str, str]) -> None:
    record = await gateway.record(request_id)
    assert (record.requested_model, record.model, record.upstream_model) == names


@pytest.mark.parametrize("names", [PASSTHROUGH_OPENAI, TRANSLATED_TO_CLAUDE, BY_FAMILY], ids=["pass", "tr", "family"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_chat_completions(gateway: Gateway, client: openai.AsyncOpenAI, names, stream: bool) -> None:
    asked = names[0]
    raw = await client.chat.completions.with_raw_response.create(model=asked, messages=HELLO, stream=stream)
    if stream:
        chunks = [chunk async for chunk in raw.parse()]
        assert chunks and {chunk.model for chunk in chunks} == {asked}
    else:
        assert raw.parse().model == asked
    await _check_record(gateway, raw.headers["x-request-id"], names)


@pytest.mark.parametrize("names", [PASSTHROUGH_CLAUDE, BY_FAMILY, TRANSLATED_TO_OPENAI], ids=["pass", "family", "tr"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_messages(gateway: Gateway, claude: anthropic.AsyncAnthropic, names, stream: bool) -> None:
    asked = names[0]
    raw = await claude.messages.with_raw_response.create(model=asked, max_tokens=100, messages=HELLO, stream=stream)
    if stream:
        events = [event async for event in await raw.parse()]
        starts = [e for e in events if e.type == "message_start"]
        assert len(starts) == 1 and starts[0].message.model == asked
    else:
        assert (await raw.parse()).model == asked
    await _check_record(gateway, raw.headers["x-request-id"], names)


@pytest.mark.parametrize(
    "names", [("gpt-4o", "gpt-4o", "upstream-gpt-4o"), TRANSLATED_TO_CLAUDE, BY_FAMILY], ids=["pass", "tr", "family"]
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_responses(gateway: Gateway, client: openai.AsyncOpenAI, names, stream: bool) -> None:
    asked = names[0]
    raw = await client.responses.with_raw_response.create(model=asked, input="Hello there", stream=stream)
    if stream:
        events = [event async for event in raw.parse()]
        objects = [e.response for e in events if hasattr(e, "response")]
        assert [e.type for e in events if hasattr(e, "response")][-1] == "response.completed"
        assert len(objects) >= 3 and {o.model for o in objects} == {asked}
        response_id = objects[-1].id
    else:
        response = raw.parse()
        assert response.model == asked
        response_id = response.id
    await _check_record(gateway, raw.headers["x-request-id"], names)
    assert (await client.responses.retrieve(response_id)).model == asked  # as stored


async def test_the_upstream_is_asked_under_its_own_name(gateway: Gateway, claude: anthropic.AsyncAnthropic) -> None:
    await claude.messages.create(model="claude-opus-4-8", max_tokens=10, messages=HELLO)
    assert gateway.anthropic_received[-1].body["model"] == "claude-sonnet-4-5-tools-linger"


async def test_models_lists_catalog_ids_only(client: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in client.models.list()]
    assert "claude-sonnet-4.5" in ids and "claude-opus-4-8" not in ids
    assert (await client.models.retrieve("claude-opus-4-8")).id == "claude-sonnet-4.5"
