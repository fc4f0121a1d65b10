"""The translating tap: a whole stream, fed in any split, gives the same client stream."""

from __future__ import annotations

import re

import orjson
import pytest

from izzi_proxy import sse
from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES, ANTHROPIC_MESSAGES_WIRE
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT, OPENAI_CHAT_WIRE
from izzi_proxy.testing import ChatScript, MessageScript
from izzi_proxy.translate import TranslatingTap

TOOLS_OPENAI = [{"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}]  # fmt: skip
TOOLS_ANTHROPIC = [{"name": "get_time", "input_schema": TOOLS_OPENAI[0]["function"]["parameters"]}]


def anthropic_stream(model: str) -> bytes:
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "Hi there, split me"}],
            "tools": TOOLS_ANTHROPIC, "stream": True}  # fmt: skip
    if "thinking" in model:
        body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    return b"".join(MessageScript(body, chunks=5).frames())


def openai_stream(model: str) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi there, split me"}], "tools": TOOLS_OPENAI,
            "stream": True, "stream_options": {"include_usage": True}, "reasoning_effort": "low"}  # fmt: skip
    return b"".join(ChatScript(body, chunks=5).frames())


def to_openai() -> TranslatingTap:
    parsed = OPENAI_CHAT.parse(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                             "stream": True, "stream_options": {"include_usage": True}}))  # fmt: skip
    return TranslatingTap(ANTHROPIC_MESSAGES_WIRE.stream_parser("up"), OPENAI_CHAT.stream_renderer(parsed))


def to_anthropic() -> TranslatingTap:
    parsed = ANTHROPIC_MESSAGES.parse(orjson.dumps({"model": "m", "max_tokens": 5, "stream": True,
                                                    "messages": [{"role": "user", "content": "x"}]}))  # fmt: skip
    return TranslatingTap(OPENAI_CHAT_WIRE.stream_parser("up"), ANTHROPIC_MESSAGES.stream_renderer(parsed))


_CREATED = re.compile(rb'"created":\d+')


def run(make, pieces: list[bytes]) -> tuple[bytes, object]:
    """The client stream (with ``created`` timestamps blanked: runs cross second marks)."""
    tap = make()
    out = b"".join(tap.feed(p) for p in pieces) + tap.finish()
    return _CREATED.sub(b'"created":0', out), tap


CASES = [
    (to_openai, anthropic_stream, "claude-echo"),
    (to_openai, anthropic_stream, "claude-tools"),
    (to_openai, anthropic_stream, "claude-thinking"),
    (to_anthropic, openai_stream, "echo"),
    (to_anthropic, openai_stream, "tools"),
    (to_anthropic, openai_stream, "reasoning"),
]


@pytest.mark.parametrize(("make", "source", "model"), CASES, ids=[f"{c[0].__name__}-{c[2]}" for c in CASES])
def test_every_split_gives_the_same_stream(make, source, model) -> None:
    data = source(model)
    whole, tap = run(make, [data])
    assert tap.done and tap.usage is not None and tap.usage.output_tokens > 0
    events = list(sse.iter_events(whole))
    assert events, "the translation produced nothing"
    for i in range(1, len(data)):
        assert run(make, [data[:i], data[i:]])[0] == whole, f"split at {i}"
    assert run(make, [data[i : i + 1] for i in range(len(data))])[0] == whole


def test_translated_to_openai_is_a_valid_chunk_sequence() -> None:
    from openai.types.chat import ChatCompletionChunk

    whole, _ = run(to_openai, [anthropic_stream("claude-tools")])
    events = [e.data for e in sse.iter_events(whole)]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(orjson.loads(e)) for e in events[:-1]]
    assert chunks[-2].choices[0].finish_reason == "tool_calls" and chunks[-1].usage is not None
    names = [
        tc.function.name for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or () if tc.function.name
    ]
    assert names == ["get_time"]


def test_translated_to_anthropic_is_a_valid_event_sequence() -> None:
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    whole, _ = run(to_anthropic, [openai_stream("tools")])
    adapter = TypeAdapter(RawMessageStreamEvent)
    events = [e for e in sse.iter_events(whole) if e.event != "ping"]
    parsed = [adapter.validate_python(orjson.loads(e.data)) for e in events]
    assert [e.event for e in events] == [p.type for p in parsed]  # event names match the payloads
    assert parsed[0].type == "message_start" and parsed[-1].type == "message_stop"
    assert parsed[-2].delta.stop_reason == "tool_use"
